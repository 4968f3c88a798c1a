"""The abstract simulated user: one fixture user with its own token and its own browser cache.

Every response is validated on content, not only on status (``resp.failure()``), and dynamic
URLs are grouped with ``name=`` (the request groups of the thresholds).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import quote

import gevent.pool
from locust import FastHttpUser, between

from loadtests import _thresholds
from loadtests._config import Identity, LoadSettings, identities

Json = dict[str, Any]
Validator = Callable[[Any], str | None]
#: Parallel image downloads per page, as a browser does over one HTTP/1.1 origin.
BROWSER_PARALLEL = 6
_identities: list[Identity] = []


def pick_identity(settings: LoadSettings) -> Identity:
    if not _identities:
        _identities.extend(identities(settings))
        if not _identities:
            raise RuntimeError("no identities: LOAD_TOKENS is empty")
    return random.choices(_identities, weights=[i.weight for i in _identities])[0]


def expect_keys(*keys: str) -> Validator:
    def validate(body: Any) -> str | None:
        if not isinstance(body, dict):
            return f"expected a JSON object, got {type(body).__name__}"
        missing = [k for k in keys if k not in body]
        return f"missing {', '.join(missing)}" if missing else None

    return validate


def page_validator(body: Any) -> str | None:
    problem = expect_keys("assets", "next_cursor")(body)
    if problem:
        return problem
    assets = body["assets"]
    if not isinstance(assets, list):
        return "assets is not a list"
    for asset in assets:
        if not isinstance(asset, dict) or "id" not in asset:
            return "an asset without an id"
    return None


class WorkspaceUser(FastHttpUser):
    """Abstract: subclasses are the journeys, weighted like real use."""

    abstract = True
    wait_time = between(1, 4)
    #: ``(method, path)`` of the endpoints the journey needs, as in ``/openapi.json``.
    endpoints: ClassVar[tuple[tuple[str, str], ...]] = ()
    settings: ClassVar[LoadSettings] = LoadSettings.from_env()

    identity: Identity
    #: The browser cache: URL -> (ETag, when fetched).
    etags: dict[str, tuple[str, float]]

    def on_start(self) -> None:
        self.identity = pick_identity(self.settings)
        self.auth = {"Authorization": f"Bearer {self.identity.token}"}
        self.etags = {}
        self.assets: list[Json] = []

    # --- API calls -------------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        *,
        name: str,
        validate: Validator | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        expect_status: tuple[int, ...] = (200,),
    ) -> Any:
        """One API request; the parsed JSON body on success, None after a recorded failure."""
        url = path
        if params:
            query = "&".join(f"{k}={_quote(str(v))}" for k, v in params.items() if v is not None)
            url = f"{path}?{query}" if query else path
        with self.client.request(
            method, url, name=name, headers=self.auth, json=json, catch_response=True
        ) as resp:
            if resp.status_code not in expect_status:
                resp.failure(f"HTTP {resp.status_code}: {_snippet(resp.text)}")
                return None
            try:
                body = resp.json()
            except ValueError:
                resp.failure(f"not JSON: {_snippet(resp.text)}")
                return None
            problem = validate(body) if validate else None
            if problem:
                resp.failure(problem)
                return None
            resp.success()
            return body

    def workspace_page(self, cursor: str | None = None, limit: int = 50) -> Json | None:
        body: Json | None = self.api(
            "GET",
            "/v1/workspace",
            name="workspace_page",
            params={"limit": limit, "cursor": cursor},
            validate=page_validator,
        )
        return body

    # --- objects through signed URLs, with the browser's cache rules --------------------------

    def fetch_object(self, url: str, first_name: str = "thumbnail") -> bool:
        """GET a signed URL: revalidate with If-None-Match when this URL is cached (304 expected:
        the ``asset_cached`` group), else a first fetch (``first_name``)."""
        now = time.monotonic()
        cached = self.etags.get(url)
        if cached is not None and now - cached[1] > self.settings.etag_window_s:
            cached = None
        headers = {"If-None-Match": cached[0]} if cached else {}
        name = "asset_cached" if cached else first_name
        with self.client.get(url, name=name, headers=headers, catch_response=True) as resp:
            if resp.status_code == 304 and cached:
                resp.success()
                return True
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code} for a signed object")
                return False
            if not resp.content:
                resp.failure("empty object body")
                return False
            etag = resp.headers.get("ETag")
            if not etag:
                resp.failure("object without an ETag: browsers cannot revalidate it")
                return False
            self.etags[url] = (etag, now)
            resp.success()
            return True

    def fetch_objects(self, urls: list[str], first_name: str = "thumbnail") -> int:
        """Fetch ``urls`` as a browser does (a few in parallel); how many succeeded."""
        if not urls:
            return 0
        pool = gevent.pool.Pool(BROWSER_PARALLEL)
        return sum(pool.imap_unordered(lambda u: self.fetch_object(u, first_name), urls))

    def known_assets(self) -> list[Json]:
        """The assets of the user's first workspace page (fetched once, as the app opens)."""
        if not self.assets:
            page = self.workspace_page()
            self.assets = list(page["assets"]) if page else []
        return self.assets

    def visible_thumbnails(self, page: Json) -> list[str]:
        urls = [a.get("thumbnail_url") for a in page["assets"][: self.settings.thumbnails_visible]]
        return [u for u in urls if isinstance(u, str) and u]

    def journey(self, name: str, started: float, error: str | None) -> None:
        """Report a whole journey (several requests) as one timed event, kept out of overall."""
        self.environment.events.request.fire(
            request_type=_thresholds.JOURNEY,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=RuntimeError(error) if error else None,
            context={},
        )


def _quote(value: str) -> str:
    return quote(value, safe="")


def _snippet(text: str | None, limit: int = 200) -> str:
    return (text or "")[:limit].replace("\n", " ")
