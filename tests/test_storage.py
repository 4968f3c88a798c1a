"""Supabase-compatible storage routes over real HTTP: signing, reading, and every refusal."""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import pytest

from reference.app import create_app
from reference.assets import Asset, ContentType
from reference.settings import Settings, UrlMode
from reference.urls.service import URLS, make_unified, sign_token
from reference.web.metrics import METRICS
from tests.conftest import SETTINGS, auth_headers, pool_content, put_objects

OWNER = uuid.UUID("11111111-1111-4111-8111-111111111111")
OTHER = uuid.UUID("22222222-2222-4222-8222-222222222222")
KEY = SETTINGS.storage_key
SERVICE = {"Authorization": f"Bearer {SETTINGS.service_role_key}"}
OBJECTS = [
    ("image_fast", f"{OWNER}/job/0.png"),
    ("image_fast", f"{OWNER}/job/0.thumb.webp"),
    ("image7b_high_enhanced", f"{OWNER}/job/1.thumb.webp"),
    ("video_high", f"{OTHER}/job/0.mp4"),
]


@pytest.fixture
async def storage_dir(tmp_path, seeded_template):
    root = tmp_path / "storage"
    await put_objects(seeded_template.dsn, root, OBJECTS)
    (tmp_path / "secret.txt").write_text("outside every bucket")
    return root


@pytest.fixture
async def client(make_client, seeded_template, storage_dir):
    return await make_client(seeded_template.dsn, storage_dir=storage_dir)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_storage_error(body, status, code):
    assert body["statusCode"] == str(status)
    assert code in (body["error"], body.get("code"))
    assert body["message"]


async def test_sign_one_then_read_with_etag_and_304(client):
    path = f"{OWNER}/job/0.png"
    resp = await client.post(
        f"/storage/v1/object/sign/image_fast/{path}", json={"expiresIn": 600}, headers=SERVICE
    )
    assert resp.status == 200
    signed = (await resp.json())["signedURL"]
    assert signed.startswith(f"/object/sign/image_fast/{path}?token=")
    got = await client.get("/storage/v1" + signed)
    assert got.status == 200
    assert await got.read() == pool_content(path)
    assert got.headers["Content-Type"] == "image/png"
    etag = got.headers["ETag"]
    public, max_age, immutable = got.headers["Cache-Control"].split(", ")
    assert (public, immutable) == ("public", "immutable")
    assert 0 < int(max_age.removeprefix("max-age=")) <= 600
    assert got.headers["Referrer-Policy"] == "no-referrer"
    again = await client.get("/storage/v1" + signed, headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""


async def test_user_token_signs_own_objects_only(client):
    own = f"/storage/v1/object/sign/image_fast/{OWNER}/job/0.png"
    resp = await client.post(own, json={"expiresIn": 60}, headers=auth_headers(OWNER))
    assert resp.status == 200
    resp = await client.post(own, json={"expiresIn": 60}, headers=auth_headers(OTHER))
    assert resp.status == 400
    assert_storage_error(await resp.json(), 404, "not_found")
    resp = await client.post(own, json={"expiresIn": 60})
    assert resp.status == 400
    assert_storage_error(await resp.json(), 400, "Unauthorized")
    resp = await client.post(own, json={"expiresIn": 60}, headers={"Authorization": "Bearer x"})
    assert_storage_error(await resp.json(), 400, "InvalidJWT")


async def test_sign_missing_object_is_not_found(client):
    resp = await client.post(
        f"/storage/v1/object/sign/image_fast/{OWNER}/job/9.png",
        json={"expiresIn": 60},
        headers=SERVICE,
    )
    assert resp.status == 400
    assert_storage_error(await resp.json(), 404, "NoSuchKey")


async def test_batch_sign_has_per_item_errors(client):
    paths = [
        f"{OWNER}/job/0.png",
        f"{OWNER}/job/404.png",
        "../../secret.txt",
        f"{OWNER}/job/0.thumb.webp",
        f"{OTHER}/job/0.png",
    ]
    resp = await client.post(
        "/storage/v1/object/sign/image_fast",
        json={"expiresIn": 60, "paths": paths},
        headers=auth_headers(OWNER),
    )
    assert resp.status == 200
    items = await resp.json()
    assert [item["path"] for item in items] == paths
    assert [item["error"] is None for item in items] == [True, False, False, True, False]
    for item in items:
        assert (item["signedURL"] is None) == (item["error"] is not None)
        if item["signedURL"]:
            assert (await client.get("/storage/v1" + item["signedURL"])).status == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b"{}", "expiresIn"),
        (b'{"expiresIn": -5}', "expiresIn"),
        (b'{"expiresIn": "sixty"}', "expiresIn"),
        (b'{"expiresIn": "60.5"}', "expiresIn"),
        (b'{"expiresIn": 60, "paths": []}', "paths"),
        (b'{"expiresIn": 60, "paths": "a.png"}', "paths"),
        (b'{"expiresIn": 60, "paths": [1]}', "paths"),
    ],
)
async def test_bad_sign_bodies_name_the_field(client, body, field):
    resp = await client.post(
        "/storage/v1/object/sign/image_fast",
        data=body,
        headers={**SERVICE, "Content-Type": "application/json"},
    )
    assert resp.status == 400
    payload = await resp.json()
    assert payload["field"] == field
    assert_storage_error(payload, 400, "InvalidRequest")


async def test_expired_tampered_and_wrong_path_tokens_are_refused(client):
    bucket, path = "image_fast", f"{OWNER}/job/0.png"
    now = int(time.time())
    url = f"/storage/v1/object/sign/{bucket}/{path}"
    expired = sign_token(KEY, bucket, path, now - 7200, now - 3600)
    resp = await client.get(url, params={"token": expired})
    assert resp.status == 400
    body = await resp.json()
    assert_storage_error(body, 400, "InvalidJWT")
    assert body["message"] == "jwt expired"

    good = sign_token(KEY, bucket, path, now, now + 600)
    assert (await client.get(url, params={"token": good})).status == 200
    head, _payload, signature = good.split(".")
    other = sign_token(KEY, bucket, f"{OTHER}/job/0.png", now, now + 600).split(".")[1]
    for bad in (f"{head}.{other}.{signature}", good[:-3] + "abc", "not-a-jwt"):
        resp = await client.get(url, params={"token": bad})
        assert resp.status == 400
        assert_storage_error(await resp.json(), 400, "InvalidJWT")
    wrong_key = "a-different-key-that-is-long-enough-for-hs256"
    forged = sign_token(wrong_key, bucket, path, now, now + 60)
    assert_storage_error(
        await (await client.get(url, params={"token": forged})).json(), 400, "InvalidJWT"
    )

    thumb = f"/storage/v1/object/sign/{bucket}/{OWNER}/job/0.thumb.webp"
    resp = await client.get(thumb, params={"token": good})
    assert resp.status == 400
    assert_storage_error(await resp.json(), 400, "InvalidSignature")

    resp = await client.get(url)
    assert resp.status == 400
    assert (await resp.json())["field"] == "token"


@pytest.mark.parametrize(
    "path", ["../../secret.txt", "..%2F..%2Fsecret.txt", "a/%2E%2E/%2E%2E/%2E%2E/secret.txt"]
)
async def test_path_traversal_is_refused(client, path):
    raw = path.replace("%2F", "/").replace("%2E", ".")
    now = int(time.time())
    token = sign_token(KEY, "image_fast", raw, now, now + 600)
    url = client.make_url(f"/storage/v1/object/sign/image_fast/{path}?token={token}")
    resp = await client.session.get(url.with_path(url.raw_path, encoded=True))
    assert resp.status in (400, 404)
    assert b"outside every bucket" not in await resp.read()
    resp = await client.post(
        f"/storage/v1/object/sign/image_fast/{path}", json={"expiresIn": 60}, headers=SERVICE
    )
    assert resp.status in (400, 404)


def asset_for(bucket_hint_model, path, content_type=ContentType.IMAGE, quality="fast", meta=None):
    return Asset(
        content_type, uuid.uuid4(), OWNER, None, "p", "completed", quality, bucket_hint_model,
        f"{path}.png", f"{path}.thumb.webp", None, meta or {}, datetime.now(UTC),
    )  # fmt: skip


async def test_remote_signer_against_these_routes(client, storage_dir):
    base = str(client.make_url("")).rstrip("/")
    settings = dataclasses.replace(
        SETTINGS,
        storage_remote_url=base,
        storage_remote_key=SETTINGS.service_role_key,
        storage_dir=storage_dir,
    )
    service = make_unified(settings, client.app[METRICS])
    try:
        assets = [
            asset_for(None, f"{OWNER}/job/0"),
            asset_for("Enhanced", f"{OWNER}/job/1", quality="high"),
            asset_for(None, f"{OWNER}/job/missing"),
        ]
        urls = await service.thumbnail_urls(assets)
        assert urls[2] is None
        for url in urls[:2]:
            assert url.startswith(base + "/storage/v1/object/sign/")
            resp = await client.session.get(url)
            assert resp.status == 200
            assert await resp.read()
    finally:
        await service.close()


@pytest.mark.parametrize("mode", [UrlMode.LEGACY, UrlMode.UNIFIED])
async def test_both_modes_give_urls_that_serve_the_bytes(
    aiohttp_server, seeded_template, storage_dir, mode
):
    port = free_port()
    settings = dataclasses.replace(
        Settings(),
        database_url=seeded_template.dsn,
        storage_dir=storage_dir,
        public_url=f"http://127.0.0.1:{port}",
        url_mode=mode,
    )
    app = create_app(settings)
    await aiohttp_server(app, port=port)
    service = app[URLS]
    assert service.mode == mode
    # The enhanced image's bucket is not the legacy guess: legacy finds it by falling back.
    assets = [
        asset_for(None, f"{OWNER}/job/0"),
        asset_for("Enhanced", f"{OWNER}/job/1", quality="high"),
    ]
    urls = await service.thumbnail_urls(assets)
    assert all(url is not None for url in urls)
    for url, (bucket, path) in zip(urls, [OBJECTS[1], OBJECTS[2]], strict=True):
        assert f"/{bucket}/{path}?token=" in url
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == pool_content(path)
    calls = app[METRICS].registry.get_sample_value(
        "sign_calls_total", {"mode": mode.value, "kind": "single" if mode == "legacy" else "batch"}
    )
    # Legacy: one round trip per asset, plus the fallbacks of the wrong guess.
    assert calls == (4 if mode == UrlMode.LEGACY else 2)
    assert await service.thumbnail_urls(assets) == urls  # served from each mode's cache
    service.clear_cache()
