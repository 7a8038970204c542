"""API keys: header parsing and hashing (no Redis)."""

from __future__ import annotations

import hashlib

import pytest

from services.common.redis_keys import RedisKeys
from services.gateway.http.apikeys import apikey_redis_key, bearer_token, key_hash


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer llmga_abc", "llmga_abc"),
        ("bearer   llmga_abc  ", "llmga_abc"),
        ("BEARER llmga_abc", "llmga_abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("llmga_abc", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_keys_are_stored_by_sha256_under_the_prefix() -> None:
    digest = key_hash("llmga_secret")
    assert digest == hashlib.sha256(b"llmga_secret").hexdigest()
    assert apikey_redis_key(RedisKeys("p"), digest) == f"p:apikey:{digest}"
    assert "llmga_secret" not in apikey_redis_key(RedisKeys("p"), digest)
