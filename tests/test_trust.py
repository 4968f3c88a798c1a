"""The trust boundary (issue 13): secrets, tokens, input that used to be a 500, headers, objects."""

from __future__ import annotations

import base64
import dataclasses
import io
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import orjson
import pytest

from reference.db.pool import connect
from reference.search.query import parse_query
from reference.settings import Settings, SettingsError, announce_generated
from reference.urls.object_store import ObjectStore
from reference.urls.service import sign_token
from reference.web import inputs
from reference.web.errors import BadRequest
from tests.conftest import SETTINGS, auth_headers, pool_content, put_objects
from tests.search_support import user_assets, walk

OWNER = uuid.UUID("aaaaaaaa-1111-4111-8111-11111111111b")
#: The development defaults this repository once shipped: public, so never a working key.
OLD_DEFAULTS = (
    "workspace-bench-dev-jwt-secret-not-for-production",
    "workspace-bench-dev-storage-key-not-for-production",
)
OBJECT = ("image_fast", f"{OWNER}/job/0.png")
SPACED = ("image_fast", f"{OWNER}/job/a name with spaces.png")


def claims(**overrides):
    now = int(time.time())
    base = {"sub": str(OWNER), "aud": "authenticated", "role": "authenticated", "exp": now + 600}
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def bearer(payload, secret=SETTINGS.jwt_secret):
    return {"Authorization": f"Bearer {jwt.encode(payload, secret, algorithm='HS256')}"}


def craft_cursor(values):
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


async def signed_url(client, ttl_s, headers=None):
    bucket, path = OBJECT
    signed = await client.post(
        f"/storage/v1/object/sign/{bucket}/{path}",
        json={"expiresIn": ttl_s},
        headers=headers or auth_headers(OWNER),
    )
    return "/storage/v1" + (await signed.json())["signedURL"]


@pytest.fixture
async def storage_dir(tmp_path, seeded_template):
    root = tmp_path / "storage"
    await put_objects(seeded_template.dsn, root, (OBJECT, SPACED))
    return root


@pytest.fixture
async def client(make_client, seeded_template, storage_dir):
    """Read-only use of the shared tiny dataset (every write here is refused first; the two
    objects above are put with the same bytes each time)."""
    return await make_client(seeded_template.dsn, storage_dir=storage_dir)


# --- secrets ---------------------------------------------------------------------------------


def test_unset_secrets_are_generated_per_process_and_announced():
    first, second = Settings.from_env({}), Settings.from_env({})
    for name, value in first.secrets().items():
        assert value != second.secrets()[name]
        assert value not in OLD_DEFAULTS
        assert len(value.encode()) >= 32
    assert first.generated == {"JWT_SECRET", "STORAGE_KEY", "SERVICE_ROLE_KEY"}
    assert first.storage_key != first.service_role_key
    out = io.StringIO()
    announce_generated(first, out)
    assert out.getvalue().count("generated a random one") == 3
    given = Settings.from_env({"JWT_SECRET": "j" * 32, "STORAGE_KEY": "s" * 32})
    assert given.generated == {"SERVICE_ROLE_KEY"}
    assert (given.jwt_secret, given.storage_key) == ("j" * 32, "s" * 32)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"JWT_SECRET": "short"}, "JWT_SECRET is 5 bytes"),
        ({"STORAGE_KEY": "x" * 31}, "STORAGE_KEY is 31 bytes"),
        ({"STORAGE_KEY": "k" * 40, "SERVICE_ROLE_KEY": "k" * 40}, "must differ"),
        ({"URL_WINDOW_S": "60", "URL_RESIGN_MARGIN_S": "60"}, "URL_RESIGN_MARGIN_S"),
    ],
)
def test_weak_or_shared_secrets_refuse_to_start(env, complaint):
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env(env)


def test_weak_secrets_only_with_the_development_flag():
    settings = Settings.from_env({"JWT_SECRET": "short", "ALLOW_WEAK_SECRETS": "1"})
    assert settings.jwt_secret == "short"
    with pytest.raises(SettingsError, match="SERVICE_ROLE_KEY must differ"):
        Settings.from_env({"STORAGE_KEY": "a", "SERVICE_ROLE_KEY": "a", "ALLOW_WEAK_SECRETS": "1"})


async def test_the_old_public_defaults_sign_nothing(client):
    bucket, path = OBJECT
    url = f"/storage/v1/object/sign/{bucket}/{path}"
    for old in OLD_DEFAULTS:
        resp = await client.post(
            url, json={"expiresIn": 315360000}, headers={"Authorization": f"Bearer {old}"}
        )
        assert resp.status == 400
        assert (await resp.json())["error"] == "InvalidJWT"
        now = int(time.time())
        minted = sign_token(old, bucket, path, now, now + 315360000)
        resp = await client.get(url, params={"token": minted})
        assert (await resp.json())["error"] == "InvalidJWT"
    # The URL-signing key is not the service role either.
    resp = await client.post(
        url, json={"expiresIn": 60}, headers={"Authorization": f"Bearer {SETTINGS.storage_key}"}
    )
    assert (await resp.json())["error"] == "InvalidJWT"
    resp = await client.post(
        url,
        json={"expiresIn": 60},
        headers={"Authorization": f"Bearer {SETTINGS.service_role_key}"},
    )
    assert resp.status == 200


# --- tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"aud": "anon"}, "aud"),
        ({"aud": "some-other-project"}, "aud"),
        ({"aud": None}, "authorization"),
        ({"role": "anon"}, "role"),
        ({"role": "service_role"}, "role"),
        ({"role": None}, "authorization"),
        ({"sub": str(OWNER).upper()}, "sub"),
        ({"sub": "{" + str(OWNER) + "}"}, "sub"),
        ({"sub": OWNER.hex}, "sub"),
        ({"sub": f"urn:uuid:{OWNER}"}, "sub"),
        ({"exp": lambda now: str(now + 600)}, "exp"),
        ({"exp": None}, "authorization"),
        ({"exp": lambda now: now - 10}, "exp"),
    ],
)
async def test_tokens_need_audience_role_canonical_subject_numeric_expiry(client, overrides, field):
    # Made when the test runs: a token made at collection expires if the suite runs long.
    now = int(time.time())
    payload = claims(**{k: v(now) if callable(v) else v for k, v in overrides.items()})
    resp = await client.get("/v1/workspace", headers=bearer(payload))
    assert resp.status == 401
    body = await resp.json()
    assert body["field"] == field
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_a_proper_user_token_passes(client):
    resp = await client.get("/v1/workspace", headers=bearer(claims()))
    assert resp.status == 200


# --- input that used to be a 500 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"end": "9999-12-31T23:59:59-14:00"}, "end"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "start"),
        ({"end": "9999-12-31"}, "end"),
        ({"start": "0001-01-01"}, "start"),
        ({"start": "2024-01-01T00:00:00+99:00"}, "start"),
    ],
)
async def test_out_of_range_datetimes_are_400_in_search_and_state(client, params, field):
    resp = await client.get("/v1/search", params=params, headers=auth_headers(OWNER))
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["field"] == field
    state = {"filters": {field: params[field]}}
    resp = await client.put("/v1/search/state", json=state, headers=auth_headers(OWNER))
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["field"] == f"filters.{field}"


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:59:59.999999-14:00",
        "0001-01-01T00:00:00+01:00",
        "2024-01-01T00:00:00.1234567+00:00",
        "2024-01-01T00:00:00",
    ],
)
@pytest.mark.parametrize("route", ["/v1/workspace", "/v1/trash"])
async def test_crafted_cursors_are_400(client, route, moment):
    cursor = craft_cursor([moment, str(OWNER)])
    resp = await client.get(route, params={"cursor": cursor}, headers=auth_headers(OWNER))
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["field"] == "cursor"


async def test_search_cursor_datetime_is_checked_too(client):
    fingerprint = parse_query({}).fingerprint()
    cursor = craft_cursor([fingerprint, "9999-12-31T23:59:59-14:00", str(OWNER)])
    resp = await client.get("/v1/search", params={"cursor": cursor}, headers=auth_headers(OWNER))
    assert resp.status == 400
    assert (await resp.json())["field"] == "cursor"


@pytest.mark.parametrize("key", ["k" * 201, "with space", "caf\u00e9", ""])
async def test_organize_apply_checks_the_idempotency_key_like_batch(client, key):
    from fixtures.generate import heavy_user_id
    from fixtures.spec import spec_for

    headers = {**auth_headers(heavy_user_id(spec_for("tiny"))), "Idempotency-Key": key}
    for route, body in (
        ("/v1/organize/apply", {"action": "dismiss_duplicates"}),
        ("/v1/batch/dismiss", {"asset_ids": [str(OWNER)]}),
    ):
        resp = await client.post(route, json=body, headers=headers)
        assert resp.status == 400, (route, await resp.text())
        assert (await resp.json())["field"] == "Idempotency-Key"


async def test_sub_microsecond_bounds_round_toward_the_inside(client, seeded_template):
    from fixtures.generate import heavy_user_id
    from fixtures.spec import spec_for

    user = heavy_user_id(spec_for("tiny"))
    asset = (await user_assets(seeded_template.dsn, user))[0]
    at = asset.created_at.astimezone(UTC)
    after = at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "1Z"  # 100 ns after the row
    before = (at - timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "9Z"
    wide = {"include_dismissed": "true", "limit": "200"}
    headers = auth_headers(user)
    later = (at + timedelta(seconds=1)).isoformat()
    earlier = (at - timedelta(seconds=1)).isoformat()
    ids, _, _ = await walk(client, headers, {**wide, "start": after, "end": later})
    assert str(asset.id) not in ids
    ids, _, _ = await walk(client, headers, {**wide, "start": earlier, "end": before})
    assert str(asset.id) not in ids
    ids, _, _ = await walk(client, headers, {**wide, "start": earlier, "end": after})
    assert str(asset.id) in ids


def test_inputs_uuid_and_timestamps():
    assert inputs.uuid(str(OWNER), "id") == OWNER
    for spelling in (str(OWNER).upper(), OWNER.hex, f"{{{OWNER}}}", f" {OWNER}", 7):
        with pytest.raises(BadRequest) as refused:
            inputs.uuid(spelling, "asset_ids[0]")
        assert refused.value.field == "asset_ids[0]"
    moment = "2024-05-01T10:00:57.2782871+02:00"
    assert inputs.timestamp(moment, "start", "up") == datetime(
        2024, 5, 1, 8, 0, 57, 278288, tzinfo=UTC
    )
    assert inputs.timestamp(moment, "end", "down").microsecond == 278287
    assert inputs.timestamp("2024-05-01T10:00:57.2782870Z", "s", "reject").microsecond == 278287
    with pytest.raises(BadRequest, match="more precise"):
        inputs.timestamp(moment, "cursor", "reject")


# --- errors and headers ----------------------------------------------------------------------


async def test_405_keeps_allow_and_answers_json(client):
    resp = await client.delete("/v1/workspace", headers=auth_headers(OWNER))
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    body = await resp.json()
    assert body["field"] == "method"


async def test_oversize_header_and_request_line_are_json_naming_the_field(client):
    resp = await client.get("/healthz", headers={"X-Big": "x" * 9000})
    assert resp.status == 431
    assert resp.content_type == "application/json"
    assert (await resp.json())["field"] == "X-Big"
    resp = await client.get("/v1/workspace?cursor=" + "a" * 9000)
    assert resp.status == 414
    assert (await resp.json())["field"] == "path"
    many = {f"X-H{i}": "y" * 4000 for i in range(10)}
    resp = await client.get("/healthz", headers=many)
    assert resp.status == 431
    assert (await resp.json())["field"] == "headers"


async def test_security_headers_on_every_kind_of_answer(client):
    bucket, path = OBJECT
    signed = await client.post(
        f"/storage/v1/object/sign/{bucket}/{path}",
        json={"expiresIn": 60},
        headers=auth_headers(OWNER),
    )
    answers = {
        "json": await client.get("/v1/workspace", headers=auth_headers(OWNER)),
        "401": await client.get("/v1/workspace"),
        "404": await client.get("/nowhere"),
        "metrics": await client.get("/metrics"),
        "openapi": await client.get("/openapi.json"),
        "sign": signed,
        "object": await client.get("/storage/v1" + (await signed.json())["signedURL"]),
    }
    for name, resp in answers.items():
        assert resp.headers["X-Content-Type-Options"] == "nosniff", name
        assert resp.headers["Server"] == "workspace-bench", name
        if resp.content_type == "application/json":
            assert resp.headers["Cache-Control"] == "private, no-store", name
    assert answers["object"].headers["Referrer-Policy"] == "no-referrer"


# --- objects: caching, ETag, If-Range, download -------------------------------------------------


async def test_object_etag_is_strong_and_content_based_with_if_range(
    client, seeded_template, storage_dir
):
    bucket, path = OBJECT
    url = await signed_url(client, 3600)
    first = await client.get(url)
    etag = first.headers["ETag"]
    assert not etag.startswith("W/")
    data = await first.read()
    # Put again: a new row time, the same bytes: the same ETag.
    await put_objects(seeded_template.dsn, storage_dir, [OBJECT])
    assert (await client.get(url)).headers["ETag"] == etag
    part = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert part.status == 206
    assert await part.read() == data[:10]
    assert part.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status == 200
    assert await stale.read() == data
    past = await client.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert past.status == 416
    assert (await client.get(url, headers={"If-None-Match": etag})).status == 304
    async with connect(seeded_template.dsn) as conn:  # the fixture puts it back for the next
        await ObjectStore(storage_dir).put(conn, bucket, path, data + b"changed")
    changed = await client.get(url)
    assert changed.headers["ETag"] != etag
    assert await changed.read() == data + b"changed"


@pytest.mark.parametrize(
    ("download", "disposition"),
    [
        ("", "attachment;"),
        ("my photo.png", "attachment; filename=my%20photo.png; filename*=UTF-8''my%20photo.png"),
    ],
)
async def test_download_query_sends_content_disposition(client, download, disposition):
    url = await signed_url(client, 60)
    resp = await client.get(url, params={"download": download})
    assert resp.status == 200
    assert resp.headers["Content-Disposition"] == disposition
    assert "Content-Disposition" not in (await client.get(url)).headers


# --- storage-api's protocol ----------------------------------------------------------------------


async def test_storage_api_shapes(client):
    headers = auth_headers(OWNER)
    bucket, path = OBJECT
    resp = await client.post(
        f"/storage/v1/object/sign/{bucket}/{path}", json={"expiresIn": "600"}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    token = (await resp.json())["signedURL"].split("token=")[1]
    exp_left = jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()
    assert 590 < exp_left <= 600
    resp = await client.post(
        f"/storage/v1/object/sign/{bucket}", json={"expiresIn": 60, "paths": []}, headers=headers
    )
    assert resp.status == 400
    assert (await resp.json())["field"] == "paths"
    resp = await client.post(
        f"/storage/v1/object/sign/nobucket/{path}", json={"expiresIn": 60}, headers=headers
    )
    assert resp.status == 400
    assert await resp.json() == {
        "statusCode": "404",
        "code": "NoSuchBucket",
        "error": "Bucket not found",
        "message": "Bucket not found",
        "field": "bucket",
    }
    resp = await client.post(
        f"/storage/v1/object/sign/{bucket}/{OWNER}/job/none.png",
        json={"expiresIn": 60},
        headers=headers,
    )
    assert resp.status == 400
    body = await resp.json()
    assert (body["statusCode"], body["code"], body["message"]) == (
        "404",
        "NoSuchKey",
        "Object not found",
    )


async def test_signed_url_path_is_not_percent_encoded(client):
    bucket, path = SPACED
    resp = await client.post(
        f"/storage/v1/object/sign/{bucket}/{path}",
        json={"expiresIn": 60},
        headers=auth_headers(OWNER),
    )
    signed = (await resp.json())["signedURL"]
    assert signed.startswith(f"/object/sign/{bucket}/{path}?token=")


@pytest.mark.parametrize("prefix", ["/storage/v1/object/authenticated", "/storage/v1/object"])
async def test_authenticated_download(client, prefix):
    bucket, path = OBJECT
    url = f"{prefix}/{bucket}/{path}"
    resp = await client.get(url, headers=auth_headers(OWNER))
    assert resp.status == 200
    assert await resp.read() == pool_content(path)
    other = await client.get(url, headers=auth_headers(uuid.uuid4()))
    assert other.status == 400
    assert (await other.json())["statusCode"] == "404"
    anonymous = await client.get(url)
    assert anonymous.status == 400
    service = {"Authorization": f"Bearer {SETTINGS.service_role_key}"}
    assert (await client.get(url, headers=service)).status == 200


def test_settings_replace_keeps_checks():
    with pytest.raises(SettingsError):
        dataclasses.replace(SETTINGS, service_role_key=SETTINGS.storage_key)
