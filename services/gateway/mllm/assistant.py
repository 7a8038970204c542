"""Calls to the mllm shared by the chat and images areas, with their metrics."""

from __future__ import annotations

import time

from services.gateway.mllm.client import ChatMessage, ChatResult, ChatStream, MllmError
from services.gateway.mllm.generation_tags import parse_reply
from services.gateway.mllm.prompt_writing import clean_prompt
from services.gateway.state import GatewayState


def _with_system_prompt(
    state: GatewayState, messages: list[ChatMessage], instruction: str | None
) -> list[ChatMessage]:
    """One system message first (the configured one, then `instruction`; none if both are
    empty: chat templates take a single system message), then `messages`."""
    system = "\n\n".join(filter(None, [state.settings.mllm_system_prompt, instruction]))
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


async def ask_mllm(
    state: GatewayState, messages: list[ChatMessage], instruction: str | None = None
) -> ChatResult:
    """One chat completion with the configured decoding settings (and `instruction` added
    to the system message); records latency and tokens. Raises MllmError (mapped to
    502/503/504 by the error handlers)."""
    settings = state.settings
    started = time.perf_counter()
    try:
        result = await state.mllm.chat(
            _with_system_prompt(state, messages, instruction),
            max_tokens=settings.mllm_max_tokens,
            temperature=settings.mllm_temperature,
        )
    except MllmError as exc:
        record_mllm_failure(state, exc, started)
        raise
    record_mllm_success(state, result)
    return result


def prompt_instruction(state: GatewayState) -> str | None:
    """The instruction that makes a reply a generation prompt: the plain protocol's
    prompt-writing instruction; None for LLMGA models, which write tagged prompts anyway."""
    settings = state.settings
    return settings.prompt_instruction if settings.mllm_protocol == "plain" else None


def reply_prompts(state: GatewayState, content: str) -> list[str]:
    """The generation prompts of a reply to a prompt-asking call (`prompt_instruction`):
    llmga, its tagged blocks; plain, the whole reply, cleaned (none if empty)."""
    if state.settings.mllm_protocol == "plain":
        prompt = clean_prompt(content)
        return [prompt] if prompt else []
    return parse_reply(content).prompts


async def ask_for_prompts(
    state: GatewayState, messages: list[ChatMessage]
) -> tuple[ChatResult, list[str]]:
    """Ask the mllm for generation prompts in the configured protocol (`reply_prompts`)."""
    result = await ask_mllm(state, messages, prompt_instruction(state))
    return result, reply_prompts(state, result.content)


async def start_mllm_stream(
    state: GatewayState, messages: list[ChatMessage], instruction: str | None = None
) -> ChatStream:
    """Start a streamed chat completion (same settings as `ask_mllm`). Raises MllmError
    if it cannot start; the caller records the outcome once the stream ends."""
    settings = state.settings
    started = time.perf_counter()
    try:
        return await state.mllm.chat_stream(
            _with_system_prompt(state, messages, instruction),
            max_tokens=settings.mllm_max_tokens,
            temperature=settings.mllm_temperature,
        )
    except MllmError as exc:
        record_mllm_failure(state, exc, started)
        raise
