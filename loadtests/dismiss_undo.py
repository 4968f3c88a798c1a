"""Select a few assets, dismiss them from the workspace as one batch, then undo.

``POST /v1/batch/dismiss`` answers ``{"operation": {...}}`` (202 while it runs: poll it);
``POST /v1/batch/undo`` undoes the caller's latest operation. A 409 from undo means another
session of the same person (the heavy user is simulated several times) has a newer operation
still running: the app would say so and the person retries; it is not a server error.
"""

from __future__ import annotations

import random
from typing import Any

import gevent
from locust import task

from loadtests._base import Json, WorkspaceUser

POLL_S = 0.2
POLLS = 25


def operation(body: Any) -> Json | None:
    op = body.get("operation") if isinstance(body, dict) else None
    return op if isinstance(op, dict) and op.get("id") else None


def operation_validator(body: Any) -> str | None:
    return None if operation(body) else "no operation in the batch answer"


class DismissUndo(WorkspaceUser):
    weight = 1
    endpoints = (
        ("POST", "/v1/batch/dismiss"),
        ("POST", "/v1/batch/undo"),
        ("GET", "/v1/batch/operations/{operation_id}"),
        ("GET", "/v1/workspace"),
    )

    def settle(self, op: Json) -> None:
        """Wait (bounded) for a running operation to finish, as the app's progress bar does."""
        for _ in range(POLLS):
            if op.get("finished_at") is not None:
                return
            gevent.sleep(POLL_S)
            polled = operation(
                self.api(
                    "GET",
                    f"/v1/batch/operations/{op['id']}",
                    name="batch_operation",
                    validate=operation_validator,
                    expect_status=(200, 202),
                )
            )
            if polled is None:
                return
            op = polled

    @task
    def dismiss_then_undo(self) -> None:
        assets = self.known_assets()
        if not assets:
            return
        chosen = random.sample(assets, k=min(len(assets), random.randint(2, 12)))
        body = self.api(
            "POST",
            "/v1/batch/dismiss",
            name="batch",
            json={"asset_ids": [a["id"] for a in chosen]},
            validate=operation_validator,
            expect_status=(200, 202),
        )
        op = operation(body)
        if op is None:
            return
        self.settle(op)
        self.wait()
        self.api("POST", "/v1/batch/undo", name="batch", expect_status=(200, 202, 409))
