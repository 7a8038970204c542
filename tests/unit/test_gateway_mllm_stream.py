"""The mllm client's streamed chat completions, against an in-process mock transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from services.gateway.mllm.client import ChatResult, MllmBadResponse, MllmClient


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> MllmClient:
    return MllmClient("http://mllm/v1", model="m", transport=httpx.MockTransport(handler))


def _sse(*chunks: object) -> bytes:
    return "".join(
        f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks
    ).encode()


def _delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def test_stream_yields_deltas_then_the_whole_result() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        body = _sse(
            {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
            _delta("Hel"),
            _delta("lo"),
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
            "[DONE]",
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async def read() -> tuple[list[str], ChatResult | None]:
        async with await _client(handler).chat_stream([], max_tokens=8) as stream:
            pieces = [piece async for piece in stream]
        return pieces, stream.result

    pieces, result = asyncio.run(read())
    assert pieces == ["Hel", "lo"]
    assert sent[0]["stream"] is True and sent[0]["stream_options"] == {"include_usage": True}
    assert sent[0]["max_tokens"] == 8
    assert result is not None and result.content == "Hello"
    assert (result.prompt_tokens, result.completion_tokens) == (5, 2)
    assert result.finish_reason == "length" and result.model == "m"


def test_stream_that_cannot_start_raises_before_reading() -> None:
    client = _client(lambda _: httpx.Response(500, json={"error": "boom"}))
    with pytest.raises(MllmBadResponse, match="HTTP 500"):
        asyncio.run(client.chat_stream([]))


@pytest.mark.parametrize("bad", ["not json", '["a list"]', '{"error": {"message": "x"}}'])
def test_bad_chunks_raise_bad_response(bad: str) -> None:
    client = _client(lambda _: httpx.Response(200, content=_sse(_delta("a"), bad)))

    async def read() -> list[str]:
        return [piece async for piece in await client.chat_stream([])]

    with pytest.raises(MllmBadResponse):
        asyncio.run(read())
