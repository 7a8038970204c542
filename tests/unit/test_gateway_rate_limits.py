"""Who a request counts against, and the Retry-After values of the limits."""

from __future__ import annotations

import datetime as dt

import pytest

from services.gateway.http.apikeys import TENANT_SCOPE_KEY, key_hash, parse_rate_limit
from services.gateway.http.rate_limits import (
    _api_key_digest,
    _identity,
    _seconds_to_utc_midnight,
    retry_after_header,
)


def test_an_authenticated_request_counts_against_its_key() -> None:
    scope = {TENANT_SCOPE_KEY: "acme", "headers": [(b"authorization", b"Bearer llmga_k1")]}
    digest = _api_key_digest(scope)
    assert digest == key_hash("llmga_k1")
    assert _identity(digest, "local") == "key:" + digest


def test_with_auth_off_every_request_counts_against_the_default_tenant() -> None:
    scope = {"headers": [(b"authorization", b"Bearer whatever")]}  # not checked: auth off
    assert _api_key_digest(scope) is None
    assert _identity(None, "local") == "tenant:local"


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == {"Retry-After": "1"}
    assert retry_after_header(2.2) == {"Retry-After": "3"}


def test_the_quota_resets_at_midnight_utc() -> None:
    now = dt.datetime(2026, 11, 23, 23, 59, 30, tzinfo=dt.UTC)
    assert _seconds_to_utc_midnight(now) == 30


def test_a_keys_own_limit_is_written_n_per_s() -> None:
    assert parse_rate_limit("600/60") == (600, 60.0)
    assert parse_rate_limit("0/1.5") == (0, 1.5)  # 0: unlimited
    for text in ("600", "x/60", "-1/60", "5/0"):
        with pytest.raises(ValueError, match="rate limit"):
            parse_rate_limit(text)
