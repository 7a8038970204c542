"""Unit tests of the gateway's job-control helpers: Prefer parsing, idempotency keys and
request fingerprints (the HTTP behaviour is in tests/integration/test_gateway_job_control.py)."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.http.errors import ApiError
from services.gateway.http.idempotency import HEADER, fingerprint, idempotency_key
from services.gateway.http.waiting import parse_prefer_wait
from services.gateway.images.protocol import ImagesRequest


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("wait=5", "5"),
        ("respond-async, wait=10", "10"),
        ("WAIT = 3", "3"),
        ('wait="7"', "7"),
        ("wait=2; foo=bar, return=minimal", "2"),
        ("respond-async", None),
        ("", None),
        ("wait=abc", "abc"),  # found, but left to the caller to refuse
    ],
)
def test_parse_prefer_wait(header: str, expected: str | None) -> None:
    assert parse_prefer_wait(header) == expected


@pytest.mark.parametrize(
    "key", ["a", "550e8400-e29b-41d4-a716-446655440000", "x" * 255, "a.b_c:d~e+f/g="]
)
def test_valid_idempotency_keys(key: str) -> None:
    assert asyncio.run(idempotency_key(key)) == key
    assert asyncio.run(idempotency_key(None)) is None


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "tab\t", "é", "a;b", "a,b"])
def test_invalid_idempotency_keys_are_422_naming_the_header(key: str) -> None:
    with pytest.raises(ApiError) as caught:
        asyncio.run(idempotency_key(key))
    assert caught.value.status_code == 422 and caught.value.field == HEADER


def test_fingerprint_ignores_key_order_and_defaults_but_not_values_or_route() -> None:
    base = fingerprint("POST /v1/images", ImagesRequest(prompt="owl", seed=1))
    same = ImagesRequest.model_validate({"seed": 1, "prompt": "owl", "n": 1})
    assert fingerprint("POST /v1/images", same) == base
    assert fingerprint("POST /v1/images", ImagesRequest(prompt="owl", seed=2)) != base
    assert fingerprint("POST /v1/chat", ImagesRequest(prompt="owl", seed=1)) != base
