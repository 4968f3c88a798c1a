"""Keyset cursors and page sizes (reference.web.paging), and every paged endpoint's use of them."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from reference.settings import Settings
from reference.web.errors import BadRequest
from reference.web.paging import (
    cursor_datetime,
    cursor_uuid,
    decode_cursor,
    encode_cursor,
    parse_limit,
)
from tests.conftest import auth_headers

SETTINGS = dataclasses.replace(Settings(), page_size_default=50, page_size_max=200)


def forged(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def test_round_trip_keeps_times_ids_and_json_values() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    ident = uuid.uuid4()
    raw = encode_cursor([moment, ident, "prompt ü", 3, 1.5])
    assert set(raw) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    when, who, text, count, ratio = decode_cursor(raw, shape=(str, str, str, int, float))
    assert cursor_datetime(when) == moment
    assert cursor_datetime(when).utcoffset() == timedelta(hours=2)
    assert cursor_uuid(who) == ident
    assert (text, count, ratio) == ("prompt ü", 3, 1.5)


def test_uuid_subclasses_encode_as_text() -> None:
    class DriverUUID(uuid.UUID):
        pass

    ident = uuid.uuid4()
    assert decode_cursor(encode_cursor([DriverUUID(str(ident))])) == [str(ident)]
    with pytest.raises(TypeError):
        encode_cursor([object()])


def test_decode_without_shape_returns_the_items() -> None:
    assert decode_cursor(encode_cursor([])) == []
    assert decode_cursor(encode_cursor([1, "a", None])) == [1, "a", None]


@pytest.mark.parametrize(
    ("raw", "shape"),
    [
        ("!!!", None),
        ("", None),
        ("é", None),
        ("a", None),
        (forged(b"not json"), None),
        (forged(b'{"a": 1}'), None),
        (forged(b'"text"'), None),
        (forged(b"[1, 2]"), (int,)),
        (forged(b"[1]"), (int, int)),
        (forged(b'["1"]'), (int,)),
        (forged(b"[1]"), (float,)),
        (forged(b"[null]"), (str,)),
    ],
)
def test_malformed_cursor_is_bad_request_naming_the_field(
    raw: str, shape: tuple[type, ...] | None
) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_cursor(raw, field="after", shape=shape)
    assert caught.value.field == "after"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "value", ["2024-05-01T00:00:00", "yesterday", 12, None, ["2024-05-01T00:00:00+00:00"]]
)
def test_cursor_datetime_needs_an_offset(value: object) -> None:
    with pytest.raises(BadRequest) as caught:
        cursor_datetime(value, field="page")
    assert caught.value.field == "page"


def test_cursor_datetime_accepts_utc() -> None:
    assert cursor_datetime("2024-05-01T00:00:00+00:00") == datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", ["x", "", 7, None, "0" * 31])
def test_cursor_uuid_rejects_what_is_not_one(value: object) -> None:
    with pytest.raises(BadRequest) as caught:
        cursor_uuid(value)
    assert caught.value.field == "cursor"


@pytest.mark.parametrize(("raw", "expected"), [(None, 50), ("", 50), ("1", 1), ("200", 200)])
def test_limit_default_and_bounds(raw: str | None, expected: int) -> None:
    assert parse_limit(raw, SETTINGS) == expected


def test_limit_default_never_exceeds_the_maximum() -> None:
    settings = dataclasses.replace(SETTINGS, page_size_default=500, page_size_max=100)
    assert parse_limit(None, settings) == 100


@pytest.mark.parametrize("raw", ["0", "-1", "201", "ten", "1.5", " "])
def test_limit_outside_bounds_or_not_an_integer_is_bad_request(raw: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_limit(raw, SETTINGS, field="page_size")
    assert caught.value.field == "page_size"
    assert caught.value.status == 400


PAGED_ROUTES = ["/v1/workspace", "/v1/search", "/v1/trash", "/v1/organize/duplicates",
                "/v1/organize/groups", "/v1/organize/tags"]  # fmt: skip


@pytest.mark.parametrize("path", PAGED_ROUTES)
async def test_every_paged_route_shares_the_rules(make_client, seeded_template, path):
    client = await make_client(seeded_template.dsn, page_size_max=30)
    headers = auth_headers(seeded_template.heavy_user)
    for params, field in [
        ({"limit": "31"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": forged(b'[-1, "x", 2.5, null]')}, "cursor"),
    ]:
        resp = await client.get(path, params=params, headers=headers)
        assert resp.status == 400, (path, params)
        assert (await resp.json())["field"] == field
    resp = await client.get(path, params={"limit": "30"}, headers=headers)
    assert resp.status == 200


async def test_tags_cursor_out_of_range_is_bad_request(make_client, seeded_template):
    client = await make_client(seeded_template.dsn)
    headers = auth_headers(seeded_template.heavy_user)
    for position in (-1, 10**9):
        resp = await client.get(
            "/v1/organize/tags", params={"cursor": encode_cursor([position])}, headers=headers
        )
        assert resp.status == 400
        assert (await resp.json())["field"] == "cursor"
