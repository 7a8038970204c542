"""Webhook building blocks: which URLs are accepted, signatures, backoff, and which
state changes become events."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.common.contract import GenerationRequest, JobRecord, JobStatus, Webhook
from services.common.webhook_outbox import OutboxEntry, transition_event
from services.gateway.http.errors import ApiError
from services.gateway.settings import GatewaySettings
from services.gateway.webhooks.dispatcher import backoff_delay
from services.gateway.webhooks.protocol import MAX_WEBHOOK_URL_CHARS, WebhookInput
from services.gateway.webhooks.signing import signature_header, verify_signature
from services.gateway.webhooks.targets import accepted_webhook, url_refusal

SECRET = "s3cret"


def _settings(
    hosts: str = "hooks.example.com,*.acme.test", allow_http: bool = False
) -> GatewaySettings:
    return GatewaySettings(
        webhook_allowed_hosts=hosts,
        webhook_allow_http=allow_http,
        webhook_secret=SECRET,  # type: ignore[arg-type]
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
    with pytest.raises(ApiError) as raised:
        accepted_webhook(WebhookInput(url="https://hooks.example.com/"), GatewaySettings())
    assert raised.value.status_code == 422 and raised.value.field == "webhook.url"
    assert "not enabled" in raised.value.message


def test_allowing_hosts_without_a_secret_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="LLMGA_WEBHOOK_SECRET"):
        GatewaySettings(webhook_allowed_hosts="hooks.example.com")


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


def test_signatures_verify_and_expire() -> None:
    body = b'{"id": "evt_1"}'
    header = signature_header(SECRET, body, timestamp=1_000_000)
    assert header.startswith("t=1000000,v1=")
    assert verify_signature(SECRET, header, body, now=1_000_100)
    assert not verify_signature(SECRET, header, body, now=1_000_000 + 301)  # a replay
    assert not verify_signature(SECRET, header, body + b"x", now=1_000_000)
    assert not verify_signature("other", header, body, now=1_000_000)
    assert not verify_signature(SECRET, "v1=abc", body, now=1_000_000)


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
