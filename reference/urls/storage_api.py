"""Supabase Storage's REST routes for signed URLs, served from local disk.

Compatible with ``storage-api`` (and so with supabase-js's ``createSignedUrl(s)``): sign one
object, sign many (``paths``), and read a signed object. Signing takes the storage key as a
bearer (the service role) or a user's access token, which may sign only objects under the
user's own folder (the usual Supabase policy ``foldername(name)[1] = auth.uid()``). Errors
carry storage-api's shape, ``{"statusCode": "400", "error": "InvalidJWT", "message": ...}``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import jwt
import orjson
from aiohttp import web

from reference.settings import Settings, UrlMode
from reference.urls.buckets import UnsafePath, object_file
from reference.urls.legacy import LegacyUrlService
from reference.urls.service import (
    ALGORITHM,
    URLS,
    UrlService,
    make_unified,
    sign_token,
    signed_path,
)
from reference.web import auth
from reference.web.errors import ApiError, json_response
from reference.web.feature import Feature
from reference.web.metrics import METRICS
from reference.web.openapi import ApiRoutes, Param
from reference.web.typedefs import SETTINGS

routes = ApiRoutes(tag="storage")

NOT_FOUND_MESSAGE: Final = "Object not found"
BATCH_NOT_FOUND: Final = "Either the object does not exist or you do not have access to it"
MAX_EXPIRES_IN: Final = 10 * 365 * 86_400
MAX_BATCH_PATHS: Final = 1_000
#: Not every Python's mimetypes table knows WebP.
CONTENT_TYPES: Final = {".png": "image/png", ".webp": "image/webp", ".mp4": "video/mp4"}


class StorageError(ApiError):
    """An error in storage-api's body shape (``statusCode`` is a string there)."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.code = code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "statusCode": str(self.status),
            "error": self.code,
            "message": self.message,
        }
        if self.field is not None:
            body["field"] = self.field
        return body


def invalid_request(message: str, field: str) -> StorageError:
    return StorageError(400, "InvalidRequest", message, field=field)


def not_found() -> StorageError:
    return StorageError(404, "not_found", NOT_FOUND_MESSAGE)


def object_path(settings: Settings, bucket: str, path: str) -> Path:
    try:
        return object_file(settings.storage_dir, bucket, path)
    except UnsafePath:
        raise invalid_request(f"invalid object path {bucket}/{path}", "path") from None


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


def signer_owner(request: web.Request) -> UUID | None:
    """Who may sign: ``None`` for the service role (storage key), else the user's id."""
    settings = request.app[SETTINGS]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise StorageError(400, "Unauthorized", "missing bearer token", field="authorization")
    if hmac.compare_digest(token.encode(), settings.storage_key.encode()):
        return None
    try:
        return auth.verify_token(settings.jwt_secret, token)
    except ApiError as exc:
        raise StorageError(400, "InvalidJWT", exc.message, field="authorization") from None


def may_sign(owner: UUID | None, path: str) -> bool:
    return owner is None or path.split("/", 1)[0] == str(owner)


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise invalid_request("request body is not valid JSON", "body") from None
    if not isinstance(body, dict):
        raise invalid_request("request body must be a JSON object", "body")
    return body


def expires_in(body: dict[str, Any]) -> int:
    value = body.get("expiresIn")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXPIRES_IN:
        raise invalid_request(
            f"expiresIn must be an integer between 1 and {MAX_EXPIRES_IN}", "expiresIn"
        )
    return value


def sign_one(settings: Settings, bucket: str, path: str, ttl_s: int) -> str | None:
    """storage-api's ``signObject``: the object must exist; ``iat`` is now, ``exp`` now+ttl."""
    if not object_path(settings, bucket, path).is_file():
        return None
    now = int(time.time())
    token = sign_token(settings.storage_key, bucket, path, now, now + ttl_s)
    return signed_path(bucket, path, token)


EXPIRES_BODY: Final = {
    "type": "object",
    "required": ["expiresIn"],
    "properties": {"expiresIn": {"type": "integer", "minimum": 1}},
}
BUCKET_PARAM: Final = Param("bucket", "path", description="bucket name")
PATH_PARAM: Final = Param("path", "path", description="object path inside the bucket")


@routes.operation(
    "POST",
    "/storage/v1/object/sign/{bucket}/{path:.+}",
    summary="Sign one object (storage-api createSignedUrl)",
    params=[BUCKET_PARAM, PATH_PARAM, Param("Authorization", "header", required=True)],
    body=EXPIRES_BODY,
    responses={200: '{"signedURL": "/object/sign/...?token=..."}'},
    public=True,
)
async def sign_object(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    owner = signer_owner(request)
    bucket, path = request.match_info["bucket"], request.match_info["path"]
    ttl = expires_in(await read_json(request))
    if not may_sign(owner, path):
        raise not_found()
    signed = sign_one(settings, bucket, path, ttl)
    if signed is None:
        raise not_found()
    request.app[METRICS].urls_signed.labels("storage", bucket).inc()
    return json_response({"signedURL": signed})


@routes.operation(
    "POST",
    "/storage/v1/object/sign/{bucket}",
    summary="Sign many objects of one bucket (storage-api createSignedUrls)",
    params=[BUCKET_PARAM, Param("Authorization", "header", required=True)],
    body={
        "type": "object",
        "required": ["expiresIn", "paths"],
        "properties": {
            "expiresIn": {"type": "integer", "minimum": 1},
            "paths": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_BATCH_PATHS},
        },
    },
    responses={200: 'a list of {"error", "path", "signedURL"}, one per path, in order'},
    public=True,
)
async def sign_objects(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    owner = signer_owner(request)
    bucket = request.match_info["bucket"]
    body = await read_json(request)
    ttl = expires_in(body)
    paths = body.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise invalid_request("paths must be a list of strings", "paths")
    if len(paths) > MAX_BATCH_PATHS:
        raise invalid_request(f"at most {MAX_BATCH_PATHS} paths per call", "paths")
    items: list[dict[str, Any]] = []
    for path in paths:
        signed: str | None = None
        error: str | None = BATCH_NOT_FOUND
        if may_sign(owner, path):
            try:
                signed = sign_one(settings, bucket, path, ttl)
            except StorageError as exc:
                error = exc.message
            else:
                error = None if signed is not None else BATCH_NOT_FOUND
        items.append({"error": error, "path": path, "signedURL": signed})
    signed_count = sum(1 for item in items if item["signedURL"] is not None)
    request.app[METRICS].urls_signed.labels("storage", bucket).inc(signed_count)
    return json_response(items)


@routes.operation(
    "GET",
    "/storage/v1/object/sign/{bucket}/{path:.+}",
    summary="Read a signed object (ETag, Cache-Control, 304 on If-None-Match)",
    params=[
        BUCKET_PARAM,
        PATH_PARAM,
        Param("token", required=True, description="the signed URL's token"),
        Param("If-None-Match", "header", description="an ETag from an earlier answer"),
    ],
    responses={200: "the object's bytes", 304: "not modified"},
    public=True,
)
async def read_signed_object(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    bucket, path = request.match_info["bucket"], request.match_info["path"]
    token = request.query.get("token")
    if not token:
        raise invalid_request("querystring must have required property 'token'", "token")
    claims = verify_object_token(settings.storage_key, token, bucket, path)
    file = object_path(settings, bucket, path)
    if not file.is_file():
        raise not_found()
    max_age = max(0, int(claims["exp"]) - int(time.time()))
    # FileResponse sends the ETag (mtime and size), answers If-None-Match with 304 and uses
    # sendfile; the token's remaining life bounds how long a browser may keep the bytes.
    headers = {"Cache-Control": f"private, max-age={max_age}"}
    content_type = CONTENT_TYPES.get(file.suffix)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return web.FileResponse(file, headers=headers)


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


FEATURE = Feature("storage", routes, contexts=(url_service_context,))
