"""Open the organisation suggestions (near-duplicate groups, projects to file into)."""

from __future__ import annotations

from locust import task

from loadtests._base import WorkspaceUser


def suggestions_validator(body: object) -> str | None:
    return None if isinstance(body, dict) else "expected a JSON object"


class OpenSuggestions(WorkspaceUser):
    weight = 2
    endpoints = (("GET", "/v1/organize/suggestions"),)

    @task
    def open_suggestions(self) -> None:
        self.api(
            "GET", "/v1/organize/suggestions", name="suggestions", validate=suggestions_validator
        )
