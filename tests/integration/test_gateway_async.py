"""The gateway serves from one event loop without holding threads: slow mllm calls do not
delay other requests, and event streams end at their bound and at shutdown. Real gateway
processes, real Redis, the scripted mllm; no worker (jobs stay queued). Also the asyncio
pieces of job submission: the task message it pushes, the queue depth it reads.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from deploy.local.stack import ManagedProcess
from services.common.contract import GENERATE_TASK_NAME, GenerationRequest, encode_request
from services.gateway.http.backpressure import UNACKED_KEY, QueueDepth
from services.gateway.settings import GatewaySettings
from services.gateway.stores.job_submitter import TaskPublisher, make_celery_producer, task_argsrepr
from tests.support.http_api import server_sent_events
from tests.support.processes import free_port, http_ok, python_module, running
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import REDIS_URL, Namespace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

STREAM_MAX_S = 1.5
KEEPALIVE_S = 0.3
CHATS = 50
JOB_READS = 20
MLLM_DELAY_S = 4.0


@pytest.fixture(scope="module")
def gateway(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[str]:
    """A gateway whose event streams end after STREAM_MAX_S; yields its URL."""
    with _gateway(namespace, scripted, logs, "gateway") as (url, _):
        yield url


@contextmanager
def _gateway(
    namespace: Namespace,
    scripted: ScriptedMllm,
    logs: Path,
    name: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[str, ManagedProcess]]:
    """A gateway process (streams bounded to STREAM_MAX_S): its URL and the process."""
    port = free_port()
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_GATEWAY_HOST": "127.0.0.1",
        "LLMGA_GATEWAY_PORT": str(port),
        "LLMGA_EVENT_STREAM_MAX_S": str(STREAM_MAX_S),
        "LLMGA_JOB_EVENTS_KEEPALIVE_S": str(KEEPALIVE_S),
        **(extra_env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    ready = http_ok(f"{url}/healthz")
    with running(name, python_module("services.gateway"), env, ready, logs) as process:
        yield url, process


def _queued_job(url: str) -> str:
    response = httpx.post(f"{url}/v1/images", json={"prompt": "an owl"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_event_stream_ends_at_its_bound_with_a_comment(gateway: str) -> None:
    job_id = _queued_job(gateway)
    started = time.monotonic()
    with httpx.stream("GET", f"{gateway}/v1/jobs/{job_id}/events", timeout=30) as response:
        assert response.status_code == 200
        seen = list(server_sent_events(response))
    elapsed = time.monotonic() - started
    assert seen[0][0] == "status"
    assert any(data.startswith(": keep-alive") for event, data in seen if not event)
    event, last = seen[-1]
    assert event == "" and "LLMGA_EVENT_STREAM_MAX_S" in last, seen
    assert STREAM_MAX_S <= elapsed < STREAM_MAX_S + 5


def test_sigterm_ends_open_streams_and_the_process_promptly(
    namespace: Namespace, scripted: ScriptedMllm, logs: Path
) -> None:
    """Without shutdown handling uvicorn would wait for the stream (up to the graceful
    shutdown timeout, 150 s by default) before exiting."""
    with _gateway(namespace, scripted, logs, "gateway-sigterm") as (url, process):
        job_id = _queued_job(url)
        seen: list[tuple[str, str]] = []
        opened, closed = threading.Event(), threading.Event()

        def follow() -> None:
            with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=60) as response:
                for item in server_sent_events(response):
                    seen.append(item)
                    opened.set()
            closed.set()

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert opened.wait(10), "the stream sent no first event"
        assert process.process is not None
        sent_at = time.monotonic()
        process.process.send_signal(signal.SIGTERM)
        process.process.wait(timeout=10)
        assert time.monotonic() - sent_at < 5
        assert closed.wait(5), "the stream stayed open"
    assert seen[0][0] == "status"
    assert "shutting down" in seen[-1][1], seen


def test_job_reads_are_answered_while_many_chats_wait_on_a_slow_mllm(
    gateway: str, mllm: ScriptedMllm
) -> None:
    """CHATS turns wait on an mllm that answers after MLLM_DELAY_S; job reads issued once
    every turn reached the mllm all complete before any turn does (order, not time)."""
    mllm.script(delay_s=MLLM_DELAY_S)
    job_id = _queued_job(gateway)
    finished: list[str] = []

    async def chat(client: httpx.AsyncClient, index: int) -> None:
        response = await client.post("/v1/chat", json={"message": f"turn {index}"})
        assert response.status_code == 200, response.text
        finished.append("chat")

    async def read_job(client: httpx.AsyncClient) -> None:
        response = await client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        finished.append("job")

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=CHATS + JOB_READS)
        async with httpx.AsyncClient(base_url=gateway, timeout=60, limits=limits) as client:
            chats = [asyncio.create_task(chat(client, i)) for i in range(CHATS)]
            # Every turn is now waiting on the mllm (it records a request on arrival).
            deadline = time.monotonic() + MLLM_DELAY_S
            while len(await asyncio.to_thread(mllm.requests)) < CHATS:
                assert time.monotonic() < deadline, "the turns did not all reach the mllm"
                await asyncio.sleep(0.05)
            assert not finished
            await asyncio.gather(*(read_job(client) for _ in range(JOB_READS)), *chats)

    asyncio.run(scenario())
    assert finished == ["job"] * JOB_READS + ["chat"] * CHATS


def test_a_burst_beyond_the_redis_pool_waits_for_connections_and_streams_use_their_own(
    namespace: Namespace, scripted: ScriptedMllm, logs: Path
) -> None:
    """100 submissions at once on a pool of 4 Redis connections, with more event streams
    open than that: every submission is accepted (they queue for a connection), and the
    streams, on pub/sub connections of their own, take none of the 4."""
    small_pool = {"LLMGA_REDIS_MAX_CONNECTIONS": "4"}
    with _gateway(namespace, scripted, logs, "gateway-small-pool", small_pool) as (url, _):
        job_id = _queued_job(url)

        async def scenario() -> list[int]:
            limits = httpx.Limits(max_connections=200)
            async with (
                httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client,
                AsyncExitStack() as streams,
            ):
                for _ in range(6):
                    stream = client.stream("GET", f"/v1/jobs/{job_id}/events")
                    assert (await streams.enter_async_context(stream)).status_code == 200
                burst = [client.post("/v1/images", json={"prompt": f"owl {i}"}) for i in range(100)]
                return [response.status_code for response in await asyncio.gather(*burst)]

        assert asyncio.run(scenario()) == [202] * 100


def test_pushed_task_message_is_what_celerys_producer_writes(
    namespace: Namespace, redis_client: redis.Redis
) -> None:
    """The gateway's message (TaskPublisher) against the one `send_task` puts on the same
    Redis list: equal but for what is unique per message (the delivery tag, the origin
    host:pid) and the display-only `argsrepr`. Workers consuming it are tested with real
    worker processes (test_job_control.py, test_end_to_end.py)."""
    queue = f"{namespace.queue_name}.format"
    settings = GatewaySettings(redis_url=REDIS_URL, queue_name=queue)
    producer = make_celery_producer(settings)
    request = GenerationRequest(job_id="job_format", tenant="local", prompt="an owl")

    async def push() -> None:
        async with aioredis.Redis.from_url(REDIS_URL) as client:
            await TaskPublisher(producer, client, queue).send(request)

    try:
        asyncio.run(push())
        producer.send_task(
            GENERATE_TASK_NAME, args=[encode_request(request)], task_id="job_format", queue=queue
        )
        theirs, ours = (json.loads(raw) for raw in redis_client.lrange(queue, 0, -1))
    finally:
        producer.close()
        redis_client.delete(queue, f"_kombu.binding.{queue}")
    # What monitoring shows as the arguments: ours names the job instead of Celery's
    # repr of the encoded request.
    assert ours["headers"]["argsrepr"] == task_argsrepr(request)
    for message in (ours, theirs):
        message["properties"].pop("delivery_tag")
        message["headers"].pop("origin")
        message["headers"].pop("argsrepr")
    assert ours == theirs


def test_queue_depth_counts_every_page_of_unacked(namespace: Namespace) -> None:
    """Waiting messages plus this queue's unacknowledged ones, past the first HSCAN page.
    In a database of its own: kombu's `unacked` hash is one per database, and workers of
    other tests restore what they find there."""
    url = REDIS_URL.rsplit("/", 1)[0] + "/15"
    queue = namespace.queue_name
    ours, others = 1234, 50

    async def depth() -> int:
        async with aioredis.Redis.from_url(url) as client:
            await client.delete(UNACKED_KEY, queue)
            entries = {f"ours-{i}": json.dumps([{}, "", queue]) for i in range(ours)}
            entries |= {f"other-{i}": json.dumps([{}, "", "other"]) for i in range(others)}
            await client.hset(UNACKED_KEY, mapping=entries)  # type: ignore[arg-type]
            await client.lpush(queue, "a", "b", "c")
            try:
                return await QueueDepth(client, queue).depth()
            finally:
                await client.delete(UNACKED_KEY, queue)

    assert asyncio.run(depth()) == ours + 3
