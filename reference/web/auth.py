"""Bearer tokens as Supabase issues them: HS256 JWTs whose ``sub`` is the user id."""

from __future__ import annotations

import time
from typing import Final
from uuid import UUID

import jwt
from aiohttp import web
from aiohttp.typedefs import Middleware

from reference.web.errors import Unauthorized
from reference.web.typedefs import USER_ID, Handler

ALGORITHM: Final = "HS256"
DEFAULT_TTL_S: Final = 24 * 3600


def issue_token(secret: str, user_id: UUID, ttl_s: int = DEFAULT_TTL_S) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> UUID:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    try:
        return UUID(str(claims["sub"]))
    except ValueError:
        raise Unauthorized("token subject is not a user id") from None


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


def make_auth_middleware(secret: str, public: frozenset[tuple[str, str]]) -> Middleware:
    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        resource = route.resource
        method = "GET" if route.method == "HEAD" else route.method
        if resource is None or (method, resource.canonical) in public:
            return await handler(request)
        request[USER_ID] = verify_token(secret, bearer_token(request))
        return await handler(request)

    return auth_middleware


def current_user(request: web.Request) -> UUID:
    return request[USER_ID]
