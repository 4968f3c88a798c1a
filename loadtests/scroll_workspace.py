"""Scroll the workspace: follow ``next_cursor`` page after page, loading what comes into view."""

from __future__ import annotations

import random

from locust import task

from loadtests._base import WorkspaceUser


class ScrollWorkspace(WorkspaceUser):
    weight = 5
    endpoints = (("GET", "/v1/workspace"),)

    @task
    def scroll(self) -> None:
        page = self.workspace_page()
        for _ in range(random.randint(2, 6)):
            if page is None:
                return
            self.fetch_objects(self.visible_thumbnails(page))
            cursor = page.get("next_cursor")
            if not cursor:
                return
            self.wait()
            page = self.workspace_page(cursor=cursor)

    def wait_time(self) -> float:
        return random.uniform(0.5, 2.0)
