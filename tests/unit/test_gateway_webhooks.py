"""Webhook building blocks: which URLs are accepted, signatures, backoff, and which
state changes become events."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks import WebhookVerificationError

from services.common.contract import GenerationRequest, JobRecord, JobStatus, Webhook
from services.common.redis_keys import RedisKeys
from services.common.webhook_outbox import OutboxEntry, transition_event
from services.gateway.http.errors import ApiError
from services.gateway.settings import GatewaySettings
from services.gateway.webhooks.dispatcher import backoff_delay
from services.gateway.webhooks.protocol import MAX_WEBHOOK_URL_CHARS, WebhookInput
from services.gateway.webhooks.signing import signature, signed_headers, verify
from services.gateway.webhooks.targets import accepted_webhook, url_refusal
from services.gateway.webhooks.tenants import TenantSecrets, new_secret, normalize_host

SECRET = new_secret()
OTHER_SECRET = new_secret()


def _settings(
    hosts: str = "hooks.example.com,*.acme.test", allow_http: bool = False
) -> GatewaySettings:
    return GatewaySettings(
        webhook_allowed_hosts=hosts,
        webhook_allow_http=allow_http,
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",
        "https://HOOKS.example.com:8443/x?a=1",
        "https://a.b.acme.test/",
    ],
)
def test_allow_listed_https_urls_are_accepted(url: str) -> None:
    assert url_refusal(url, _settings()) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/x", "must use https"),
        ("https://evil.example.com/x", "not in LLMGA_WEBHOOK_ALLOWED_HOSTS"),
        ("https://acme.test/x", "not in LLMGA_WEBHOOK_ALLOWED_HOSTS"),  # *. means subdomains
        ("https://hooks.example.com.evil.io/x", "not in LLMGA_WEBHOOK_ALLOWED_HOSTS"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
        ("file:///etc/passwd", "must use https"),
    ],
)
def test_other_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    refusal = url_refusal(url, _settings())
    assert refusal is not None and reason in refusal


def test_http_needs_the_explicit_setting() -> None:
    assert url_refusal("http://hooks.example.com/x", _settings(allow_http=True)) is None


def test_without_an_allow_list_every_webhook_is_a_422_on_webhook_url() -> None:
    webhook = WebhookInput(url="https://hooks.example.com/")
    no_redis = cast(aioredis.Redis, None)  # not asked while webhooks are off
    with pytest.raises(ApiError) as raised:
        asyncio.run(accepted_webhook(webhook, GatewaySettings(), no_redis, RedisKeys(), "t"))
    assert raised.value.status_code == 422 and raised.value.field == "webhook.url"
    assert "not enabled" in raised.value.message


def test_a_tenants_hosts_add_to_the_deployments() -> None:
    url = "https://hooks.tenant.io/x"
    assert url_refusal(url, _settings(), ("hooks.tenant.io",)) is None
    assert url_refusal("https://a.tenant.io/", _settings(), ("*.tenant.io",)) is None
    refusal = url_refusal(url, _settings(), ("other.io",))
    assert refusal is not None and "tenant's webhook hosts" in refusal
    # The deployment's list is still the switch.
    refusal = url_refusal(url, _settings(hosts=""), ("hooks.tenant.io",))
    assert refusal is not None and "not enabled" in refusal


def test_webhooks_need_no_deployment_wide_secret() -> None:
    assert GatewaySettings(webhook_allowed_hosts="hooks.example.com").webhooks_enabled


@pytest.mark.parametrize("host", ["Hooks.Example.com.", "*.acme.test", "10.0.0.1", "::1"])
def test_tenant_hosts_are_normalized(host: str) -> None:
    assert normalize_host(host) == host.lower().rstrip(".")


@pytest.mark.parametrize("host", ["", "https://x.io", "x.io/path", "*", "a b", "*.*.io"])
def test_tenant_hosts_must_be_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="not a host"):
        normalize_host(host)


@pytest.mark.parametrize("attempts", [0, 51])
def test_webhook_attempts_are_1_to_50(attempts: int) -> None:
    with pytest.raises(ValidationError, match="webhook_max_attempts"):
        GatewaySettings(webhook_max_attempts=attempts)


@pytest.mark.parametrize(
    "webhook",
    [
        {"url": "https://hooks.example.com/" + "a" * (MAX_WEBHOOK_URL_CHARS - 25)},
        {"url": ""},
        {"url": "https://hooks.example.com/", "events": ["succeeded"] * 5},
        {"url": "https://hooks.example.com/", "events": ["progress"]},
    ],
)
def test_webhook_schema_limits(webhook: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        WebhookInput.model_validate(webhook)


def test_secrets_are_whsec_and_24_or_more_random_bytes() -> None:
    assert SECRET.startswith("whsec_") and SECRET != OTHER_SECRET
    assert len(base64.b64decode(SECRET.removeprefix("whsec_"))) >= 24


def test_signatures_verify_and_expire() -> None:
    body = b'{"id": "evt_1"}'
    headers = signed_headers([SECRET], "evt_1", body, timestamp=1_000_000)
    assert headers["webhook-id"] == "evt_1" and headers["webhook-timestamp"] == "1000000"
    assert headers["webhook-signature"].startswith("v1,")
    assert verify(SECRET, headers, body, now=1_000_100)
    assert not verify(SECRET, headers, body, now=1_000_000 + 301)  # a replay
    assert not verify(SECRET, headers, body + b"x", now=1_000_000)
    assert not verify(OTHER_SECRET, headers, body, now=1_000_000)
    assert not verify(SECRET, {**headers, "webhook-id": "evt_2"}, body, now=1_000_000)
    assert not verify(SECRET, {"webhook-signature": "v1,abc"}, body, now=1_000_000)


def test_the_standardwebhooks_package_verifies_our_signatures() -> None:
    body = b'{"id": "evt_1"}'
    headers = signed_headers([SECRET, OTHER_SECRET], "evt_1", body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    StandardWebhook(SECRET).verify(body, headers)
    StandardWebhook(OTHER_SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(new_secret()).verify(body, headers)
    # The package's own signature is ours (the same HMAC over "id.timestamp.body").
    stamp = int(headers["webhook-timestamp"])
    ours = signature(SECRET, "evt_1", stamp, body)
    theirs = StandardWebhook(SECRET).sign(
        "evt_1", datetime.fromtimestamp(stamp, UTC), body.decode()
    )
    assert ours == theirs


def test_the_previous_secret_signs_only_within_the_grace_period() -> None:
    rotated = TenantSecrets(current=SECRET, previous=OTHER_SECRET, rotated_at=1000.0)
    assert rotated.signing(grace_s=60, now=1059.0) == [SECRET, OTHER_SECRET]
    assert rotated.signing(grace_s=60, now=1060.0) == [SECRET]
    assert TenantSecrets(current=SECRET).signing(grace_s=60) == [SECRET]
    parsed = TenantSecrets.parse(
        {b"current": SECRET.encode(), b"previous": OTHER_SECRET.encode(), b"rotated_at": b"1000.0"}
    )
    assert parsed == rotated
    assert TenantSecrets.parse({}) is None


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    lows = [backoff_delay(n, 1.0, 10.0, rand=lambda: 0.0) for n in range(1, 7)]
    highs = [backoff_delay(n, 1.0, 10.0, rand=lambda: 0.999999) for n in range(1, 7)]
    assert lows == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert highs == pytest.approx([1.0, 2.0, 4.0, 8.0, 10.0, 10.0], rel=1e-5)


def _record(status: int, events: tuple[str, ...] = (), url: str = "https://h/") -> JobRecord:
    webhook = Webhook(url=url, events=list(events))
    return JobRecord(request=GenerationRequest(job_id="job_1", webhook=webhook), status=status)  # type: ignore[arg-type]


QUEUED, RUNNING = JobStatus.JOB_STATUS_QUEUED, JobStatus.JOB_STATUS_RUNNING
SUCCEEDED, CANCELED = JobStatus.JOB_STATUS_SUCCEEDED, JobStatus.JOB_STATUS_CANCELED


def test_status_changes_become_events_the_webhook_asked_for() -> None:
    assert transition_event(QUEUED, _record(RUNNING)) == "started"
    assert transition_event(RUNNING, _record(SUCCEEDED)) == "succeeded"
    assert transition_event(QUEUED, _record(CANCELED)) == "canceled"
    assert transition_event(RUNNING, _record(RUNNING)) is None  # a progress write
    assert transition_event(QUEUED, _record(RUNNING, ("succeeded",))) is None
    assert transition_event(RUNNING, _record(SUCCEEDED, ("succeeded",))) == "succeeded"
    assert transition_event(QUEUED, _record(RUNNING, url="")) is None  # no webhook


def test_outbox_entries_round_trip() -> None:
    entry = OutboxEntry.new("started", _record(RUNNING))
    fields = {key.encode(): value for key, value in entry.fields().items()}
    assert OutboxEntry.parse(fields) == entry
    assert entry.event_id.startswith("evt_")


@pytest.mark.parametrize("secret", ["s3cret", "whsec_not base64!"])
def test_a_secret_that_is_not_whsec_base64_is_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        signed_headers([secret], "evt_1", b"{}")
