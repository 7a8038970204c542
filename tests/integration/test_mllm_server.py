"""End to end: the real local mllm server (packaged Gemma 3 270M) over real HTTP.

The server is the session's `local_mllm` (tests/integration/conftest.py); the model is
converted once into ``LLMGA_MLLM_CACHE_DIR`` and reused by later runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.services import HttpService

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "gemma3-270m"
GEN_IMAGE = re.compile(r"<gen_image>(.*?)(?:</gen_image>|$)", re.S)


@pytest.fixture()
def client(local_mllm: HttpService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_mllm.url, timeout=300) as http:
        yield http


def _chat(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": MODEL, **body})


def _sse(client: httpx.Client, **body: Any) -> list[str]:
    events: list[str] = []
    with client.stream("POST", "/v1/chat/completions", json={"model": MODEL, **body}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: ") :])
    return events


def test_health_and_models(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    [card] = models["data"]
    assert card["id"] == MODEL
    assert card["modalities"] == ["text"]
    assert card["capabilities"]["vision"] is False


def test_husky_astronaut_gets_a_detailed_prompt(client: httpx.Client) -> None:
    message = "a husky astronaut"
    response = _chat(client, messages=[{"role": "user", "content": message}])
    assert response.status_code == 200, response.text
    assert response.headers["x-llmga-ignored-images"] == "0"
    body = response.json()
    assert body["object"] == "chat.completion"
    [choice] = body["choices"]
    content = choice["message"]["content"]
    assert choice["message"]["role"] == "assistant"
    blocks = GEN_IMAGE.findall(content)
    assert len(blocks) == 1, content
    prompt = blocks[0].strip()
    assert len(prompt) > len(message), content
    assert "husky" in prompt.lower(), content
    assert "\n" not in content
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_matches_non_stream(client: httpx.Client) -> None:
    request: dict[str, Any] = {
        "messages": [{"role": "user", "content": "a red sports car at sunset"}],
        "max_tokens": 24,
        "temperature": 0,
        "seed": 7,
    }
    expected = _chat(client, **request).json()
    events = _sse(client, stream=True, stream_options={"include_usage": True}, **request)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == expected["usage"]
    final = chunks[-2]["choices"][0]
    assert final["finish_reason"] == expected["choices"][0]["finish_reason"]
    assert final["delta"] == {}
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]]
    assert len([d for d in deltas if d]) > 1
    assert "".join(deltas) == expected["choices"][0]["message"]["content"]


def test_image_parts_are_replaced_by_a_note(client: httpx.Client) -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "make it look like winter"},
    ]
    response = _chat(client, messages=[{"role": "user", "content": content}], max_tokens=4)
    assert response.status_code == 200, response.text
    assert response.headers["x-llmga-ignored-images"] == "1"
    body = response.json()
    assert body["usage"]["completion_tokens"] <= 4
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}


def test_stop_sequence_and_length(client: httpx.Client) -> None:
    body = _chat(
        client,
        messages=[{"role": "user", "content": "a cozy cabin in snowy woods"}],
        max_tokens=6,
        stop=["<gen_image>"],
    ).json()
    content = body["choices"][0]["message"]["content"]
    assert "<gen_image>" not in content
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    assert body["usage"]["completion_tokens"] <= 6


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, 400, "messages.0.role"),
        ({"messages": [{"role": "system", "content": "hi"}]}, 400, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000},
            400,
            "max_tokens",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, 400, "temperature"),
        ({"messages": [{"role": "user", "content": "word " * 3000}]}, 400, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4"}, 404, "model"),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio", "data": "x"}]}]},
            400,
            None,
        ),
    ],
    ids=[
        "empty",
        "unknown-role",
        "no-user",
        "n",
        "max-tokens",
        "temperature",
        "too-long",
        "model",
        "bad-part",
    ],
)
def test_bad_requests(client: httpx.Client, body: dict[str, Any], status: int, param: str) -> None:
    response = client.post("/v1/chat/completions", json={"model": MODEL, **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    assert error["type"]
    if param is not None:
        assert error["param"] == param


def test_malformed_json(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
