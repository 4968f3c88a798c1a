"""Verified tokens are remembered per process until their ``exp``, and never past it."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from reference.web.auth import VerifiedTokens, issue_token
from reference.web.errors import Unauthorized

SECRET = "s" * 32
USER = uuid.UUID("aaaaaaaa-1111-4111-8111-11111111111c")


def test_a_remembered_token_is_refused_after_its_exp() -> None:
    tokens = VerifiedTokens(SECRET)
    token = issue_token(SECRET, USER, ttl_s=60)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert tokens.user(token, time.time()) == USER
    assert tokens.user(token, exp - 1) == USER
    with pytest.raises(Unauthorized) as caught:
        tokens.user(token, exp + 1)
    assert caught.value.body()["field"] == "exp"


def test_a_bad_token_is_never_remembered_and_the_bound_holds() -> None:
    tokens = VerifiedTokens(SECRET, size=2)
    forged = issue_token("x" * 32, USER)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            tokens.user(forged, time.time())
    users = [uuid.uuid4() for _ in range(3)]
    for user in users:
        assert tokens.user(issue_token(SECRET, user), time.time()) == user
    assert len(tokens._users) == 2
