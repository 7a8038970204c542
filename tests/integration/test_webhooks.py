"""Webhooks end to end: a real gateway (with its dispatcher) and worker deliver events
signed per Standard Webhooks (verified with the `standardwebhooks` package) to an HTTP
receiver run by the test; retries, giving up (dead letters), the `events` filter,
cancels, the allow-lists (the deployment's and a tenant's), secrets per tenant and their
rotation, the `llmga-keys webhook-*` commands, and a dead dispatcher's events taken over
by another one."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks import WebhookVerificationError

from services.common.contract import GenerationRequest, JobRecord, JobStatus, Task, Webhook
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.gateway.http.errors import ApiError
from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from services.gateway.webhooks.dispatcher import CONSUMER_GROUP, ReadAnswer, WebhookDispatcher
from services.gateway.webhooks.protocol import WebhookInput
from services.gateway.webhooks.targets import accepted_webhook
from services.gateway.webhooks.tenants import WebhookTenantStore, new_secret
from tests.support.http_api import assert_error, wait_for_job
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import REDIS_URL, HttpService, Namespace, apikeys_cli, start_gateway
from tests.support.webhook_receiver import Delivery, Receiver, start_receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TENANT = "local"  # every request's tenant: the gateway runs without auth
TINY = {"width": 64, "height": 64, "steps": 2, "seed": 1}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with start_receiver() as server:
        yield server


WEBHOOK_ENV = {
    "LLMGA_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "LLMGA_WEBHOOK_ALLOW_HTTP": "true",
    "LLMGA_WEBHOOK_MAX_ATTEMPTS": "4",
    "LLMGA_WEBHOOK_BACKOFF_BASE_S": "0.2",
}


@pytest.fixture(scope="module")
def gateway(
    namespace: Namespace, scripted: ScriptedMllm, worker: str, logs: Path
) -> Iterator[HttpService]:
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": scripted.base_url, **WEBHOOK_ENV}
    with start_gateway(env, logs) as service:
        yield service


@pytest.fixture
def api(gateway: HttpService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


def _create(api: httpx.Client, webhook: dict[str, Any], **extra: Any) -> str:
    body = {"prompt": "a lighthouse", **TINY, **extra, "webhook": webhook}
    response = api.post("/v1/images", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _wait_outbox_drained(client: redis.Redis, namespace: Namespace) -> None:
    """Every event written so far was delivered (delivered entries are deleted)."""
    stream = RedisKeys(namespace.key_prefix).webhook_outbox()
    deadline = time.monotonic() + 30
    while client.xlen(stream):
        assert time.monotonic() < deadline, "webhook outbox not drained"
        time.sleep(0.05)


def _verifies(secret: str, delivery: Delivery) -> bool:
    """Whether the `standardwebhooks` package accepts `delivery` with `secret`."""
    try:
        StandardWebhook(secret).verify(delivery.body, delivery.headers)
    except WebhookVerificationError:
        return False
    return True


def _cli_secret(namespace: Namespace, tenant: str, *options: str) -> str:
    (secret,) = apikeys_cli(namespace, "webhook-secret", "--tenant", tenant, *options).split()
    return secret


def test_started_and_succeeded_arrive_signed_and_in_order(
    api: httpx.Client, receiver: Receiver, namespace: Namespace
) -> None:
    url = receiver.url()
    job_id = _create(api, {"url": url})
    deliveries = receiver.wait_for(url, 2)
    assert wait_for_job(api, job_id)["status"] == "succeeded"

    # The dispatcher made the tenant's secret at the first delivery; the CLI prints it.
    secret = _cli_secret(namespace, TENANT)
    assert secret.startswith("whsec_")
    assert [d.event["event"] for d in deliveries] == ["started", "succeeded"]
    for delivery in deliveries:
        assert _verifies(secret, delivery)
        assert not _verifies(new_secret(), delivery)
        tampered = Delivery(delivery.path, delivery.headers, delivery.body + b" ")
        assert not _verifies(secret, tampered)
        assert "X-LLMGA-Signature" not in delivery.headers
        assert delivery.headers["webhook-id"] == delivery.event["id"]
        assert delivery.headers["X-LLMGA-Event-Id"] == delivery.event["id"]
        assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 60
        assert delivery.event["job"]["id"] == job_id
    started, succeeded = (d.event for d in deliveries)
    assert started["id"] != succeeded["id"]
    assert started["job"]["status"] == "running"
    assert succeeded["job"]["status"] == "succeeded" and len(succeeded["job"]["images"]) == 1
    assert started["occurred_at"] <= succeeded["occurred_at"]


def test_a_failing_receiver_gets_the_event_on_the_third_attempt(
    api: httpx.Client, receiver: Receiver, namespace: Namespace
) -> None:
    url = receiver.url("fail-2")
    _create(api, {"url": url, "events": ["succeeded"]})
    attempts = receiver.wait_for(url, 3)
    assert len({a.event["id"] for a in attempts}) == 1  # one event, sent three times
    assert [a.headers["X-LLMGA-Attempt"] for a in attempts] == ["1", "2", "3"]
    assert len({a.headers["webhook-id"] for a in attempts}) == 1  # stable across retries
    secret = _cli_secret(namespace, TENANT)
    assert all(_verifies(secret, a) for a in attempts)
    time.sleep(1)  # a 4th attempt would follow the 200 within ~0.8 s
    assert len(receiver.received(url)) == 3

    metrics = api.get("/metrics").text
    assert 'llmga_gateway_webhook_attempts_total{outcome="rejected"}' in metrics
    assert "llmga_gateway_webhook_attempt_duration_seconds_count" in metrics


def _gateway_metric(api: httpx.Client, name: str) -> float:
    """The value of the gateway's unlabelled sample `name` (0 while it has none)."""
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(api.get("/metrics").text)
        for sample in family.samples
        if not sample.labels
    }
    return samples.get(name, 0.0)


def _stream_entries(client: redis.Redis, stream: str, event_id: str) -> list[dict[bytes, bytes]]:
    """The fields of `stream`'s entries for the event `event_id`."""
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream))
    return [fields for _id, fields in entries if fields[b"event_id"] == event_id.encode()]


def test_an_event_is_given_up_after_the_last_attempt(
    api: httpx.Client, receiver: Receiver, redis_client: redis.Redis, namespace: Namespace
) -> None:
    """A receiver that never answers 2xx gets LLMGA_WEBHOOK_MAX_ATTEMPTS attempts; then the
    event moves from the outbox to the dead-letter stream with the last error."""
    max_attempts = int(WEBHOOK_ENV["LLMGA_WEBHOOK_MAX_ATTEMPTS"])
    failed_metric = "llmga_gateway_webhook_events_failed_total"
    failed_before = _gateway_metric(api, failed_metric)
    url = receiver.url("fail-999")  # more failures than attempts: always 500
    job_id = _create(api, {"url": url, "events": ["succeeded"]})

    attempts = receiver.wait_for(url, max_attempts)
    event_id = attempts[0].event["id"]
    assert {a.event["id"] for a in attempts} == {event_id}
    keys = RedisKeys(namespace.key_prefix)
    deadline = time.monotonic() + 30
    while not (dead := _stream_entries(redis_client, keys.webhook_dead_letters(), event_id)):
        assert time.monotonic() < deadline, "the event never reached the dead letters"
        time.sleep(0.05)

    (fields,) = dead
    assert fields[b"error"] == b"HTTP 500"
    assert fields[b"event"] == b"succeeded"
    record = JobRecord()
    record.ParseFromString(fields[b"record"])
    assert record.request.job_id == job_id
    assert record.status == JobStatus.JOB_STATUS_SUCCEEDED
    # Written after the last attempt returned: no attempt follows the give-up.
    assert [a.headers["X-LLMGA-Attempt"] for a in receiver.received(url)] == [
        str(n) for n in range(1, max_attempts + 1)
    ]
    assert _stream_entries(redis_client, keys.webhook_outbox(), event_id) == []
    assert _gateway_metric(api, failed_metric) == failed_before + 1


def test_events_filter_what_is_sent(
    api: httpx.Client, receiver: Receiver, redis_client: redis.Redis, namespace: Namespace
) -> None:
    url = receiver.url()
    job_id = _create(api, {"url": url, "events": ["started"]})
    assert wait_for_job(api, job_id)["status"] == "succeeded"
    _wait_outbox_drained(redis_client, namespace)
    assert [d.event["event"] for d in receiver.received(url)] == ["started"]


def test_a_canceled_job_sends_canceled(
    api: httpx.Client, receiver: Receiver, redis_client: redis.Redis, namespace: Namespace
) -> None:
    url = receiver.url()
    job_id = _create(api, {"url": url}, steps=150)
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert wait_for_job(api, job_id)["status"] == "canceled"
    _wait_outbox_drained(redis_client, namespace)
    events = [d.event for d in receiver.received(url)]
    # Canceled while queued (no start) or after the worker started it.
    assert [e["event"] for e in events] in (["canceled"], ["started", "canceled"])
    assert events[-1]["job"]["status"] == "canceled"


def test_chat_jobs_notify_the_turns_webhook(
    api: httpx.Client, receiver: Receiver, mllm: ScriptedMllm
) -> None:
    mllm.script("Sure. <gen_image>a red fox in snow</gen_image>")
    url = receiver.url()
    body = {"message": "a fox", **TINY, "webhook": {"url": url, "events": ["succeeded"]}}
    response = api.post("/v1/chat", json=body)
    assert response.status_code == 200, response.text
    chat = response.json()
    (delivery,) = receiver.wait_for(url, 1)
    assert delivery.event["event"] == "succeeded"
    assert delivery.event["job"]["id"] == chat["jobs"][0]["id"]
    assert delivery.event["job"]["conversation_id"] == chat["conversation_id"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",  # cloud metadata: not allow-listed
        "http://localhost:9/hook",
        "http://user:pw@127.0.0.1:9/hook",
        "ftp://127.0.0.1/hook",
        "not a url",
    ],
)
def test_webhook_urls_outside_the_allow_list_are_422(
    api: httpx.Client, mllm: ScriptedMllm, url: str
) -> None:
    response = api.post("/v1/images", json={"prompt": "x", **TINY, "webhook": {"url": url}})
    assert_error(response, 422, "webhook.url")
    response = api.post("/v1/chat", json={"message": "x", "webhook": {"url": url}})
    assert_error(response, 422, "webhook.url")
    assert mllm.requests() == []  # refused before the mllm was asked


def test_an_unknown_event_name_is_422(api: httpx.Client, receiver: Receiver) -> None:
    body = {"prompt": "x", "webhook": {"url": receiver.url(), "events": ["queued"]}}
    assert_error(api.post("/v1/images", json=body), 422, "webhook.events[0]")


def _write_started_event(
    client: redis.Redis, keys: RedisKeys, url: str, tenant: str = "t", job_id: str = "job_direct"
) -> None:
    """Append a `started` event for `url` to the outbox, as the worker's start of a job
    of `tenant` with that webhook does."""
    jobs = JobStore(client, keys, ttl_s=60)
    request = GenerationRequest(
        job_id=job_id, tenant=tenant, task=Task.TASK_T2I, webhook=Webhook(url=url)
    )
    jobs.create(JobRecord(request=request, status=JobStatus.JOB_STATUS_QUEUED))

    def start(record: JobRecord) -> None:
        record.status = JobStatus.JOB_STATUS_RUNNING

    jobs.update(tenant, job_id, start)


def _run_dispatcher_until(
    settings: GatewaySettings, metrics: GatewayMetrics, done: Callable[[], bool]
) -> None:
    """Run a dispatcher in this process until `done()` holds (10 s at most)."""

    async def run() -> None:
        dispatcher = WebhookDispatcher(settings, metrics, consumer="live")
        task = asyncio.create_task(dispatcher.run())
        try:
            for _ in range(200):
                if done():
                    return
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await dispatcher.aclose()

    asyncio.run(run())


def _dispatcher_settings(namespace: Namespace, **overrides: Any) -> GatewaySettings:
    """An in-process dispatcher's settings on `namespace`: webhooks to 127.0.0.1 allowed,
    then `overrides`."""
    webhooks: dict[str, Any] = {
        "webhook_allowed_hosts": "127.0.0.1",
        "webhook_allow_http": True,
    }
    return GatewaySettings(
        redis_url=REDIS_URL, key_prefix=namespace.key_prefix, **{**webhooks, **overrides}
    )


def test_a_dead_dispatchers_events_are_delivered_by_another(
    redis_client: redis.Redis, receiver: Receiver
) -> None:
    """An event read by a dispatcher that died before delivering it stays pending; a live
    dispatcher reclaims it once it has been idle for LLMGA_WEBHOOK_RECLAIM_IDLE_S."""
    namespace = Namespace.unique("webhook-reclaim")
    keys = RedisKeys(namespace.key_prefix)
    try:
        url = receiver.url()
        _write_started_event(redis_client, keys, url)
        stream = keys.webhook_outbox()
        redis_client.xgroup_create(stream, CONSUMER_GROUP, id="0")
        # The dead dispatcher: it read the entry and never acknowledged it.
        read = redis_client.xreadgroup(CONSUMER_GROUP, "dead-dispatcher", {stream: ">"}, count=1)
        assert len(cast(ReadAnswer, read)[0][1]) == 1
        settings = _dispatcher_settings(namespace, webhook_reclaim_idle_s=0.5)

        _run_dispatcher_until(
            settings,
            GatewayMetrics(),
            lambda: bool(receiver.received(url)) and not redis_client.xlen(stream),
        )
        (delivery,) = receiver.received(url)
        assert delivery.event["event"] == "started"
        # The dead dispatcher's entry is acknowledged and deleted.
        assert redis_client.xpending(stream, CONSUMER_GROUP)["pending"] == 0
    finally:
        namespace.cleanup(redis_client)


def test_an_event_whose_url_is_no_longer_allowed_is_given_up_unsent(
    redis_client: redis.Redis, receiver: Receiver
) -> None:
    """The dispatcher checks the URL again before an event's first attempt: a host taken
    off the allow-list (a restart with other settings) gets nothing."""
    namespace = Namespace.unique("webhook-refused")
    keys = RedisKeys(namespace.key_prefix)
    try:
        url = receiver.url()  # 127.0.0.1: allowed when the job was created
        _write_started_event(redis_client, keys, url)
        settings = _dispatcher_settings(namespace, webhook_allowed_hosts="hooks.example.com")
        metrics = GatewayMetrics()

        dead = keys.webhook_dead_letters()
        _run_dispatcher_until(settings, metrics, lambda: bool(redis_client.xlen(dead)))
        ((_id, fields),) = cast(list[tuple[bytes, dict[bytes, bytes]]], redis_client.xrange(dead))
        assert b"not in LLMGA_WEBHOOK_ALLOWED_HOSTS" in fields[b"error"]
        assert receiver.received(url) == []
        assert redis_client.xlen(keys.webhook_outbox()) == 0
        assert metrics.registry.get_sample_value("llmga_gateway_webhook_events_failed_total") == 1
    finally:
        namespace.cleanup(redis_client)


def _deliver_one(
    redis_client: redis.Redis,
    namespace: Namespace,
    receiver: Receiver,
    tenant: str,
    **overrides: Any,
) -> Delivery:
    """Write a `started` event of `tenant` and run an in-process dispatcher (settings:
    `_dispatcher_settings(namespace, **overrides)`) until the receiver got it."""
    url = receiver.url()
    keys = RedisKeys(namespace.key_prefix)
    _write_started_event(redis_client, keys, url, tenant, job_id=f"job_{uuid.uuid4().hex}")
    settings = _dispatcher_settings(namespace, **overrides)
    _run_dispatcher_until(settings, GatewayMetrics(), lambda: bool(receiver.received(url)))
    (delivery,) = receiver.received(url)
    return delivery


def test_each_tenant_has_its_own_secret(redis_client: redis.Redis, receiver: Receiver) -> None:
    namespace = Namespace.unique("webhook-tenants")
    try:
        to_a = _deliver_one(redis_client, namespace, receiver, "tenant-a")
        to_b = _deliver_one(redis_client, namespace, receiver, "tenant-b")
        secret_a = _cli_secret(namespace, "tenant-a")
        secret_b = _cli_secret(namespace, "tenant-b")
        assert secret_a != secret_b
        assert _verifies(secret_a, to_a) and _verifies(secret_b, to_b)
        assert not _verifies(secret_a, to_b) and not _verifies(secret_b, to_a)
        # Stored under the tenant, as docs/redis.md says.
        keys = RedisKeys(namespace.key_prefix)
        stored = redis_client.hget(keys.webhook_secret("tenant-a"), "current")
        assert stored == secret_a.encode()
    finally:
        namespace.cleanup(redis_client)


def test_a_rotated_secret_signs_with_both_during_the_grace_period(
    redis_client: redis.Redis, receiver: Receiver
) -> None:
    namespace = Namespace.unique("webhook-rotation")
    try:
        old = _cli_secret(namespace, "t")
        assert _cli_secret(namespace, "t") == old  # printing does not change it
        new = _cli_secret(namespace, "t", "--rotate")
        assert new.startswith("whsec_") and new != old

        during = _deliver_one(redis_client, namespace, receiver, "t")
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        assert _verifies(old, during) and _verifies(new, during)

        after = _deliver_one(redis_client, namespace, receiver, "t", webhook_rotation_grace_s=0.0)
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        assert _verifies(new, after) and not _verifies(old, after)
    finally:
        namespace.cleanup(redis_client)


def test_the_webhook_hosts_command_edits_a_tenants_list(redis_client: redis.Redis) -> None:
    namespace = Namespace.unique("webhook-hosts-cli")
    try:
        assert apikeys_cli(namespace, "webhook-hosts", "--tenant", "t", "--list") == ""
        for host in ("Hooks.Acme.test", "*.acme.io"):
            apikeys_cli(namespace, "webhook-hosts", "--tenant", "t", "--add", host)
        listed = apikeys_cli(namespace, "webhook-hosts", "--tenant", "t", "--list")
        assert listed.split() == ["*.acme.io", "hooks.acme.test"]
        apikeys_cli(namespace, "webhook-hosts", "--tenant", "t", "--remove", "*.acme.io")
        store = WebhookTenantStore(redis_client, RedisKeys(namespace.key_prefix))
        assert store.hosts("t") == ["hooks.acme.test"]
        assert store.hosts("other") == []
        with pytest.raises(subprocess.CalledProcessError) as failed:
            apikeys_cli(namespace, "webhook-hosts", "--tenant", "t", "--remove", "nope.test")
        assert failed.value.returncode == 1
        with pytest.raises(subprocess.CalledProcessError) as failed:
            apikeys_cli(namespace, "webhook-hosts", "--tenant", "t", "--add", "https://x/")
        assert failed.value.returncode == 2
    finally:
        namespace.cleanup(redis_client)


def test_a_tenants_own_hosts_are_accepted_and_others_are_422(
    api: httpx.Client, namespace: Namespace, mllm: ScriptedMllm
) -> None:
    url = "http://hooks.tenant-only.test/hook"
    body = {"prompt": "x", **TINY, "webhook": {"url": url, "events": ["canceled"]}}
    assert_error(api.post("/v1/images", json=body), 422, "webhook.url")

    apikeys_cli(namespace, "webhook-hosts", "--tenant", TENANT, "--add", "hooks.tenant-only.test")
    try:
        response = api.post("/v1/images", json=body)
        assert response.status_code == 202, response.text
        chat = {"message": "x", "webhook": {"url": url, "events": ["canceled"]}}
        mllm.script("Just words.")
        assert api.post("/v1/chat", json=chat).status_code == 200
    finally:
        apikeys_cli(
            namespace, "webhook-hosts", "--tenant", TENANT, "--remove", "hooks.tenant-only.test"
        )
    assert_error(api.post("/v1/images", json=body), 422, "webhook.url")


def test_the_dispatcher_checks_the_tenants_hosts_too(
    redis_client: redis.Redis, receiver: Receiver
) -> None:
    """127.0.0.1 only on the tenant's list: delivered while it is there; given up unsent
    once it is removed."""
    namespace = Namespace.unique("webhook-tenant-hosts")
    keys = RedisKeys(namespace.key_prefix)
    store = WebhookTenantStore(redis_client, keys)
    try:
        store.add_host("t", "127.0.0.1")
        delivery = _deliver_one(
            redis_client, namespace, receiver, "t", webhook_allowed_hosts="hooks.example.com"
        )
        assert _verifies(store.secrets("t").current, delivery)

        store.remove_host("t", "127.0.0.1")
        url = receiver.url()
        _write_started_event(redis_client, keys, url, "t", job_id="job_refused")
        settings = _dispatcher_settings(namespace, webhook_allowed_hosts="hooks.example.com")
        dead = keys.webhook_dead_letters()
        _run_dispatcher_until(settings, GatewayMetrics(), lambda: bool(redis_client.xlen(dead)))
        assert receiver.received(url) == []
    finally:
        namespace.cleanup(redis_client)


def test_a_tenants_hosts_are_only_its_own(redis_client: redis.Redis) -> None:
    """What job creation decides (`accepted_webhook`) for two tenants, one of which
    listed a host: accepted for it, 422 on `webhook.url` for the other."""
    namespace = Namespace.unique("webhook-host-tenants")
    keys = RedisKeys(namespace.key_prefix)
    WebhookTenantStore(redis_client, keys).add_host("tenant-a", "*.a.test")
    settings = _dispatcher_settings(namespace, webhook_allowed_hosts="hooks.example.com")
    webhook = WebhookInput(url="https://hooks.a.test/x")

    async def accept(tenant: str) -> Webhook | None:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            return await accepted_webhook(webhook, settings, client, keys, tenant)
        finally:
            await client.aclose()

    try:
        accepted = asyncio.run(accept("tenant-a"))
        assert accepted is not None and accepted.url == webhook.url
        with pytest.raises(ApiError) as refused:
            asyncio.run(accept("tenant-b"))
        assert refused.value.status_code == 422 and refused.value.field == "webhook.url"
    finally:
        namespace.cleanup(redis_client)
