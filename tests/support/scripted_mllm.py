"""A scripted OpenAI-compatible chat server for tests that need an exact MLLM reply.

Endpoints:
- `POST /v1/chat/completions`: answers the next scripted reply (FIFO); when the script is
  empty, the default reply. Records every request body. With `"stream": true` the reply
  comes as `chat.completion.chunk` events of STREAM_CHUNK_CHARS characters (so tags are
  split across chunks), usage last if `stream_options.include_usage`, then `[DONE]`.
- `GET /v1/models`, `GET /health`: what a real server answers.
- `POST /script` `{"replies": [...], "default": "..."?, "delay_s": 0?, "status": 200?}`:
  appends replies (and optionally sets the default reply, a delay, or an error status).
- `GET /requests`: the recorded chat requests, oldest first; `DELETE /requests` clears.
- `POST /reset`: clears script, recordings and settings.

Run: `python -m tests.support.scripted_mllm --port 8001` (or env SCRIPTED_MLLM_REPLIES,
a JSON list, for an initial script). In pytest: `with ScriptedMllm.start() as mllm: ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.support.processes import free_port, http_ok, python_module, running

MODEL_ID = "scripted-llmga"
DEFAULT_REPLY = "I am a scripted assistant."
STREAM_CHUNK_CHARS = 3


@dataclass
class _Script:
    replies: deque[str] = field(default_factory=deque)
    default: str = DEFAULT_REPLY
    delay_s: float = 0.0
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_app(initial_replies: list[str] | None = None) -> FastAPI:
    """The scripted server as an app (also usable in-process)."""
    app = FastAPI(title="scripted mllm")
    script = _Script(replies=deque(initial_replies or []))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        with script.lock:
            script.requests.append(body)
            reply = script.replies.popleft() if script.replies else script.default
            delay, status = script.delay_s, script.status
        if delay:
            await asyncio.sleep(delay)
        if status != 200:
            return JSONResponse({"error": {"message": "scripted failure"}}, status_code=status)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = len(reply.split())
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _stream(reply, body.get("model", MODEL_ID), usage if include_usage else None),
                media_type="text/event-stream",
            )
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(script.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", MODEL_ID),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    @app.post("/script")
    async def set_script(request: Request) -> dict[str, int]:
        body = await request.json()
        with script.lock:
            script.replies.extend(str(r) for r in body.get("replies", []))
            if "default" in body:
                script.default = str(body["default"])
            if "delay_s" in body:
                script.delay_s = float(body["delay_s"])
            if "status" in body:
                script.status = int(body["status"])
            return {"queued": len(script.replies)}

    @app.get("/requests")
    def get_requests() -> list[dict[str, Any]]:
        with script.lock:
            return list(script.requests)

    @app.delete("/requests")
    def clear_requests() -> dict[str, str]:
        with script.lock:
            script.requests.clear()
        return {"status": "cleared"}

    @app.post("/reset")
    def reset() -> dict[str, str]:
        with script.lock:
            script.replies.clear()
            script.requests.clear()
            script.default, script.delay_s, script.status = DEFAULT_REPLY, 0.0, 200
        return {"status": "reset"}

    return app


def _stream(reply: str, model: str, usage: dict[str, int] | None) -> Iterator[str]:
    """The reply as OpenAI chat.completion.chunk server-sent events."""

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        chunk = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(chunk)}\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    for start in range(0, len(reply), STREAM_CHUNK_CHARS):
        piece = reply[start : start + STREAM_CHUNK_CHARS]
        yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if usage is not None:
        yield event([], usage=usage)
    yield "data: [DONE]\n\n"


@dataclass
class ScriptedMllm:
    """A running scripted server (subprocess) and a client for its control endpoints."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the gateway's LLMGA_MLLM_BASE_URL should be."""
        return f"{self.url}/v1"

    def script(self, *replies: str, **settings: Any) -> None:
        """Queue replies; settings: default=..., delay_s=..., status=..."""
        response = httpx.post(f"{self.url}/script", json={"replies": list(replies), **settings})
        response.raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """The chat requests received so far."""
        response = httpx.get(f"{self.url}/requests")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def reset(self) -> None:
        """Forget script, recordings and settings."""
        httpx.post(f"{self.url}/reset").raise_for_status()

    @classmethod
    @contextmanager
    def start(cls, log_dir: Path, port: int | None = None) -> Iterator[ScriptedMllm]:
        """Start `python -m tests.support.scripted_mllm` on a free port; stop it on exit."""
        port = port or free_port()
        argv = python_module("tests.support.scripted_mllm", "--port", str(port))
        with running(
            "scripted-mllm", argv, {}, http_ok(f"http://127.0.0.1:{port}/health"), log_dir
        ):
            yield cls(port=port)


def main() -> None:
    """Command line: serve the scripted mllm with uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    replies = json.loads(os.environ.get("SCRIPTED_MLLM_REPLIES", "[]"))
    uvicorn.run(create_app(replies), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
