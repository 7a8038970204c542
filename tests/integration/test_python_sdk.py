"""The Python SDK (clients/python, `llmga_client`) against the real stack: a gateway that
requires API keys and sends webhooks, a real worker on the tiny models, and the scripted
mllm. One stack for the module; every job is 64x64 with a few steps.

Chat turns and their jobs, streamed chat, t2i and inpaint from uploads, listing with
cursors, cancel, the event iterator, retries after a 429's Retry-After, idempotency keys,
typed errors, webhook verification (a real delivery and a Standard Webhooks vector), and
the async client.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

import httpx
import numpy as np
import pytest
from llmga_client import (
    AsyncClient,
    ChatDelta,
    ChatResponse,
    Client,
    ConflictError,
    ImageInput,
    JobEvent,
    NotFoundError,
    PreviewEvent,
    RateLimitError,
    UnprocessableEntityError,
    WebhookInput,
    WebhookVerificationError,
    webhooks,
)
from PIL import Image
from standardwebhooks import Webhook as StandardWebhook

from tests.support.images import noise, png_b64
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import (
    HttpService,
    Namespace,
    apikeys_cli,
    create_api_key,
    start_gateway,
)
from tests.support.webhook_receiver import Receiver, start_receiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TENANT = "sdk"


class Tiny(TypedDict):
    """Generation options of every job here: small and quick on the tiny models."""

    width: int
    height: int
    steps: int
    seed: int


def tiny(steps: int = 2) -> Tiny:
    return Tiny(width=64, height=64, steps=steps, seed=1)


@pytest.fixture(scope="module")
def gateway(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[HttpService]:
    """API keys required; webhooks to 127.0.0.1 over http allowed (the test's receiver)."""
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_AUTH_REQUIRED": "true",
        "LLMGA_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "LLMGA_WEBHOOK_ALLOW_HTTP": "true",
    }
    with start_gateway(env, logs) as service:
        yield service


@pytest.fixture(scope="module")
def api_key(namespace: Namespace) -> str:
    return create_api_key(namespace, TENANT)


@pytest.fixture(scope="module")
def client(gateway: HttpService, api_key: str, worker: str) -> Iterator[Client]:
    """The SDK's blocking client, with a live worker behind the gateway."""
    with Client(gateway.url, api_key=api_key, timeout=30) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with start_receiver() as server:
        yield server


def png(pixels: np.ndarray) -> bytes:
    return base64.b64decode(png_b64(pixels))


def pixels_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_chat_queues_a_job_that_wait_returns_succeeded(client: Client, mllm: ScriptedMllm) -> None:
    mllm.script("A fox it is. <gen_image>a red fox in fresh snow</gen_image>")
    turn = client.chat(message="draw a fox", **tiny())
    assert isinstance(turn, ChatResponse)
    assert turn.reply == "A fox it is."
    assert turn.generation_prompts == ["a red fox in fresh snow"]
    [job] = turn.jobs
    assert job.status == "queued" and job.conversation_id == turn.conversation_id

    done = client.jobs.wait(job.id, timeout=60)
    assert done.status == "succeeded", done.error
    [image] = done.images
    assert (image.width, image.height) == (64, 64)
    assert pixels_of(client.images.download(image)).shape == (64, 64, 3)
    conversation = client.conversations.get(turn.conversation_id)
    assert [t.role for t in conversation.turns] == ["user", "assistant"]
    assert conversation.turns[1].job_ids == [job.id]


def test_chat_stream_yields_the_reply_then_the_turn(client: Client, mllm: ScriptedMllm) -> None:
    mllm.script("Happy to help with your design questions, step by step.")
    items = list(client.chat_stream(message="hello"))
    *deltas, final = items
    assert deltas and all(isinstance(d, ChatDelta) for d in deltas)
    assert isinstance(final, ChatResponse) and final.jobs == []
    assert "".join(d.content for d in deltas if isinstance(d, ChatDelta)) == final.reply
    assert final.reply == "Happy to help with your design questions, step by step."


def test_t2i_with_a_wait_answers_the_ended_job(client: Client) -> None:
    job = client.images.create(task="t2i", prompt="a lighthouse at dusk", wait=30, **tiny())
    assert job.task == "t2i" and job.status == "succeeded", job.error
    assert job.images[0].seed == 1


def test_inpaint_from_uploads_keeps_every_pixel_outside_the_mask(client: Client) -> None:
    image = noise(64, 64, 5)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255  # white: regenerate
    upload = client.uploads.create(png(image))
    mask_upload = client.uploads.create(png(mask))
    assert (upload.width, upload.height) == (64, 64)

    job = client.images.create(
        task="inpaint",
        prompt="a red apple",
        image=upload.as_input(),
        mask=ImageInput(id=mask_upload.id),
        steps=2,
        seed=3,
    )
    assert job.input_image_ids == [upload.id] and job.mask_image_id == mask_upload.id
    done = client.jobs.wait(job.id, timeout=60)
    assert done.status == "succeeded", done.error
    result = pixels_of(client.images.download(done.images[0]))
    outside = mask == 0
    assert np.array_equal(result[outside], image[outside])


def test_events_show_progress_before_the_terminal_status(client: Client) -> None:
    # Enough steps that the stream opens while the job still runs.
    job = client.images.create(prompt="a quiet harbour", **tiny(steps=40))
    events = list(client.jobs.events(job.id))
    updates = [e for e in events if isinstance(e, JobEvent)]
    assert all(isinstance(e, JobEvent | PreviewEvent) for e in events)
    assert updates[-1].event == "status" and updates[-1].job.status == "succeeded"
    assert events[-1] is updates[-1]  # the iterator ends with the terminal status
    before_end = updates[:-1]
    assert any(u.job.status == "running" and u.job.progress.total == 40 for u in before_end), [
        (u.event, u.job.status, u.job.progress) for u in events if isinstance(u, JobEvent)
    ]
    steps = [u.job.progress.step for u in updates]
    assert steps == sorted(steps)
    # The worker's previews (every LLMGA_WORKER_PREVIEW_EVERY = 5 steps), small JPEGs.
    previews = [e for e in events if isinstance(e, PreviewEvent)]
    assert previews and all(p.total == 40 and p.image_index == 0 for p in previews)
    assert client.images.download(previews[0].url)[:2] == b"\xff\xd8"


def test_jobs_list_pages_with_cursors_and_filters(client: Client) -> None:
    first = client.jobs.list(limit=2)
    assert len(first.data) == 2 and first.next_cursor
    second = client.jobs.list(limit=2, cursor=first.next_cursor)
    assert {j.id for j in first.data}.isdisjoint({j.id for j in second.data})
    assert first.data[0].created_at >= first.data[1].created_at >= second.data[0].created_at
    inpaints = client.jobs.list(task="inpaint")
    assert inpaints.data and {j.task for j in inpaints.data} == {"inpaint"}


def test_cancel_stops_a_job_and_a_second_cancel_is_a_conflict(client: Client) -> None:
    job = client.images.create(prompt="a long night", **tiny(steps=150))
    canceled = client.jobs.cancel(job.id)
    assert canceled.status == "canceled" and canceled.images == []
    with pytest.raises(ConflictError) as refused:
        client.jobs.cancel(job.id)
    assert refused.value.status == 409 and refused.value.type == "job_finished"
    assert client.jobs.wait(job.id, timeout=5).status == "canceled"


def test_creates_send_an_idempotency_key_and_one_key_makes_one_job(
    gateway: HttpService, api_key: str
) -> None:
    sent: list[str] = []

    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            sent.append(request.headers.get("idempotency-key", ""))

    http = httpx.Client(event_hooks={"request": [record]})
    with Client(gateway.url, api_key=api_key, http_client=http) as sdk:
        key = f"order-{uuid.uuid4().hex}"
        first = sdk.images.create(prompt="a teapot", idempotency_key=key, **tiny())
        again = sdk.images.create(prompt="a teapot", idempotency_key=key, **tiny())
        fresh = sdk.images.create(prompt="a teapot", **tiny())
    assert again.id == first.id and fresh.id != first.id
    assert sent[:2] == [key, key]
    assert uuid.UUID(sent[2])  # a fresh UUID by default


def test_errors_are_typed_with_status_field_and_reason(client: Client) -> None:
    with pytest.raises(UnprocessableEntityError) as bad:
        client.images.create(prompt="a fox", width=63)
    assert (bad.value.status, bad.value.field) == (422, "width")
    assert "8" in bad.value.message  # the reason: a multiple of 8
    with pytest.raises(NotFoundError) as missing:
        client.jobs.get("job_does_not_exist")
    assert missing.value.status == 404 and missing.value.type


def test_a_429_is_retried_after_its_retry_after(gateway: HttpService, namespace: Namespace) -> None:
    # One request per 3 s: the first passes, the next ones wait their turn.
    key = create_api_key(namespace, "sdk-limited", "--rate-limit", "1/3")
    with Client(gateway.url, api_key=key, max_retries=0) as impatient:
        impatient.jobs.list()
        with pytest.raises(RateLimitError) as limited:
            impatient.jobs.list()
    retry_after = limited.value.retry_after
    assert (limited.value.status, limited.value.type) == (429, "rate_limited")
    assert retry_after is not None and retry_after > 0

    statuses: list[int] = []
    http = httpx.Client(event_hooks={"response": [lambda r: statuses.append(r.status_code)]})
    with Client(gateway.url, api_key=key, max_retries=2, http_client=http) as patient:
        started = time.monotonic()
        page = patient.jobs.list()
        waited = time.monotonic() - started
    assert page.data == []
    assert statuses == [429, 200]  # refused, then sent again after Retry-After
    assert waited >= retry_after * 0.9, (waited, retry_after)

    # The budget is spent again; a Retry-After over `max_retry_after` is raised at once.
    hurried = Client(gateway.url, api_key=key, max_retries=2, max_retry_after=0.1)
    started = time.monotonic()
    with hurried, pytest.raises(RateLimitError):
        hurried.jobs.list()
    assert time.monotonic() - started < retry_after


def test_webhook_helper_verifies_a_real_delivery(
    client: Client, receiver: Receiver, namespace: Namespace
) -> None:
    url = receiver.url()
    job = client.images.create(
        prompt="a paper crane", webhook=WebhookInput(url=url, events=["succeeded"]), **tiny()
    )
    [delivery] = receiver.wait_for(url, 1)
    (secret,) = apikeys_cli(namespace, "webhook-secret", "--tenant", TENANT).split()

    event = webhooks.verify(delivery.body, delivery.headers, secret)
    assert event.event == "succeeded" and event.job.id == job.id
    assert event.id == delivery.headers["webhook-id"]
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(delivery.body + b" ", delivery.headers, secret)
    other = "whsec_" + base64.b64encode(b"\x01" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(delivery.body, delivery.headers, other)
    # Around a rotation a receiver may hold both secrets.
    assert webhooks.verify(delivery.body, delivery.headers, [other, secret]).id == event.id
    with pytest.raises(WebhookVerificationError):  # a replay, long after
        webhooks.verify(delivery.body, delivery.headers, secret, now=time.time() + 3600)


def test_webhook_helper_agrees_with_the_standard_webhooks_library(client: Client) -> None:
    secret = "whsec_" + base64.b64encode(b"llmga-sdk-test-secret-32-bytes!!").decode()
    job = client.jobs.list(limit=1).data[0]
    body = (
        '{"id": "evt_1", "event": "succeeded", "occurred_at": 1763861234.5, "job": '
        + job.model_dump_json()
        + "}"
    ).encode()
    signed_at = datetime.now(tz=UTC).replace(microsecond=0)
    signature = StandardWebhook(secret).sign("evt_1", signed_at, body.decode())
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": signature,
    }
    assert webhooks.verify(body, headers, secret).job.id == job.id
    assert signature == webhooks.sign(secret, "evt_1", int(signed_at.timestamp()), body)


def test_async_client_chats_creates_follows_and_lists(
    gateway: HttpService, api_key: str, mllm: ScriptedMllm, worker: str
) -> None:
    mllm.script("Sure. <gen_image>a glass whale</gen_image>")

    async def scenario() -> None:
        async with AsyncClient(gateway.url, api_key=api_key) as sdk:
            turn = await sdk.chat(message="a whale", **tiny())
            job = await sdk.images.create(prompt="a glass octopus", **tiny())
            events = [event async for event in sdk.jobs.events(job.id)]
            last = events[-1]
            assert isinstance(last, JobEvent) and last.job.status == "succeeded"
            chat_job = await sdk.jobs.wait(turn.jobs[0].id, timeout=60)
            assert chat_job.status == "succeeded", chat_job.error
            data = await sdk.images.download(last.job.images[0], format="jpeg")
            assert data[:2] == b"\xff\xd8"  # converted on download
            page = await sdk.jobs.list(conversation_id=turn.conversation_id)
            assert [j.id for j in page.data] == [chat_job.id]
            streamed = [item async for item in sdk.chat_stream(message="hi")]
            assert isinstance(streamed[-1], ChatResponse)
            with pytest.raises(ConflictError):
                await sdk.jobs.cancel(job.id)

    asyncio.run(scenario())
