"""Supabase Storage's REST routes for signed URLs and object reads, served from the object store.

Compatible with ``storage-api``, so supabase-js (``createSignedUrl(s)``, ``download``) and
storage3 work unchanged: sign one object, sign many (``paths``), read by signed URL (with
``download`` for an attachment) and read with a bearer (``/object/authenticated/...`` and
``/object/...``). Signing and bearer reads take the service-role key (``SERVICE_ROLE_KEY``, never
the URL-signing key) or a user's access token, which reaches only objects under the user's own
folder (the usual Supabase policy ``foldername(name)[1] = auth.uid()``). Errors carry
storage-api's shape and statuses: ``{"statusCode": "404", "error": ..., "code": ..., "message":
...}`` with HTTP 400 for a missing object or bucket, as storage-api answers.

A signed URL is the capability, so its object is cacheable by any cache, a CDN included, for
the rest of the URL's life (``public, max-age, immutable``); the ETag is a hash of the bytes,
the blob's name in :mod:`reference.urls.object_store` (kept with the object, not computed per
read).
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Any, Final
from urllib.parse import quote
from uuid import UUID

import jwt
from aiohttp import web

from reference.settings import Settings, UrlMode
from reference.urls.buckets import BUCKETS, UnsafePath
from reference.urls.legacy import LegacyUrlService
from reference.urls.object_store import ObjectStore, check_name
from reference.urls.service import ALGORITHM, URLS, UrlService, make_unified, sign_token
from reference.web import auth, inputs
from reference.web.errors import ApiError, BadRequest, json_response
from reference.web.feature import Feature
from reference.web.metrics import METRICS
from reference.web.openapi import ApiRoutes, Param, ResponseSpec
from reference.web.typedefs import POOL, SETTINGS, STORE

routes = ApiRoutes(tag="storage")

BATCH_NOT_FOUND: Final = "Either the object does not exist or you do not have access to it"
MAX_EXPIRES_IN: Final = 10 * 365 * 86_400
MAX_BATCH_PATHS: Final = 1_000
DIGITS: Final = re.compile(r"[0-9]{1,12}")
#: Not every Python's mimetypes table knows WebP.
CONTENT_TYPES: Final = {".png": "image/png", ".webp": "image/webp", ".mp4": "video/mp4"}
OBJECT_HEADERS: Final = {"Referrer-Policy": "no-referrer", "Accept-Ranges": "bytes"}


class StorageError(ApiError):
    """An error in storage-api's body shape (``statusCode`` is a string there, and may differ
    from the HTTP status: a missing object is HTTP 400 with ``statusCode: "404"``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        status_code: int | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.code = code
        self.status_code = status_code or status
        self.error = error or code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "statusCode": str(self.status_code),
            "code": self.code,
            "error": self.error,
            "message": self.message,
        }
        if self.field is not None:
            body["field"] = self.field
        return body


def invalid_request(message: str, field: str) -> StorageError:
    return StorageError(400, "InvalidRequest", message, field=field)


def not_found(field: str = "path") -> StorageError:
    return StorageError(
        400, "NoSuchKey", "Object not found", field=field, status_code=404, error="not_found"
    )


def no_such_bucket() -> StorageError:
    return StorageError(
        400,
        "NoSuchBucket",
        "Bucket not found",
        field="bucket",
        status_code=404,
        error="Bucket not found",
    )


def checked_name(bucket: str, path: str) -> None:
    """storage-api's refusals of a bucket or an object name, before the store is asked."""
    if bucket not in BUCKETS:
        raise no_such_bucket()
    try:
        check_name(bucket, path)
    except UnsafePath:
        raise invalid_request(f"invalid object path {path!r}", "path") from None


def verify_object_token(key: str, token: str, bucket: str, path: str) -> dict[str, Any]:
    """The claims of a signed-URL token for ``bucket/path``; storage-api's errors otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": ["url", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise StorageError(400, "InvalidJWT", "jwt expired", field="token") from None
    except jwt.InvalidTokenError as exc:
        raise StorageError(400, "InvalidJWT", str(exc) or "invalid token", field="token") from None
    if claims.get("url") != f"{bucket}/{path}":
        raise StorageError(
            400, "InvalidSignature", "The url do not match the signature", field="token"
        )
    return claims


def bearer_owner(request: web.Request) -> UUID | None:
    """Who is asking: ``None`` for the service role (``SERVICE_ROLE_KEY``), else the user."""
    settings = request.app[SETTINGS]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise StorageError(400, "Unauthorized", "missing bearer token", field="authorization")
    if hmac.compare_digest(token.encode(), settings.service_role_key.encode()):
        return None
    try:
        return auth.verify_token(settings.jwt_secret, token)
    except ApiError as exc:
        raise StorageError(400, "InvalidJWT", exc.message, field="authorization") from None


def may_read(owner: UUID | None, path: str) -> bool:
    return owner is None or path.split("/", 1)[0] == str(owner)


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        return await inputs.json_object(request)
    except BadRequest as exc:
        raise invalid_request(exc.message, exc.field or "body") from None


def expires_in(body: dict[str, Any]) -> int:
    """storage-api's validator coerces (``"600"`` is 600, as storage3 sends it)."""
    value = body.get("expiresIn")
    if (isinstance(value, str) and DIGITS.fullmatch(value)) or (
        isinstance(value, float) and value.is_integer()
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXPIRES_IN:
        raise invalid_request(
            f"expiresIn must be an integer between 1 and {MAX_EXPIRES_IN}", "expiresIn"
        )
    return value


def signed_url_path(bucket: str, path: str, token: str) -> str:
    """storage-api's ``signedURL``: the object path as it is, not percent-encoded (clients
    encode the whole URL once; encoding here would make them encode it twice)."""
    return f"/object/sign/{bucket}/{path}?token={token}"


def signed(settings: Settings, bucket: str, path: str, ttl_s: int) -> str:
    """storage-api's ``signObject`` of an existing object: ``iat`` is now, ``exp`` now+ttl."""
    now = int(time.time())
    token = sign_token(settings.storage_key, bucket, path, now, now + ttl_s)
    return signed_url_path(bucket, path, token)


def content_disposition(download: str | None) -> dict[str, str]:
    """storage-api's ``download`` query: empty is an attachment, else its file name."""
    if download is None:
        return {}
    if download == "":
        return {"Content-Disposition": "attachment;"}
    name = quote(download, safe="")
    return {"Content-Disposition": f"attachment; filename={name}; filename*=UTF-8''{name}"}


async def object_response(
    request: web.Request, bucket: str, path: str, headers: dict[str, str]
) -> web.Response:
    """The object's bytes with its strong content ETag, 304 on If-None-Match, one byte range
    (honoured only when If-Range, if sent, names the current ETag)."""
    found = await request.app[STORE].read(request.app[POOL], bucket, path)
    if found is None:
        raise not_found()
    data, etag = found.data, found.etag
    headers = {**OBJECT_HEADERS, **headers, "ETag": etag}
    suffix = PurePosixPath(path).suffix
    content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
    wanted = request.if_none_match
    if wanted is not None and any(tag.value in ("*", etag.strip('"')) for tag in wanted):
        return web.Response(status=304, headers=headers)
    if_range = request.headers.get("If-Range")
    if "Range" in request.headers and (if_range is None or if_range == etag):
        try:
            part = request.http_range
        except ValueError:
            part = None
        if part is not None:
            start, stop, _ = part.indices(len(data))
            if (part.start is not None and part.start >= len(data)) or start >= stop:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return web.Response(status=416, headers=headers)
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
            return web.Response(
                status=206, body=data[start:stop], headers=headers, content_type=content_type
            )
    return web.Response(body=data, headers=headers, content_type=content_type)


EXPIRES_IN_SCHEMA: Final = {
    "oneOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_EXPIRES_IN},
        {"type": "string", "pattern": "^[0-9]{1,9}$"},
    ],
    "description": f"seconds, 1 to {MAX_EXPIRES_IN}; a string of digits is read as a number",
}
BUCKET_PARAM: Final = Param("bucket", "path", description="bucket name")
PATH_PARAM: Final = Param(
    "path", "path", schema={"type": "string", "pattern": "^[^/]"}, description="object path"
)
AUTH_PARAM: Final = Param(
    "Authorization",
    "header",
    required=True,
    description="Bearer SERVICE_ROLE_KEY, or a user's access token (own folder only)",
)
DOWNLOAD_PARAM: Final = Param(
    "download", description="send as an attachment (empty) or under this file name"
)
SIGNED_URL: Final = {"type": "string", "description": "/object/sign/{bucket}/{path}?token=..."}
OBJECT_BYTES: Final = {"type": "string", "format": "binary"}
OBJECT_RESPONSES: Final[dict[int, ResponseSpec]] = {
    200: ("the object's bytes", OBJECT_BYTES, "application/octet-stream"),
    206: ("one byte range of the object", OBJECT_BYTES, "application/octet-stream"),
    304: "not modified",
    416: ("the range is outside the object", OBJECT_BYTES, "application/octet-stream"),
}


@routes.operation(
    "POST",
    "/storage/v1/object/sign/{bucket}/{path:.+}",
    summary="Sign one object (storage-api createSignedUrl)",
    params=[BUCKET_PARAM, PATH_PARAM, AUTH_PARAM],
    body={
        "type": "object",
        "required": ["expiresIn"],
        "properties": {"expiresIn": EXPIRES_IN_SCHEMA},
    },
    responses={
        200: (
            "the signed URL, relative to /storage/v1",
            {"type": "object", "required": ["signedURL"], "properties": {"signedURL": SIGNED_URL}},
        )
    },
    public=True,
    errors="storage",
)
async def sign_object(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    owner = bearer_owner(request)
    bucket, path = request.match_info["bucket"], request.match_info["path"]
    ttl = expires_in(await read_json(request))
    if not may_read(owner, path):
        raise not_found()
    checked_name(bucket, path)
    if not await request.app[STORE].exists_many(request.app[POOL], bucket, [path]):
        raise not_found()
    request.app[METRICS].urls_signed.labels("storage", bucket).inc()
    return json_response({"signedURL": signed(settings, bucket, path, ttl)})


@routes.operation(
    "POST",
    "/storage/v1/object/sign/{bucket}",
    summary="Sign many objects of one bucket (storage-api createSignedUrls)",
    params=[BUCKET_PARAM, AUTH_PARAM],
    body={
        "type": "object",
        "required": ["expiresIn", "paths"],
        "properties": {
            "expiresIn": EXPIRES_IN_SCHEMA,
            "paths": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": MAX_BATCH_PATHS,
            },
        },
    },
    responses={
        200: (
            "one item per path, in order: a signed URL, or the error",
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["error", "path", "signedURL"],
                    "properties": {
                        "error": {"type": "string", "nullable": True},
                        "path": {"type": "string"},
                        "signedURL": {**SIGNED_URL, "nullable": True},
                    },
                },
            },
        )
    },
    public=True,
    errors="storage",
)
async def sign_objects(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    owner = bearer_owner(request)
    bucket = request.match_info["bucket"]
    body = await read_json(request)
    ttl = expires_in(body)
    paths = body.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise invalid_request("paths must be a list of strings", "paths")
    if not 1 <= len(paths) <= MAX_BATCH_PATHS:
        raise invalid_request(f"paths must name 1 to {MAX_BATCH_PATHS} objects", "paths")
    if bucket not in BUCKETS:
        raise no_such_bucket()
    refused: dict[str, str] = {}
    for path in paths:
        if not may_read(owner, path):
            refused[path] = BATCH_NOT_FOUND
            continue
        try:
            checked_name(bucket, path)
        except StorageError as exc:
            refused[path] = exc.message
    asked = [p for p in dict.fromkeys(paths) if p not in refused]
    existing = await request.app[STORE].exists_many(request.app[POOL], bucket, asked)
    items: list[dict[str, Any]] = []
    for path in paths:
        url = signed(settings, bucket, path, ttl) if path in existing else None
        error = None if url is not None else refused.get(path, BATCH_NOT_FOUND)
        items.append({"error": error, "path": path, "signedURL": url})
    signed_count = sum(1 for item in items if item["signedURL"] is not None)
    request.app[METRICS].urls_signed.labels("storage", bucket).inc(signed_count)
    return json_response(items)


@routes.operation(
    "GET",
    "/storage/v1/object/sign/{bucket}/{path:.+}",
    summary="Read a signed object: cacheable for the URL's life, strong ETag, 304, If-Range",
    params=[
        BUCKET_PARAM,
        PATH_PARAM,
        Param("token", required=True, description="the signed URL's token"),
        DOWNLOAD_PARAM,
        Param("If-None-Match", "header", description="an ETag from an earlier answer"),
        Param("Range", "header", description="one byte range"),
        Param("If-Range", "header", description="send the range only if this is the ETag"),
    ],
    responses=OBJECT_RESPONSES,
    public=True,
    errors="storage",
)
async def read_signed_object(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    bucket, path = request.match_info["bucket"], request.match_info["path"]
    token = request.query.get("token")
    if not token:
        raise invalid_request("querystring must have required property 'token'", "token")
    claims = verify_object_token(settings.storage_key, token, bucket, path)
    checked_name(bucket, path)
    max_age = max(0, int(claims["exp"]) - int(time.time()))
    headers = {"Cache-Control": f"public, max-age={max_age}, immutable"}
    headers.update(content_disposition(request.query.get("download")))
    return await object_response(request, bucket, path, headers)


async def read_object(request: web.Request) -> web.StreamResponse:
    bucket, path = request.match_info["bucket"], request.match_info["path"]
    owner = bearer_owner(request)
    checked_name(bucket, path)
    if not may_read(owner, path):
        raise not_found()
    headers = {"Cache-Control": "private, no-cache"}
    headers.update(content_disposition(request.query.get("download")))
    return await object_response(request, bucket, path, headers)


for _prefix, _summary in (
    ("/storage/v1/object/authenticated", "Read an object with a bearer (storage-api)"),
    ("/storage/v1/object", "Read an object with a bearer (storage-api; supabase-js download)"),
):
    routes.operation(
        "GET",
        _prefix + "/{bucket}/{path:.+}",
        summary=_summary,
        params=[BUCKET_PARAM, PATH_PARAM, AUTH_PARAM, DOWNLOAD_PARAM],
        responses=OBJECT_RESPONSES,
        public=True,
        errors="storage",
    )(read_object)


async def store_context(app: web.Application) -> AsyncIterator[None]:
    """The object store under ``STORAGE_DIR``, its pool blobs written if missing; the batch
    feature (purge, download) uses it too."""
    app[STORE] = await ObjectStore.open(app[SETTINGS].storage_dir)
    yield


async def url_service_context(app: web.Application) -> AsyncIterator[None]:
    """The app's URL service: unified, or the legacy baseline (``URL_MODE=legacy``)."""
    settings = app[SETTINGS]
    service: UrlService
    if settings.url_mode == UrlMode.LEGACY:
        service = LegacyUrlService(settings, app[METRICS])
    else:
        service = make_unified(settings, app[METRICS])
    app[URLS] = service
    try:
        yield
    finally:
        await service.close()


FEATURE = Feature("storage", routes, contexts=(store_context, url_service_context))
