"""Select a few assets, dismiss them from the workspace as one batch, then undo."""

from __future__ import annotations

import random
from typing import Any

from locust import task

from loadtests._base import Json, WorkspaceUser


def operation_id(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    nested = body.get("operation")
    value = body.get("operation_id") or (nested.get("id") if isinstance(nested, dict) else None)
    return str(value) if value else None


def operation_validator(body: Any) -> str | None:
    return None if operation_id(body) else "no operation id in the batch answer"


class DismissUndo(WorkspaceUser):
    weight = 1
    endpoints = (("POST", "/v1/batch/dismiss"), ("POST", "/v1/batch/undo"))

    @task
    def dismiss_then_undo(self) -> None:
        assets = self.known_assets()
        if not assets:
            return
        chosen = random.sample(assets, k=min(len(assets), random.randint(2, 12)))
        dismissed: Json | None = self.api(
            "POST",
            "/v1/batch/dismiss",
            name="batch",
            json={"asset_ids": [a["id"] for a in chosen]},
            validate=operation_validator,
            expect_status=(200, 201, 202),
        )
        op = operation_id(dismissed)
        if op is None:
            return
        self.wait()
        self.api(
            "POST",
            "/v1/batch/undo",
            name="batch",
            json={"operation_id": op},
            expect_status=(200, 201, 202),
        )
