"""Bearer tokens as Supabase issues them: HS256 JWTs for a signed-in user.

A token is accepted only when its signature verifies, ``aud`` and ``role`` are both
``authenticated`` (an ``anon`` or ``service_role`` token is not a user), ``sub`` is a user id in
its canonical spelling and ``exp`` is a number in the future.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Final
from uuid import UUID

import jwt
from aiohttp import web
from aiohttp.typedefs import Middleware

from reference.web.errors import Unauthorized
from reference.web.inputs import canonical_uuid
from reference.web.typedefs import USER_ID, Handler

ALGORITHM: Final = "HS256"
AUDIENCE: Final = "authenticated"
USER_ROLE: Final = "authenticated"
DEFAULT_TTL_S: Final = 24 * 3600
VERIFIED_TOKENS: Final = 1024


def issue_token(secret: str, user_id: UUID, ttl_s: int = DEFAULT_TTL_S) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "aud": AUDIENCE,
        "role": USER_ROLE,
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> UUID:
    """The user id of a valid user token; :class:`Unauthorized` naming the claim otherwise."""
    return verify_claims(secret, token)[0]


class VerifiedTokens:
    """Tokens already verified, each until its ``exp``: a client sends the same one on every
    request, and checking its signature again costs more than the rest of a small answer."""

    def __init__(self, secret: str, size: int = VERIFIED_TOKENS) -> None:
        self.secret = secret
        self.size = size
        self._users: OrderedDict[str, tuple[UUID, float]] = OrderedDict()

    def user(self, token: str, now: float) -> UUID:
        entry = self._users.get(token)
        if entry is not None and entry[1] > now:
            self._users.move_to_end(token)
            return entry[0]
        user, exp = verify_claims(self.secret, token)
        if exp <= now:
            raise Unauthorized("token expired", field="exp")
        self._users[token] = (user, exp)
        if len(self._users) > self.size:
            self._users.popitem(last=False)
        return user


def verify_claims(secret: str, token: str) -> tuple[UUID, float]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "exp", "aud", "role"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired", field="exp") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized(f"token audience is not {AUDIENCE!r}", field="aud") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}", field="authorization") from None
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise Unauthorized("token exp is not a number", field="exp")
    if claims["role"] != USER_ROLE:
        raise Unauthorized(f"token role is not {USER_ROLE!r}", field="role")
    user = canonical_uuid(claims["sub"])
    if user is None:
        raise Unauthorized("token subject is not a user id", field="sub")
    return user, float(exp)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token", field="authorization")
    return token.strip()


def make_auth_middleware(secret: str, public: frozenset[tuple[str, str]]) -> Middleware:
    verified = VerifiedTokens(secret)

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        resource = route.resource
        method = "GET" if route.method == "HEAD" else route.method
        if resource is None or (method, resource.canonical) in public:
            return await handler(request)
        request[USER_ID] = verified.user(bearer_token(request), time.time())
        return await handler(request)

    return auth_middleware


def current_user(request: web.Request) -> UUID:
    return request[USER_ID]
