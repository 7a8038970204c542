"""A streamed chat turn against the real local mllm engine (its own OpenAI stream format,
its own chunking), through the real gateway. No worker: the turn's jobs stay queued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.gateway.mllm.generation_tags import tidy_text
from tests.support.http_api import server_sent_events
from tests.support.services import REDIS_URL, HttpService, Namespace, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def namespace() -> Iterator[Namespace]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # no Redis is a failure here, not a skip: CI starts one
    ns = Namespace.unique("test-chat-stream")
    yield ns
    ns.cleanup(client)


def test_streamed_turn_with_the_real_local_mllm(
    namespace: Namespace, local_mllm: HttpService, tmp_path: Path
) -> None:
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": f"{local_mllm.url}/v1"}
    with (
        start_gateway(env, tmp_path) as gateway,
        httpx.Client(base_url=gateway.url, timeout=120) as api,
        api.stream(
            "POST", "/v1/chat", json={"message": "a husky astronaut", "stream": True}
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        events = [(event, data) for event, data in server_sent_events(response) if event]

    assert events[-1] == ("message", "[DONE]")
    name, data = events[-2]
    assert name == "chat.result", events[-3:]
    result = json.loads(data)
    chunks = [
        json.loads(data)["choices"][0]["delta"].get("content") or "" for _, data in events[:-2]
    ]
    text = "".join(chunks)
    assert len(chunks) > 2, "the reply should arrive in several chunks"
    # The chunks are exactly the shown reply: no tag and no generation prompt leaked.
    assert tidy_text(text) == result["reply"]
    assert "<gen_im" not in text
    assert len(result["jobs"]) == len(result["generation_prompts"])
