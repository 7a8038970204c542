"""The OpenAI-compatible routes with the real `openai` package against a real gateway
(auth on, a key made by the real CLI) and the scripted mllm. No worker: jobs stay queued."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from services.common.contract import Task
from services.common.job_store import JobStore
from tests.support.images import png_b64
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import HttpService, Namespace, create_api_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TENANT = "acme"
REPLY = (
    "Two foxes coming up! <gen_image> a red fox in fresh snow </gen_image> and "
    "<gen_img>a fox cub asleep</gen_img> Enjoy."
)
VISIBLE = "Two foxes coming up! and Enjoy."
PROMPTS = ["a red fox in fresh snow", "a fox cub asleep"]


@pytest.fixture(scope="module")
def gateway(auth_gateway: HttpService) -> HttpService:
    """The module's gateway: API keys required (conftest.py)."""
    return auth_gateway


@pytest.fixture(scope="module")
def key(namespace: Namespace) -> str:
    return create_api_key(namespace, TENANT)


@pytest.fixture
def client(gateway: HttpService, key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        yield client


def _llmga(model: Any) -> dict[str, Any]:
    """The `llmga` extra field of a completion or chunk, as the package keeps it."""
    extra = model.model_extra or {}
    assert "llmga" in extra, model
    value = extra["llmga"]
    assert isinstance(value, dict)
    return value


def _check_jobs(llmga: dict[str, Any], jobs: JobStore, prompts: list[str]) -> None:
    assert llmga["generation_prompts"] == prompts
    assert [job["prompt"] for job in llmga["jobs"]] == prompts
    for job in llmga["jobs"]:
        assert job["status"] == "queued" and job["conversation_id"] == llmga["conversation_id"]
        record = jobs.get(TENANT, job["id"])
        assert record is not None and record.request.prompt == job["prompt"]


def test_chat_completion_with_the_openai_package(
    client: openai.OpenAI, mllm: ScriptedMllm, jobs: JobStore, gateway: HttpService, key: str
) -> None:
    mllm.script(REPLY)
    completion = client.chat.completions.create(
        model="whatever-the-client-says",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello! What shall I draw?"},
            {"role": "user", "content": "two foxes"},
        ],
        max_tokens=200,
        temperature=0.3,
    )
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl")
    assert completion.model == "whatever-the-client-says"
    [choice] = completion.choices
    assert choice.message.role == "assistant" and choice.message.content == VISIBLE
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    llmga = _llmga(completion)
    _check_jobs(llmga, jobs, PROMPTS)

    # The mllm got the client's history (system first), then the turn.
    sent = mllm.requests()[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "Be brief."),
        ("user", "hi"),
        ("assistant", "Hello! What shall I draw?"),
        ("user", "two foxes"),
    ]
    # The turn is stored like a POST /v1/chat turn.
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}) as api:
        conversation = api.get(f"/v1/conversations/{llmga['conversation_id']}").json()
    assert [t["text"] for t in conversation["turns"]] == ["two foxes", VISIBLE]


def test_conversation_id_extra_field_uses_the_stored_history(
    client: openai.OpenAI, mllm: ScriptedMllm
) -> None:
    mllm.script("First. <gen_image>a lighthouse</gen_image>", "Second.")
    first = client.chat.completions.create(
        model="llmga", messages=[{"role": "user", "content": "a lighthouse"}]
    )
    conversation_id = _llmga(first)["conversation_id"]
    second = client.chat.completions.create(
        model="llmga",
        messages=[{"role": "user", "content": "now at night"}],
        extra_body={"conversation_id": conversation_id},
    )
    assert _llmga(second)["conversation_id"] == conversation_id
    assert _llmga(second)["jobs"] == []
    sent = mllm.requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == "First. <gen_image>a lighthouse</gen_image>"


def test_async_client(gateway: HttpService, key: str, mllm: ScriptedMllm, jobs: JobStore) -> None:
    mllm.script(REPLY)

    async def ask() -> Any:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key=key, max_retries=0
        ) as client:
            return await client.chat.completions.create(
                model="llmga", messages=[{"role": "user", "content": "two foxes"}]
            )

    completion = asyncio.run(ask())
    assert completion.choices[0].message.content == VISIBLE
    _check_jobs(_llmga(completion), jobs, PROMPTS)


def test_streamed_completion(client: openai.OpenAI, mllm: ScriptedMllm, jobs: JobStore) -> None:
    mllm.script(REPLY)
    chunks = list(
        client.chat.completions.create(
            model="llmga", messages=[{"role": "user", "content": "two foxes"}], stream=True
        )
    )
    assert len(chunks) > 5, "the reply should arrive in pieces"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert all(c.model == "llmga" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "gen_im" not in text and "fresh snow" not in text
    assert " ".join(text.split()) == VISIBLE
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    _check_jobs(_llmga(last), jobs, PROMPTS)
    assert all("llmga" not in (c.model_extra or {}) or c is last for c in chunks)


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [("llmga", "model", "llmga")]
    assert models.data[0].created > 0


def test_image_part_makes_a_similar_turn(
    client: openai.OpenAI, mllm: ScriptedMllm, jobs: JobStore
) -> None:
    mllm.script("A similar one. <gen_image>a blue square on white</gen_image>")
    image = f"data:image/png;base64,{png_b64(Image.new('RGB', (83, 66), 'blue'))}"
    completion = client.chat.completions.create(
        model="llmga",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "something like this"},
                    {"type": "image_url", "image_url": {"url": image}},
                ],
            }
        ],
    )
    llmga = _llmga(completion)
    [job] = llmga["jobs"]
    assert job["task"] == "t2i" and job["input_image_ids"] == [llmga["source_image_id"]]
    record = jobs.get(TENANT, job["id"])
    assert record is not None and record.request.task == Task.TASK_T2I
    assert (record.request.width, record.request.height) == (80, 64)
    # The mllm saw the image with the text.
    content = mllm.requests()[-1]["messages"][-1]["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]
    assert content[1]["text"] == "something like this"


def test_wrong_key_is_an_authentication_error(gateway: HttpService, mllm: ScriptedMllm) -> None:
    with openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key="llmga_wrong", max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            client.chat.completions.create(
                model="llmga", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["type"] == "authentication_error" and error["code"] == "unauthorized"
    assert set(error) >= {"message", "type", "param", "code"}
    assert mllm.requests() == []


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "assistant", "content": "hi"}], "messages[0].role"),
        ([{"role": "user", "content": "   "}], "messages[0].content"),
        ([{"role": "wizard", "content": "hi"}], "messages[0].role"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                }
            ],
            "messages[0].content[0].image_url.url",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                    ],
                }
            ],
            "messages[0].content",
        ),
    ],
)
def test_bad_input_is_an_openai_error(
    client: openai.OpenAI, mllm: ScriptedMllm, messages: list[Any], param: str
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="llmga", messages=messages)
    error = raised.value.body
    assert isinstance(error, dict), error
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"
    assert error["param"] == param and error["message"]
    assert mllm.requests() == []


def test_unknown_conversation_and_malformed_body(
    client: openai.OpenAI, gateway: HttpService, key: str
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(
            model="llmga",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"conversation_id": "conv_nope"},
        )
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "not_found"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=gateway.url, headers=headers) as api:
        response = api.post("/v1/chat/completions", content=b"{nope")
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        # Other routes keep the gateway's body.
        other = api.post("/v1/chat", content=b"{nope")
        assert other.status_code == 400 and set(other.json()["error"]) == {
            "type",
            "message",
            "field",
        }


def test_mllm_failure_mid_request_is_an_openai_server_error(
    client: openai.OpenAI, mllm: ScriptedMllm
) -> None:
    mllm.script(status=500)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="llmga", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 502
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "upstream_error"


def test_earlier_images_are_dropped_and_n_must_be_1(
    client: openai.OpenAI, mllm: ScriptedMllm
) -> None:
    image = f"data:image/png;base64,{png_b64(Image.new('RGB', (64, 64), 'red'))}"
    client.chat.completions.create(
        model="llmga",
        messages=[
            {"role": "developer", "content": "Draw."},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "text", "text": "like this"},
                ],
            },
            {"role": "assistant", "content": "Done."},
            {"role": "user", "content": "again"},
        ],
    )
    sent = mllm.requests()[-1]["messages"]
    assert sent == [
        {"role": "system", "content": "Draw."},
        {"role": "user", "content": "like this"},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "again"},
    ]
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(
            model="llmga", messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert isinstance(raised.value.body, dict) and raised.value.body["param"] == "n"
