"""The workspace pages and the single-asset route on the seeded dataset, over real HTTP."""

from __future__ import annotations

import base64
import dataclasses
import socket
import uuid
from datetime import UTC

import aiohttp
import pytest
from yarl import URL

from fixtures.database import run_async
from fixtures.storage_files import write_storage_objects
from reference.app import create_app
from reference.db.pool import connect
from reference.settings import UrlMode
from reference.workspace.views import start_of_today
from tests.conftest import SETTINGS, auth_headers

ALL_ASSETS = """
select a.id, a.user_id, a.created_at, a.metadata->>'workspace_dismissed' as dismissed, p.title
from assets a left join projects p on p.id = a.project_id
where a.user_id = $1
order by a.created_at desc, a.id desc
"""


async def _write_objects(dsn, root):
    async with connect(dsn) as conn:
        return await write_storage_objects(conn, root, progress=False)


@pytest.fixture(scope="session")
def seeded_storage(seeded_template, tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    report = run_async(_write_objects(seeded_template.dsn, root))
    assert report.written > 0
    return root


@pytest.fixture
async def client(make_client, seeded_template, seeded_storage):
    return await make_client(seeded_template.dsn, storage_dir=seeded_storage)


async def rows_of(dsn, user_id):
    async with connect(dsn) as conn:
        return await conn.fetch(ALL_ASSETS, user_id)


def fetch_signed(client, url):
    """GET an absolute signed URL from the test server (public_url names the default port)."""
    return client.get(URL(url).path_qs)


def a_light_user(seeded):
    return seeded.users[2]


async def page(client, user, **params):
    resp = await client.get("/v1/workspace", params=params, headers=auth_headers(user))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_first_page_newest_first_with_thumbnails(client, seeded_template):
    heavy = seeded_template.heavy_user
    body = await page(client, heavy)
    assert body["mode"] == "all"
    assets = body["assets"]
    assert len(assets) == 50
    expected = await rows_of(seeded_template.dsn, heavy)
    assert [a["id"] for a in assets] == [str(r["id"]) for r in expected[:50]]
    titles = {str(r["id"]): r["title"] for r in expected}
    for asset in assets:
        assert asset["project_title"] == titles[asset["id"]]
        assert asset["thumbnail_url"].split("?token=")[0].endswith(asset_thumb_suffix(asset))
        assert "high_res_url" not in asset
    assert any(a["job"] is not None for a in assets)
    for asset in assets:
        if asset["job"] is not None:
            assert set(asset["job"]) == {"quality", "job_type", "model_type", "metadata"}
            assert asset["job"]["job_type"] == asset["type"]
    assert body["next_cursor"]


def asset_thumb_suffix(asset):
    return ".thumb.webp"


async def test_paging_covers_every_asset_once(client, seeded_template):
    user = a_light_user(seeded_template)
    expected = [str(r["id"]) for r in await rows_of(seeded_template.dsn, user)]
    seen, cursor = [], None
    while True:
        params = {"limit": "7"} | ({"cursor": cursor} if cursor else {})
        body = await page(client, user, **params)
        assert len(body["assets"]) <= 7
        seen += [a["id"] for a in body["assets"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def start_of_day(moment):
    """The UTC day of ``moment``, as the service's session view computes today's."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def move_days(dsn, days_from, days_to):
    """Shift every asset by whole days, so the dataset's day ``days_from`` becomes ``days_to``.

    The seeded template fixes its reference hour when the session starts; a run that crosses
    midnight UTC would otherwise ask for a "today" the dataset has no assets in.
    """
    async with connect(dsn) as conn:
        for table in ("images", "videos"):
            await conn.execute(
                f"update {table} set created_at = created_at + $1", days_to - days_from
            )


async def session_pages(client, user):
    seen, cursor = [], None
    while True:
        params = {"mode": "session", "limit": "200"} | ({"cursor": cursor} if cursor else {})
        body = await page(client, user, **params)
        assert body["mode"] == "session"
        assert all(not a["dismissed"] for a in body["assets"])
        seen += [a["id"] for a in body["assets"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_session_mode_is_today_and_not_dismissed(make_client, seeded_template, seeded_dsn):
    heavy = seeded_template.heavy_user
    client = await make_client(seeded_dsn)
    data_day = start_of_day(seeded_template.spec.reference_now)
    # Twice at most: the second pass runs only if midnight UTC fell inside the first.
    for _ in range(2):
        today = start_of_today()
        await move_days(seeded_dsn, data_day, today)
        data_day = today
        rows = await rows_of(seeded_dsn, heavy)
        expected = [
            str(r["id"]) for r in rows if r["created_at"] >= today and r["dismissed"] != "true"
        ]
        seen = await session_pages(client, heavy)
        if start_of_today() == today:
            break
    assert expected, "the dataset gives the heavy user assets today"
    assert seen == expected
    older = [r for r in rows if r["created_at"] < today]
    assert older, "the heavy user also has assets from before today, which the session hides"


async def test_high_res_only_on_request_and_urls_serve(client, seeded_template):
    body = await page(client, seeded_template.heavy_user, limit="5", include="high_res")
    for asset in body["assets"]:
        for key in ("thumbnail_url", "high_res_url"):
            resp = await fetch_signed(client, asset[key])
            assert resp.status == 200, (key, await resp.text())
            assert await resp.read()
            suffix = URL(asset[key]).path.rsplit(".", 1)[1]
            assert (
                resp.headers["Content-Type"]
                == {"png": "image/png", "webp": "image/webp", "mp4": "video/mp4"}[suffix]
            )


async def test_single_asset_and_cross_user(client, seeded_template):
    owner, other = seeded_template.heavy_user, a_light_user(seeded_template)
    mine = (await page(client, owner, limit="1"))["assets"][0]
    resp = await client.get(f"/v1/assets/{mine['id']}", headers=auth_headers(owner))
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == mine["id"]
    assert body["high_res_url"]
    assert (await fetch_signed(client, body["high_res_url"])).status == 200
    resp = await client.get(f"/v1/assets/{mine['id']}", headers=auth_headers(other))
    assert resp.status == 404
    assert mine["id"] not in await resp.text() or (await resp.json())["error"] == "not_found"
    missing = await client.get(f"/v1/assets/{uuid.uuid4()}", headers=auth_headers(owner))
    assert missing.status == 404
    other_ids = {str(r["id"]) for r in await rows_of(seeded_template.dsn, other)}
    seen = {a["id"] for a in (await page(client, owner, limit="200"))["assets"]}
    assert not seen & other_ids


async def test_a_stranger_sees_nothing(client):
    stranger = uuid.uuid4()
    body = await page(client, stranger)
    assert body == {"mode": "all", "assets": [], "next_cursor": None}


@pytest.mark.parametrize("path", ["/v1/workspace", f"/v1/assets/{uuid.uuid4()}"])
async def test_routes_need_a_token(client, path):
    assert (await client.get(path)).status == 401
    resp = await client.get(path, headers={"Authorization": "Bearer not.a.jwt"})
    assert resp.status == 401


def forged_cursor(payload):
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "bm90IGpzb24"}, "cursor"),
        ({"cursor": forged_cursor(b'["2025-01-01T00:00:00", "x"]')}, "cursor"),
        ({"cursor": forged_cursor(b'["2025-01-01T00:00:00"]')}, "cursor"),
        ({"cursor": forged_cursor(b'["2025-01-01T00:00:00", "' + b"0" * 32 + b'"]')}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"mode": "today"}, "mode"),
        ({"include": "everything"}, "include"),
    ],
)
async def test_bad_input_is_400_naming_the_field(client, seeded_template, params, field):
    resp = await client.get(
        "/v1/workspace", params=params, headers=auth_headers(seeded_template.heavy_user)
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["field"] == field
    assert body["error"] == "bad_request"


async def test_bad_asset_id_is_400(client, seeded_template):
    resp = await client.get(
        "/v1/assets/not-a-uuid", headers=auth_headers(seeded_template.heavy_user)
    )
    assert resp.status == 400
    assert (await resp.json())["field"] == "asset_id"


async def test_page_size_cap_follows_settings(make_client, seeded_template, seeded_storage):
    client = await make_client(seeded_template.dsn, storage_dir=seeded_storage, page_size_max=10)
    headers = auth_headers(seeded_template.heavy_user)
    assert len((await page(client, seeded_template.heavy_user, limit="10"))["assets"]) == 10
    resp = await client.get("/v1/workspace", params={"limit": "11"}, headers=headers)
    assert (await resp.json())["field"] == "limit"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_legacy_and_unified_pages_agree_and_serve(
    aiohttp_server, seeded_template, seeded_storage
):
    pages = {}
    for mode in UrlMode:
        port = free_port()
        settings = dataclasses.replace(
            SETTINGS,
            database_url=seeded_template.dsn,
            storage_dir=seeded_storage,
            public_url=f"http://127.0.0.1:{port}",
            url_mode=mode,
        )
        server = await aiohttp_server(create_app(settings), port=port)
        headers = auth_headers(seeded_template.heavy_user)
        async with aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/v1/workspace"), headers=headers) as resp:
                assert resp.status == 200
                body = await resp.json()
            for asset in body["assets"][:10]:
                async with session.get(asset["thumbnail_url"]) as got:
                    assert got.status == 200
                    assert await got.read()
        pages[mode] = body
        await server.close()
    unified, legacy = pages[UrlMode.UNIFIED], pages[UrlMode.LEGACY]
    assert [a["id"] for a in unified["assets"]] == [a["id"] for a in legacy["assets"]]
    for u, lg in zip(unified["assets"], legacy["assets"], strict=True):
        assert (
            u["thumbnail_url"].split("?")[0].split("/storage/")[1]
            == (lg["thumbnail_url"].split("?")[0].split("/storage/")[1])
        )
