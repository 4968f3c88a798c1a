"""Select a few assets and download them as one ZIP."""

from __future__ import annotations

import random

from locust import task

from loadtests._base import WorkspaceUser

ZIP_MAGIC = b"PK"


class DownloadAssets(WorkspaceUser):
    weight = 1
    endpoints = (("POST", "/v1/batch/download"), ("GET", "/v1/workspace"))

    @task
    def download(self) -> None:
        assets = self.known_assets()
        if not assets:
            return
        chosen = random.sample(assets, k=min(len(assets), random.randint(2, 6)))
        with self.client.post(
            "/v1/batch/download",
            name="download",
            headers=self.auth,
            json={"asset_ids": [a["id"] for a in chosen]},
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
            elif not (resp.content or b"").startswith(ZIP_MAGIC):
                resp.failure("the answer is not a ZIP archive")
            else:
                resp.success()
