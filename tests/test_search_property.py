"""Property: the endpoint and the in-memory port agree, page after page, on the tiny dataset.

The service runs on a real HTTP server in a background event loop (hypothesis drives a
synchronous test); each example draws a user, a query (words of that user's prompts, fragments,
wildcards, or none), filters, a date range and a sort, walks the cursor over several pages and
compares ids, order and total with :func:`reference.filter_port.filter_assets`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.app import create_app
from reference.assets import Asset
from reference.search.in_memory import filter_assets
from reference.search.query import parse_query
from reference.web.errors import BadRequest
from tests.conftest import SETTINGS, auth_headers
from tests.search_support import user_assets, walk

MAX_PAGES = 8
USERS = 4
SPECIAL_QUERIES = ("%", "_", "\\", "8K", "f/1", "of ", " the ", "'s", "zzzz-nowhere", "A")


class LiveService:
    """The app on 127.0.0.1 in its own thread and loop, with a client session there."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _start(self) -> None:
        self.runner = web.AppRunner(
            create_app(dataclasses.replace(SETTINGS, database_url=self.dsn))
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")

    async def _stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()

    def __enter__(self) -> LiveService:
        self.thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def get(self, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        async def once() -> tuple[int, Any]:
            assert self.session is not None
            async with self.session.get("/v1/search", params=params, headers=headers) as r:
                return r.status, await r.json()

        status, body = self.run(once())
        return status, body

    def walk(self, params: dict[str, str], headers: dict[str, str]) -> tuple[list[str], int, bool]:
        result: tuple[list[str], int, bool] = self.run(
            walk(self.session, headers, params, MAX_PAGES)
        )
        return result


@pytest.fixture(scope="module")
def live(seeded_template: Any) -> Iterator[LiveService]:
    with LiveService(seeded_template.dsn) as service:
        yield service


@pytest.fixture(scope="module")
def corpus(seeded_template: Any) -> dict[UUID, list[Asset]]:
    async def load() -> dict[UUID, list[Asset]]:
        users = seeded_template.users[:USERS]
        return {u: await user_assets(seeded_template.dsn, u) for u in users}

    return asyncio.run(load())


def words_of(assets: list[Asset]) -> list[str]:
    return sorted({w for a in assets for w in re.split(r"\s+", a.prompt) if w})


@st.composite
def query_text(draw: st.DrawFn, words: list[str]) -> str | None:
    kind = draw(st.sampled_from(["none", "word", "fragment", "pair", "special", "random"]))
    if kind == "none":
        return None
    if kind == "special":
        return draw(st.sampled_from(SPECIAL_QUERIES))
    if kind == "random":
        return draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz %_.", min_size=1, max_size=4))
    word = draw(st.sampled_from(words))
    if kind == "fragment":
        start = draw(st.integers(0, max(0, len(word) - 1)))
        size = draw(st.integers(1, 3))
        word = word[start : start + size]
    elif kind == "pair":
        word = f"{word} {draw(st.sampled_from(words))}"
    casing = draw(st.sampled_from(["same", "upper", "lower", "title"]))
    return {"same": word, "upper": word.upper(), "lower": word.lower(), "title": word.title()}[
        casing
    ]


def date_bound(draw: st.DrawFn, assets: list[Asset]) -> str | None:
    kind = draw(st.sampled_from(["none", "none", "datetime", "date", "offset"]))
    if kind == "none":
        return None
    moment = draw(st.sampled_from(assets)).created_at
    if kind == "date":
        return moment.date().isoformat()
    if kind == "offset":
        return moment.astimezone().isoformat()
    return moment.isoformat()


def optional(draw: st.DrawFn, values: list[str]) -> str | None:
    value: str | None = draw(st.sampled_from([None, "all", *values]))
    return value


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_endpoint_and_port_agree(
    live: LiveService, corpus: dict[UUID, list[Asset]], data: st.DataObject
) -> None:
    user = data.draw(st.sampled_from(sorted(corpus)))
    assets = corpus[user]
    draw = data.draw
    params: dict[str, str | None] = {
        "q": draw(query_text(words_of(assets))),
        "type": optional(draw, ["image", "video"]),
        "quality": optional(draw, ["fast", "high"]),
        "model": optional(draw, ["SDXL", "WAN", "Enhanced", "none"]),
        "status": optional(draw, ["completed", "generating", "failed"]),
        "start": date_bound(draw, assets),
        "end": date_bound(draw, assets),
        "sort": draw(st.sampled_from([None, "date", "prompt", "quality", "model"])),
        "order": draw(st.sampled_from([None, "asc", "desc"])),
        "include_dismissed": draw(st.sampled_from([None, "true", "false"])),
        "limit": draw(st.sampled_from(["3", "7", "20"])),
    }
    sent = {k: v for k, v in params.items() if v is not None}
    headers = auth_headers(user)
    try:
        query = parse_query(sent)
    except BadRequest as error:
        rejected_field = error.field
    else:
        rejected_field = None
    if rejected_field is not None:
        status, body = live.get(sent, headers)
        assert status == 400
        assert body["field"] == rejected_field
        return
    expected = [str(a.id) for a in filter_assets(assets, query)]
    ids, total, done = live.walk(sent, headers)
    assert total == len(expected)
    assert ids == expected[: len(ids)]
    if done:
        assert len(ids) == len(expected)
    else:
        assert len(ids) == MAX_PAGES * int(sent["limit"])
