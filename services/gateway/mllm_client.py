"""A small asyncio client for the mllm's OpenAI Chat Completions API (whole replies or
streamed), over one `httpx.AsyncClient`: a request waiting on the mllm holds no thread.

Failures become one of three exceptions, which the API maps to 503 (unreachable),
504 (too slow) and 502 (bad answer).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


class MllmError(Exception):
    """The mllm could not give a usable answer."""


class MllmUnavailable(MllmError):
    """The mllm could not be reached (connection refused, DNS, reset)."""


class MllmTimeout(MllmError):
    """The mllm did not answer in time."""


class MllmBadResponse(MllmError):
    """The mllm answered with an error status or a body that is not a chat completion."""


@dataclass(frozen=True)
class ChatMessage:
    """One OpenAI chat message: text, optionally with images (data URIs) before it."""

    role: str
    content: str
    image_urls: tuple[str, ...] = ()

    def to_openai(self) -> dict[str, Any]:
        """The message as the OpenAI API expects it: a plain string, or with images a list
        of `image_url` parts followed by one `text` part (what vLLM's LLaVA takes)."""
        if not self.image_urls:
            return {"role": self.role, "content": self.content}
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": url}} for url in self.image_urls
        ]
        parts.append({"type": "text", "text": self.content})
        return {"role": self.role, "content": parts}


@dataclass(frozen=True)
class ChatResult:
    """What a chat completion returned, plus how long it took."""

    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    latency_s: float


class MllmClient:
    """Talks to `<base_url>/chat/completions` and `<base_url>/models` with one
    httpx.AsyncClient (one connection pool for every request of the event loop)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "",
        api_key: str = "",
        connect_timeout_s: float = 3.0,
        timeout_s: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
            # No pool limit: every waiting chat turn holds one connection, as many as the
            # mllm server accepts (its own queue bounds them).
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
        )
        self._model = model
        # Discovery runs once: concurrent first turns wait for it instead of each asking.
        self._model_lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and return its JSON body, mapping failures to MllmError."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise MllmTimeout(f"the mllm did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise MllmUnavailable(f"the mllm is unreachable ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise MllmBadResponse(
                f"the mllm answered HTTP {response.status_code} to {method} /{path}"
            )
        try:
            return response.json()
        except ValueError:
            raise MllmBadResponse(f"the mllm answered invalid JSON to {method} /{path}") from None

    async def list_models(self, timeout_s: float | None = None) -> list[str]:
        """Ids of the served models (`GET <base>/models`)."""
        kwargs: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        body = await self._request("GET", "models", **kwargs)
        try:
            return [str(item["id"]) for item in body["data"]]
        except (KeyError, TypeError):
            raise MllmBadResponse("the mllm's model list has no data[].id") from None

    async def model(self) -> str:
        """The served model name: configured, or the first one the mllm lists (cached)."""
        async with self._model_lock:
            if not self._model:
                models = await self.list_models()
                if not models:
                    raise MllmBadResponse("the mllm serves no model")
                self._model = models[0]
            return self._model

    async def _payload(
        self,
        messages: list[ChatMessage],
        max_tokens: int | None,
        temperature: float | None,
        *,
        stream: bool,
    ) -> dict[str, object]:
        """The chat completion request body; decoding settings left as None are the
        server's to choose."""
        payload: dict[str, object] = {
            "model": await self.model(),
            "messages": [m.to_openai() for m in messages],
            "stream": stream,
        }
        if stream:
            payload["stream_options"] = {"include_usage": True}  # usage in the last chunk
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if temperature is not None:
            payload["temperature"] = temperature
        return payload

    async def chat_stream(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ChatStream:
        """Start a streamed chat completion. Failing to start (unreachable, timeout, a
        status other than 200) raises MllmError here, before any content is read."""
        payload = await self._payload(messages, max_tokens, temperature, stream=True)
        started = time.perf_counter()
        request = self._http.build_request("POST", "chat/completions", json=payload)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise MllmTimeout(f"the mllm did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise MllmUnavailable(f"the mllm is unreachable ({type(exc).__name__})") from exc
        if response.status_code != 200:
            await response.aclose()
            raise MllmBadResponse(
                f"the mllm answered HTTP {response.status_code} to POST /chat/completions"
            )
        return ChatStream(response, str(payload["model"]), started)

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ChatResult:
        """One non-streaming chat completion; decoding settings left as None are the
        server's to choose."""
        payload = await self._payload(messages, max_tokens, temperature, stream=False)
        started = time.perf_counter()
        body = await self._request("POST", "chat/completions", json=payload)
        latency = time.perf_counter() - started
        try:
            choice = body["choices"][0]
            content = choice["message"]["content"] or ""
            if not isinstance(content, str):
                raise TypeError("content is not a string")
            usage = body.get("usage") or {}
            return ChatResult(
                content=content,
                model=str(body.get("model", payload["model"])),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                finish_reason=str(choice.get("finish_reason") or ""),
                latency_s=latency,
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise MllmBadResponse("the mllm's answer is not a chat completion") from None


class ChatStream:
    """A streaming chat completion that has started (status 200): iterate it (`async for`)
    for the content deltas; afterwards `result` holds the whole reply and its usage. Close
    it (or use it as an async context manager) to release the connection early."""

    def __init__(self, response: httpx.Response, model: str, started: float) -> None:
        self._response = response
        self._model = model
        self._started = started
        self.result: ChatResult | None = None

    @property
    def model(self) -> str:
        """The model that answers."""
        return self._model

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection."""
        await self._response.aclose()

    async def __aiter__(self) -> AsyncIterator[str]:
        content: list[str] = []
        usage: dict[str, Any] = {}
        finish_reason = ""
        try:
            async for line in self._response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # comments, event names, blank separators
                data = line.removeprefix("data:").strip()
                if data == "[DONE]":
                    break
                chunk = _json_chunk(data)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content") or ""
                    finish_reason = choice.get("finish_reason") or finish_reason
                    if delta:
                        content.append(delta)
                        yield delta
        except httpx.TimeoutException as exc:
            raise MllmTimeout(f"the mllm stopped streaming ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise MllmUnavailable(f"the mllm stream broke ({type(exc).__name__})") from exc
        finally:
            await self.aclose()
        self.result = ChatResult(
            content="".join(content),
            model=self._model,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=str(finish_reason),
            latency_s=time.perf_counter() - self._started,
        )


def _json_chunk(data: str) -> dict[str, Any]:
    """One `data:` payload of a chat completion stream, as a dict."""
    try:
        chunk = json.loads(data)
    except ValueError:
        raise MllmBadResponse("the mllm streamed invalid JSON") from None
    if not isinstance(chunk, dict):
        raise MllmBadResponse("the mllm streamed a chunk that is not an object")
    if "error" in chunk:
        raise MllmBadResponse("the mllm reported an error in its stream")
    return chunk
