"""Signed image URLs and event-stream tokens (services/gateway/http/signed_urls.py), the
links answers carry (http/links.py) and the browser settings."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr, ValidationError

from services.gateway.http.links import PLAIN, Links, url_signer
from services.gateway.http.signed_urls import SignatureError, UrlSigner, expiry, signed_tenant
from services.gateway.settings import GatewaySettings

NOW = 1_800_000_000.0


def _scope(path: str, query: str, method: str = "GET") -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "query_string": query.encode()}


def test_the_signature_is_hmac_sha256_under_a_key_derived_per_tenant() -> None:
    signer = UrlSigner("s3cret")
    tenant_key = hmac.new(b"s3cret", b"acme", hashlib.sha256).digest()
    expected = hmac.new(tenant_key, b"image\nacme\nimg_1\n123", hashlib.sha256).hexdigest()
    assert signer.signature("image", "acme", "img_1", 123) == expected
    assert signer.signature("image", "globex", "img_1", 123) != expected
    assert signer.signature("events", "acme", "img_1", 123) != expected


def test_expiry_is_at_least_the_ttl_ahead_and_stable_within_a_step() -> None:
    for ttl in (1, 300, 3600, 86400):
        step = max(1, min(300, ttl // 10))
        made = [expiry(NOW + offset, ttl) for offset in range(0, 2 * step)]
        assert all(
            NOW + offset + ttl < e <= NOW + offset + ttl + step for offset, e in enumerate(made)
        )
        assert len(set(made)) <= 3


def test_signed_requests_verify_and_name_the_field_that_fails() -> None:
    signer = UrlSigner("s3cret")
    expires = int(NOW) + 60
    query = signer.image_query("acme", "img_1", expires)
    assert signed_tenant(_scope("/v1/images/img_1", query), signer, NOW) == "acme"
    assert signed_tenant(_scope("/v1/images/img_1", ""), signer, NOW) is None  # not signed
    assert signed_tenant(_scope("/v1/images/img_1", query, "POST"), signer, NOW) is None
    assert signed_tenant(_scope("/v1/jobs/img_1", query), signer, NOW) is None
    for path, raw, field, type_ in (
        ("/v1/images/img_2", query, "sig", "invalid_signature"),
        ("/v1/images/img_1", query.replace("acme", "globex"), "sig", "invalid_signature"),
        ("/v1/images/img_1", query.replace("tenant=acme&", ""), "tenant", "invalid_signature"),
        ("/v1/images/img_1", "tenant=acme&expires=x&sig=ab", "expires", "invalid_signature"),
        ("/v1/images/img_1", f"tenant=acme&expires={expires}", "sig", "invalid_signature"),
    ):
        with pytest.raises(SignatureError) as refused:
            signed_tenant(_scope(path, raw), signer, NOW)
        assert (refused.value.field, refused.value.type) == (field, type_)
    with pytest.raises(SignatureError) as late:
        signed_tenant(_scope("/v1/images/img_1", query), signer, expires + 1)
    assert (late.value.field, late.value.type) == ("expires", "signature_expired")


def test_event_tokens_are_scoped_to_their_job() -> None:
    signer = UrlSigner("s3cret")
    token = signer.events_token("acme", "job_1", int(NOW) + 60)
    assert signed_tenant(_scope("/v1/jobs/job_1/events", f"token={token}"), signer, NOW) == "acme"
    for path, raw in (
        ("/v1/jobs/job_2/events", f"token={token}"),
        ("/v1/jobs/job_1/events", "token=acme.1"),
        ("/v1/jobs/job_1/events", "token=" + token.replace("acme", "globex")),
    ):
        with pytest.raises(SignatureError) as refused:
            signed_tenant(_scope(path, raw), signer, NOW)
        assert refused.value.field == "token"
    assert signed_tenant(_scope("/v1/jobs/job_1/events", ""), signer, NOW) is None


def test_links_are_paths_by_default_and_absolute_and_signed_when_configured() -> None:
    assert PLAIN.image("img_1") == "/v1/images/img_1"
    assert PLAIN.events("job_1") == "/v1/jobs/job_1/events"
    settings = GatewaySettings(
        public_base_url="https://api.example.com/llmga/",
        url_signing_secret=SecretStr("s" * 32),
    )
    links = Links.for_tenant(settings, url_signer(settings), "acme")
    image = urlsplit(links.image("img_1"))
    assert (image.scheme, image.netloc, image.path) == (
        "https",
        "api.example.com",
        "/llmga/v1/images/img_1",
    )
    assert parse_qs(image.query)["tenant"] == ["acme"]
    assert links.events("job_1").startswith(
        "https://api.example.com/llmga/v1/jobs/job_1/events?token=acme."
    )
    assert url_signer(GatewaySettings()) is None


def test_browser_settings() -> None:
    settings = GatewaySettings(cors_origins=" https://a.example/, http://localhost:5173 ,")
    assert settings.cors_origin_list == ["https://a.example", "http://localhost:5173"]
    assert GatewaySettings().cors_origin_list == []
    with pytest.raises(ValidationError, match="LLMGA_PUBLIC_BASE_URL"):
        GatewaySettings(public_base_url="api.example.com")
    with pytest.raises(ValidationError, match="LLMGA_URL_SIGNING_SECRET"):
        GatewaySettings(url_signing_secret=SecretStr("short"))
