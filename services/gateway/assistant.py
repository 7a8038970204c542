"""Calls to the mllm shared by the chat and images areas, with their metrics."""

from __future__ import annotations

import time

from services.gateway.mllm_client import ChatMessage, ChatResult, MllmError
from services.gateway.state import GatewayState


def ask_mllm(state: GatewayState, messages: list[ChatMessage]) -> ChatResult:
    """One chat completion with the configured decoding settings; records latency and
    tokens. Raises MllmError (mapped to 502/503/504 by the error handlers)."""
    settings = state.settings
    metrics = state.metrics
    if settings.mllm_system_prompt:
        messages = [ChatMessage("system", settings.mllm_system_prompt), *messages]
    started = time.perf_counter()
    try:
        result = state.mllm.chat(
            messages, max_tokens=settings.mllm_max_tokens, temperature=settings.mllm_temperature
        )
    except MllmError as exc:
        metrics.mllm_request_duration.labels(type(exc).__name__).observe(
            time.perf_counter() - started
        )
        raise
    metrics.mllm_request_duration.labels("ok").observe(result.latency_s)
    metrics.mllm_tokens.labels("prompt").inc(result.prompt_tokens)
    metrics.mllm_tokens.labels("completion").inc(result.completion_tokens)
    return result
