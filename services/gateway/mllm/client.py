"""A small asyncio client for the mllm's OpenAI Chat Completions API (whole replies or
streamed), on the `openai` package's AsyncOpenAI: a request waiting on the mllm holds no
thread, and one connection pool serves every request of the event loop.

Failures become one of three exceptions, which the API maps to 503 (unreachable),
504 (too slow) and 502 (bad answer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk


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
    """Talks to `<base_url>/chat/completions` and `<base_url>/models` through one
    AsyncOpenAI client (no retries of its own: a failure is the caller's to report)."""

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
        self._openai = AsyncOpenAI(
            base_url=base_url.rstrip("/"),
            # The package insists on a key; "EMPTY" is what vLLM's docs pass to a server
            # started without --api-key, which ignores the header.
            api_key=api_key or "EMPTY",
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            max_retries=0,
            http_client=httpx.AsyncClient(
                transport=transport,
                # No pool limit: every waiting chat turn holds one connection, as many as
                # the mllm server accepts (its own queue bounds them).
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            ),
        )
        self._model = model
        # Discovery runs once: concurrent first turns wait for it instead of each asking.
        self._model_lock = asyncio.Lock()
        # The client imports its resources (and their many schema modules) on first use:
        # here, at startup, not in the event loop while the first chat turns wait (that
        # import held every request of a 200-chat burst for about 0.3 s).
        _ = self._openai.models, self._openai.chat.completions

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._openai.close()

    async def list_models(self, timeout_s: float | None = None) -> list[str]:
        """Ids of the served models (`GET <base>/models`)."""
        with _mllm_errors("GET /models"):
            page = await self._openai.models.list(
                timeout=timeout_s if timeout_s is not None else openai.NOT_GIVEN
            )
        try:
            return [str(item.id) for item in page.data]
        except (AttributeError, TypeError):
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

    def _options(self, max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        """Decoding settings to send; those left as None are the server's to choose."""
        options: dict[str, Any] = {}
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        if temperature is not None:
            options["temperature"] = temperature
        return options

    async def chat_stream(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ChatStream:
        """Start a streamed chat completion. Failing to start (unreachable, timeout, a
        status other than 200) raises MllmError here, before any content is read."""
        model = await self.model()
        started = time.perf_counter()
        with _mllm_errors("POST /chat/completions"):
            stream = await self._openai.chat.completions.create(
                model=model,
                messages=_openai_messages(messages),
                stream=True,
                stream_options={"include_usage": True},  # usage in the last chunk
                **self._options(max_tokens, temperature),
            )
        return ChatStream(stream, model, started)

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ChatResult:
        """One non-streaming chat completion; decoding settings left as None are the
        server's to choose."""
        model = await self.model()
        started = time.perf_counter()
        with _mllm_errors("POST /chat/completions"):
            completion: ChatCompletion = await self._openai.chat.completions.create(
                model=model,
                messages=_openai_messages(messages),
                stream=False,
                **self._options(max_tokens, temperature),
            )
        latency = time.perf_counter() - started
        try:
            choice = completion.choices[0]
            content = choice.message.content or ""
            if not isinstance(content, str):
                raise TypeError("content is not a string")
            usage = completion.usage
            return ChatResult(
                content=content,
                model=str(completion.model or model),
                prompt_tokens=int(usage.prompt_tokens) if usage else 0,
                completion_tokens=int(usage.completion_tokens) if usage else 0,
                finish_reason=str(choice.finish_reason or ""),
                latency_s=latency,
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise MllmBadResponse("the mllm's answer is not a chat completion") from None


class ChatStream:
    """A streaming chat completion that has started (status 200): iterate it (`async for`)
    for the content deltas; afterwards `result` holds the whole reply and its usage. Close
    it (or use it as an async context manager) to release the connection early."""

    def __init__(
        self, stream: AsyncStream[ChatCompletionChunk], model: str, started: float
    ) -> None:
        self._stream = stream
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
        await self._stream.close()

    async def __aiter__(self) -> AsyncIterator[str]:
        content: list[str] = []
        prompt_tokens = completion_tokens = 0
        finish_reason = ""
        try:
            with _mllm_errors("the stream"):
                async for chunk in self._stream:
                    try:
                        if chunk.usage is not None:
                            prompt_tokens = int(chunk.usage.prompt_tokens)
                            completion_tokens = int(chunk.usage.completion_tokens)
                        choices = list(chunk.choices or [])
                        for choice in choices:
                            delta = (choice.delta.content if choice.delta else None) or ""
                            finish_reason = choice.finish_reason or finish_reason
                            if delta:
                                content.append(delta)
                                yield delta
                    except (AttributeError, TypeError, ValueError):
                        raise MllmBadResponse(
                            "the mllm streamed a chunk that is not a chat completion chunk"
                        ) from None
        finally:
            await self.aclose()
        self.result = ChatResult(
            content="".join(content),
            model=self._model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=str(finish_reason),
            latency_s=time.perf_counter() - self._started,
        )


def _openai_messages(messages: list[ChatMessage]) -> Any:
    """The messages as the OpenAI API takes them (typed dicts)."""
    return [m.to_openai() for m in messages]


@contextmanager
def _mllm_errors(what: str) -> Iterator[None]:
    """Turn the openai package's (and httpx's, raised while a stream is read) failures
    into MllmError: unreachable, too slow, or a bad answer."""
    try:
        yield
    except (openai.APITimeoutError, httpx.TimeoutException) as exc:
        raise MllmTimeout(f"the mllm did not answer in time ({what})") from exc
    except (openai.APIConnectionError, httpx.TransportError) as exc:
        raise MllmUnavailable(f"the mllm is unreachable ({what}: {type(exc).__name__})") from exc
    except openai.APIStatusError as exc:
        raise MllmBadResponse(f"the mllm answered HTTP {exc.status_code} to {what}") from exc
    except openai.APIError as exc:  # an error object in the stream, an unparsable body
        raise MllmBadResponse(f"the mllm reported an error ({what})") from exc
    except ValueError as exc:  # a stream chunk that is not JSON
        raise MllmBadResponse(f"the mllm's answer is not valid JSON ({what})") from exc
