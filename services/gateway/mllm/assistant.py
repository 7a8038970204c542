"""Calls to the mllm shared by the chat and images areas, with their metrics."""

from __future__ import annotations

import time

from services.gateway.mllm.client import ChatMessage, ChatResult, ChatStream, MllmError
from services.gateway.state import GatewayState


def _with_system_prompt(state: GatewayState, messages: list[ChatMessage]) -> list[ChatMessage]:
    """The configured system message (if any) first, then `messages`."""
    system = state.settings.mllm_system_prompt
    return [ChatMessage("system", system), *messages] if system else messages


def record_mllm_failure(state: GatewayState, error: MllmError, started: float) -> None:
    """Count a failed chat completion by its kind (MllmTimeout, ...)."""
    state.metrics.mllm_request_duration.labels(type(error).__name__).observe(
        time.perf_counter() - started
    )


def record_mllm_success(state: GatewayState, result: ChatResult) -> None:
    """Count a chat completion's latency and tokens."""
    metrics = state.metrics
    metrics.mllm_request_duration.labels("ok").observe(result.latency_s)
    metrics.mllm_tokens.labels("prompt").inc(result.prompt_tokens)
    metrics.mllm_tokens.labels("completion").inc(result.completion_tokens)


async def ask_mllm(state: GatewayState, messages: list[ChatMessage]) -> ChatResult:
    """One chat completion with the configured decoding settings; records latency and
    tokens. Raises MllmError (mapped to 502/503/504 by the error handlers)."""
    settings = state.settings
    started = time.perf_counter()
    try:
        result = await state.mllm.chat(
            _with_system_prompt(state, messages),
            max_tokens=settings.mllm_max_tokens,
            temperature=settings.mllm_temperature,
        )
    except MllmError as exc:
        record_mllm_failure(state, exc, started)
        raise
    record_mllm_success(state, result)
    return result


async def start_mllm_stream(state: GatewayState, messages: list[ChatMessage]) -> ChatStream:
    """Start a streamed chat completion (same settings as `ask_mllm`). Raises MllmError
    if it cannot start; the caller records the outcome once the stream ends."""
    settings = state.settings
    started = time.perf_counter()
    try:
        return await state.mllm.chat_stream(
            _with_system_prompt(state, messages),
            max_tokens=settings.mllm_max_tokens,
            temperature=settings.mllm_temperature,
        )
    except MllmError as exc:
        record_mllm_failure(state, exc, started)
        raise
