"""Open the workspace: the first page, then its visible thumbnails through their signed URLs.

The whole sequence is one ``open_workspace`` journey event (the plan's "initial load < 2 s").
Reopening within the URL window revalidates the thumbnails by ETag (304: ``asset_cached``).
"""

from __future__ import annotations

import time

from locust import task

from loadtests._base import WorkspaceUser


class OpenWorkspace(WorkspaceUser):
    weight = 10
    endpoints = (("GET", "/v1/workspace"),)

    @task
    def open_workspace(self) -> None:
        started = time.perf_counter()
        page = self.workspace_page()
        if page is None:
            self.journey("open_workspace", started, "first page failed")
            return
        self.assets = list(page["assets"])
        urls = self.visible_thumbnails(page)
        fetched = self.fetch_objects(urls)
        error = None if fetched == len(urls) else f"{len(urls) - fetched} thumbnail(s) failed"
        self.journey("open_workspace", started, error)
