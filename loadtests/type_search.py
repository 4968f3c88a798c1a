"""Search as a person types: one query per keystroke from the third letter of a word from the
user's own prompts, then a filter, a sort, and the next page of results."""

from __future__ import annotations

import random
import re

from locust import task

from loadtests._base import Json, WorkspaceUser, expect_keys

WORD = re.compile(r"[A-Za-z]{4,}")
FILTERS: tuple[dict[str, str], ...] = (
    {"type": "image"},
    {"quality": "high"},
    {"type": "video", "quality": "fast"},
    {"status": "completed"},
)
SORTS: tuple[dict[str, str], ...] = (
    {"sort": "date", "order": "asc"},
    {"sort": "prompt", "order": "asc"},
    {"sort": "quality", "order": "desc"},
)
KEYSTROKE_S = 0.15


class TypeSearch(WorkspaceUser):
    weight = 5
    endpoints = (("GET", "/v1/search"), ("GET", "/v1/workspace"))

    def search(self, **params: str) -> Json | None:
        body: Json | None = self.api(
            "GET",
            "/v1/search",
            name="search",
            params=params,
            validate=expect_keys("assets", "next_cursor"),
        )
        return body

    def pick_word(self) -> str:
        words = [w for a in self.known_assets() for w in WORD.findall(str(a.get("prompt") or ""))]
        return random.choice(words).lower() if words else "portrait"

    @task
    def type_and_refine(self) -> None:
        word = self.pick_word()
        for end in range(3, len(word) + 1):
            self.search(q=word[:end])
            self._sleep(KEYSTROKE_S)
        filtered = {"q": word, **random.choice(FILTERS)}
        self.search(**filtered)
        sorted_search = {**filtered, **random.choice(SORTS)}
        results = self.search(**sorted_search)
        if results and results.get("next_cursor"):
            # The next page repeats the whole search: a cursor is only valid for its own search.
            self.search(**sorted_search, cursor=str(results["next_cursor"]))

    def _sleep(self, seconds: float) -> None:
        import gevent

        gevent.sleep(seconds)
