"""Open one asset full size: its record with a high-resolution signed URL, then the file."""

from __future__ import annotations

import random

from locust import task

from loadtests._base import Json, WorkspaceUser


def high_res_validator(body: object) -> str | None:
    if not isinstance(body, dict) or "id" not in body:
        return "expected an asset object"
    if not isinstance(body.get("high_res_url"), str):
        return "no high_res_url"
    return None


class OpenAsset(WorkspaceUser):
    weight = 4
    endpoints = (("GET", "/v1/assets/{asset_id}"), ("GET", "/v1/workspace"))

    @task
    def open_asset(self) -> None:
        assets = self.known_assets()
        if not assets:
            return
        asset_id = random.choice(assets)["id"]
        body: Json | None = self.api(
            "GET", f"/v1/assets/{asset_id}", name="asset_high_res", validate=high_res_validator
        )
        if body is not None:
            self.fetch_object(body["high_res_url"], first_name="high_res_file")
