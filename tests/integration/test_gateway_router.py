"""The chat-or-image router in real gateways (uvicorn subprocesses) on real Redis and the
scripted mllm: the plain protocol (a tag-less model: the router decides, the mllm writes
the prompt alone), the llmga guard (a clear chat turn starts no job, a generating turn
without blocks is asked once more), the request's override, streaming, and the metrics.

No worker runs: a turn's jobs are checked as queued records in Redis, as in
test_gateway_api.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.contract import Task
from services.common.job_store import JobStore
from services.gateway.mllm.generation_tags import tidy_text
from services.gateway.mllm.prompt_writing import DEFAULT_PROMPT_INSTRUCTION
from tests.support.http_api import assert_error, server_sent_events
from tests.support.images import noise, png_b64
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import Namespace, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REASK = "Please generate that image now: write its detailed description in the form"


def _client(namespace: Namespace, scripted: ScriptedMllm, logs: Path, **env: str) -> Any:
    settings = {**namespace.env(), "LLMGA_MLLM_BASE_URL": scripted.base_url, **env}
    return start_gateway(settings, logs)


@pytest.fixture(scope="module")
def plain(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[httpx.Client]:
    """A gateway whose mllm is a tag-less chat model."""
    with (
        _client(namespace, scripted, logs, LLMGA_MLLM_PROTOCOL="plain") as gateway,
        httpx.Client(base_url=gateway.url, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def guarded(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[httpx.Client]:
    """A gateway on an LLMGA (tagged) mllm with the router's guard on."""
    with (
        _client(namespace, scripted, logs, LLMGA_ROUTER_GUARD="true") as gateway,
        httpx.Client(base_url=gateway.url, timeout=30) as client,
    ):
        yield client


def _counter(api: httpx.Client, name: str, **labels: str) -> float:
    """A counter's value on the gateway's /metrics (0 if it has no such sample yet)."""
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for sample in family.samples:
            if sample.name == f"{name}_total" and sample.labels == labels:
                return float(sample.value)
    return 0.0


def _system(request: dict[str, Any]) -> str | None:
    """The system message the mllm got, if any."""
    first = request["messages"][0]
    return str(first["content"]) if first["role"] == "system" else None


def _stream(api: httpx.Client, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A streamed turn: the text of its chunks and its `chat.result`."""
    with api.stream("POST", "/v1/chat", json={**payload, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        events = [(event, data) for event, data in server_sent_events(response) if event]
    assert events[-1] == ("message", "[DONE]") and events[-2][0] == "chat.result"
    chunks = [json.loads(data) for _, data in events[:-2]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks)
    return text, json.loads(events[-2][1])


# --------------------------------------------------------------------------- plain protocol


def test_plain_chat_turn_is_a_plain_answer(plain: httpx.Client, mllm: ScriptedMllm) -> None:
    mllm.script("The sea is wide,\nthe sea is deep.")
    body = plain.post("/v1/chat", json={"message": "write a poem about the sea"}).json()
    assert body["reply"] == "The sea is wide,\nthe sea is deep."
    assert body["jobs"] == [] and body["generation_prompts"] == []
    assert _system(mllm.requests()[-1]) is None  # no prompt-writing instruction


def test_plain_generating_turn_asks_for_the_prompt_and_queues_it(
    plain: httpx.Client, mllm: ScriptedMllm, jobs: JobStore
) -> None:
    before = _counter(plain, "llmga_gateway_router_decisions", decision="generate", source="router")
    mllm.script('"A red fox asleep in fresh snow, soft morning light, watercolor"')
    response = plain.post("/v1/chat", json={"message": "draw a red fox sleeping in the snow"})
    assert response.status_code == 200, response.text
    body = response.json()
    prompt = "A red fox asleep in fresh snow, soft morning light, watercolor"
    assert body["generation_prompts"] == [prompt]
    assert body["reply"] == f"Generating an image: {prompt}"
    [job] = body["jobs"]
    record = jobs.get("local", job["id"])
    assert record is not None and record.request.task == Task.TASK_T2I
    assert record.request.prompt == prompt
    assert _system(mllm.requests()[-1]) == DEFAULT_PROMPT_INSTRUCTION
    after = _counter(plain, "llmga_gateway_router_decisions", decision="generate", source="router")
    assert after == before + 1

    # A follow-up: the mllm sees the earlier turn (with the prompt it wrote) and rewrites it.
    mllm.script("A red fox asleep in fresh snow at night under the stars")
    follow = plain.post(
        "/v1/chat",
        json={"message": "now make it night", "conversation_id": body["conversation_id"]},
    ).json()
    assert follow["generation_prompts"] == [
        "A red fox asleep in fresh snow at night under the stars"
    ]
    sent = mllm.requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[2]["content"] == body["reply"]


def test_plain_edit_turn_writes_both_captions_without_tags(
    plain: httpx.Client, mllm: ScriptedMllm, jobs: JobStore
) -> None:
    mllm.script("a tabby cat on a red sofa", "Prompt: a parrot on a red sofa")
    response = plain.post(
        "/v1/chat",
        json={
            "message": "swap the cat for a parrot",
            "task": "edit",
            "images": [{"b64": png_b64(noise(64, 64, 3))}],
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source_caption"] == "a tabby cat on a red sofa"
    assert body["generation_prompts"] == ["a parrot on a red sofa"]
    [job] = body["jobs"]
    assert job["task"] == "edit" and job["target_caption"] == "a parrot on a red sofa"
    record = jobs.get("local", job["id"])
    assert record is not None and record.request.edit.source_caption == body["source_caption"]
    describe, target = mllm.requests()[-2:]
    assert _system(describe) == _system(target) == DEFAULT_PROMPT_INSTRUCTION


def test_plain_question_about_an_image_is_answered_not_drawn(
    plain: httpx.Client, mllm: ScriptedMllm
) -> None:
    mllm.script("A grey noise pattern, like an old television.")
    response = plain.post(
        "/v1/chat",
        json={"message": "describe this image", "images": [{"b64": png_b64(noise(64, 64, 4))}]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"] == "A grey noise pattern, like an old television."
    assert body["jobs"] == [] and body["generation_prompts"] == []
    sent = mllm.requests()[-1]
    assert _system(sent) is None
    assert sent["messages"][-1]["content"][0]["type"] == "image_url"


def test_plain_generate_override_both_ways(plain: httpx.Client, mllm: ScriptedMllm) -> None:
    mllm.script("I'd rather not draw right now.", "a cheerful hello sign, hand lettered")
    refused = plain.post("/v1/chat", json={"message": "draw a cat", "generate": False}).json()
    assert refused["jobs"] == [] and refused["reply"] == "I'd rather not draw right now."
    forced = plain.post("/v1/chat", json={"message": "hello", "generate": True}).json()
    assert forced["generation_prompts"] == ["a cheerful hello sign, hand lettered"]
    assert len(forced["jobs"]) == 1


def test_plain_streamed_turns(plain: httpx.Client, mllm: ScriptedMllm) -> None:
    mllm.script("Navy pairs well with white, mustard and coral.", "A lighthouse in a storm")
    text, result = _stream(plain, {"message": "what colours go with navy"})
    assert tidy_text(text) == result["reply"] == "Navy pairs well with white, mustard and coral."
    assert result["jobs"] == []

    text, result = _stream(plain, {"message": "paint a lighthouse in a storm"})
    assert text == result["reply"] == "Generating an image: A lighthouse in a storm"
    assert [job["prompt"] for job in result["jobs"]] == ["A lighthouse in a storm"]


def test_plain_reply_without_a_prompt_is_502(plain: httpx.Client, mllm: ScriptedMllm) -> None:
    mllm.script('""')
    assert_error(plain.post("/v1/chat", json={"message": "draw a castle"}), 502)


# --------------------------------------------------------------------------- llmga guard


def test_guard_drops_the_blocks_of_a_clear_chat_turn(
    guarded: httpx.Client, mllm: ScriptedMllm
) -> None:
    before = _counter(guarded, "llmga_gateway_router_guard", action="suppressed")
    mllm.script("<gen_image>a haiku about autumn leaves, ink painting</gen_image>")
    body = guarded.post("/v1/chat", json={"message": "write me a haiku about autumn"}).json()
    assert body["jobs"] == [] and body["generation_prompts"] == []
    # A reply that was nothing but a block shows the block's text.
    assert body["reply"] == "a haiku about autumn leaves, ink painting"
    assert _counter(guarded, "llmga_gateway_router_guard", action="suppressed") == before + 1
    turns = guarded.get(f"/v1/conversations/{body['conversation_id']}").json()["turns"]
    assert turns[1]["job_ids"] == []

    # Streamed, the visible part of the reply is what arrives.
    mllm.script("Here is one: <gen_image>SECRET autumn</gen_image> Falling leaves drift.")
    text, result = _stream(guarded, {"message": "write a haiku about autumn"})
    assert "SECRET" not in text and result["jobs"] == []
    assert tidy_text(text) == result["reply"] == "Here is one: Falling leaves drift."
    assert _counter(guarded, "llmga_gateway_router_guard", action="suppressed") == before + 2


def test_guard_reasks_a_generating_turn_without_blocks(
    guarded: httpx.Client, mllm: ScriptedMllm, jobs: JobStore
) -> None:
    before = _counter(guarded, "llmga_gateway_router_guard", action="reasked")
    mllm.script("What a lovely idea!", "<gen_image>a lighthouse on a cliff at dusk</gen_image>")
    body = guarded.post("/v1/chat", json={"message": "draw a lighthouse on a cliff"}).json()
    assert body["reply"] == "What a lovely idea!"
    assert body["generation_prompts"] == ["a lighthouse on a cliff at dusk"]
    [job] = body["jobs"]
    record = jobs.get("local", job["id"])
    assert record is not None and record.request.prompt == "a lighthouse on a cliff at dusk"
    first, again = mllm.requests()[-2:]
    assert again["messages"][:-2] == first["messages"]
    assert again["messages"][-2] == {"role": "assistant", "content": "What a lovely idea!"}
    assert again["messages"][-1]["content"].startswith(REASK)
    assert _counter(guarded, "llmga_gateway_router_guard", action="reasked") == before + 1

    # Asked once only: a second reply without blocks starts no job.
    mllm.script("Sure.", "Still no picture, sorry.")
    body = guarded.post("/v1/chat", json={"message": "paint a koi pond"}).json()
    assert body["jobs"] == [] and body["reply"] == "Sure."
    assert _counter(guarded, "llmga_gateway_router_guard", action="reask_untagged") >= 1


def test_guard_leaves_borderline_and_overridden_turns_to_the_reply(
    guarded: httpx.Client, mllm: ScriptedMllm
) -> None:
    # A named task overrides the router: the haiku request draws.
    mllm.script("<gen_image>autumn leaves</gen_image>")
    named = guarded.post(
        "/v1/chat", json={"message": "write me a haiku about autumn", "task": "t2i"}
    ).json()
    assert named["generation_prompts"] == ["autumn leaves"] and len(named["jobs"]) == 1
    # generate: true as well.
    mllm.script("<gen_image>an autumn haiku as calligraphy</gen_image>")
    forced = guarded.post(
        "/v1/chat", json={"message": "write me a haiku about autumn", "generate": True}
    ).json()
    assert len(forced["jobs"]) == 1
    assert _counter(guarded, "llmga_gateway_router_decisions", decision="generate", source="task")
    assert _counter(
        guarded, "llmga_gateway_router_decisions", decision="generate", source="request"
    )


def test_generate_false_contradicting_an_image_task_is_422(
    guarded: httpx.Client, mllm: ScriptedMllm
) -> None:
    response = guarded.post(
        "/v1/chat", json={"message": "draw a fox", "task": "t2i", "generate": False}
    )
    assert_error(response, 422, "generate")
    assert mllm.requests() == []


def test_openai_route_takes_generate_as_an_extra(guarded: httpx.Client, mllm: ScriptedMllm) -> None:
    mllm.script("<gen_image>a fox</gen_image> A fox, as you asked.")
    base_url = f"{str(guarded.base_url).rstrip('/')}/v1"
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        completion = client.chat.completions.create(
            model="llmga",
            messages=[{"role": "user", "content": "draw a fox"}],
            extra_body={"generate": False},
        )
    assert completion.choices[0].message.content == "A fox, as you asked."
    assert (completion.model_extra or {})["llmga"]["jobs"] == []
