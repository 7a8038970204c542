"""Whether a chat turn generates, and what that does to the mllm's reply (docs/router.md).

Who decides, first match wins: the request's `generate` field; an image task, named or
implied by the inputs (mask, outpaint, edit_method, control); otherwise the router, a
naive Bayes classifier of the message (services/gateway/routing).

What the decision does depends on the mllm's protocol:
- `plain` (a tag-less chat model): a generating turn asks the mllm for the prompt alone
  (the prompt-writing instruction) and starts the turn's jobs with it; any other turn is
  a chat turn and starts no job.
- `llmga` (the model writes <gen_image> blocks): the reply decides, unless the request
  said `generate`, or the guard (LLMGA_ROUTER_GUARD) is on. Then a turn that must not
  generate (`generate: false`, or the router says chat by at least LLMGA_ROUTER_CHAT_MARGIN)
  starts no job even if the reply has blocks, and a turn that must generate whose reply
  has none is asked once more (LLMGA_ROUTER_REASK_MESSAGE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from services.gateway.chat.protocol import ChatRequest
from services.gateway.http.errors import ApiError, invalid
from services.gateway.mllm.assistant import ask_mllm, reply_prompts
from services.gateway.mllm.client import ChatMessage, ChatResult
from services.gateway.mllm.generation_tags import parse_reply
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState

# The tasks a turn gets from its inputs when it names none and has no mask, outpaint,
# edit_method or control: text alone (t2i) or an image alone (similar). Only these turns
# may be chat turns; the others are image tasks by their inputs.
ROUTED_TASKS = frozenset({"t2i", "similar"})

Source = Literal["request", "task", "router"]
GuardAction = Literal["suppress", "reask"]


@dataclass(frozen=True)
class TurnRoute:
    """Whether a turn generates, who said so, and (router) with what log-odds."""

    generate: bool
    source: Source
    log_odds: float | None = None


def route_turn(state: GatewayState, request: ChatRequest, task_name: str) -> TurnRoute:
    """Decide (and count) whether the turn generates; 422 for `generate: false` on an
    image task."""
    if request.generate is not None:
        if not request.generate and (request.task is not None or task_name not in ROUTED_TASKS):
            raise invalid(
                f"generate: false makes a text-only turn, but the request asks for the "
                f"image task {task_name!r}; drop one of them",
                "generate",
            )
        route = TurnRoute(request.generate, "request")
    elif request.task is not None or task_name not in ROUTED_TASKS:
        route = TurnRoute(True, "task")
    else:
        odds = state.router.log_odds(request.message)
        route = TurnRoute(odds > 0, "router", odds)
    decision = "generate" if route.generate else "chat"
    state.metrics.router_decisions.labels(decision, route.source).inc()
    return route


def writes_prompt_only(settings: GatewaySettings, route: TurnRoute) -> bool:
    """Whether the mllm's reply to the turn is a generation prompt, not a reply to show:
    a generating turn of a plain-protocol mllm."""
    return settings.mllm_protocol == "plain" and route.generate


def guard_action(
    settings: GatewaySettings, route: TurnRoute, has_prompts: bool
) -> GuardAction | None:
    """What to change in an llmga reply: `suppress` its generation blocks, `reask` for
    some, or nothing. The request's `generate` always counts; the router and image tasks
    only with the guard on."""
    if route.source != "request" and not settings.router_guard:
        return None
    if route.generate:
        return None if has_prompts else "reask"
    clearly_chat = route.source == "request" or (
        route.log_odds is not None and route.log_odds <= -settings.router_chat_margin
    )
    return "suppress" if has_prompts and clearly_chat else None


@dataclass(frozen=True)
class RoutedReply:
    """A turn's answer after routing: the text shown, the prompts whose jobs start, the
    assistant turn as stored for the history, and the tokens of every mllm call."""

    text: str
    prompts: list[str]
    raw: str
    prompt_tokens: int
    completion_tokens: int


async def routed_reply(
    state: GatewayState, route: TurnRoute, messages: list[ChatMessage], result: ChatResult
) -> RoutedReply:
    """Apply the turn's route to the mllm's reply to `messages` (module docstring)."""
    settings = state.settings
    tokens = result.prompt_tokens, result.completion_tokens
    if writes_prompt_only(settings, route):
        prompts = reply_prompts(state, result.content)
        if not prompts:
            raise ApiError(502, "upstream_error", "the mllm wrote no generation prompt")
        text = settings.plain_reply_template.replace("{prompt}", prompts[0])
        # The history shows the prompt it wrote, so a follow-up ("now at night") can
        # rewrite it.
        return RoutedReply(text, prompts, text, *tokens)
    parsed = parse_reply(result.content)
    if settings.mllm_protocol == "plain":
        return RoutedReply(parsed.text, [], result.content, *tokens)
    action = guard_action(settings, route, bool(parsed.prompts))
    if action == "suppress":
        state.metrics.router_guard.labels("suppressed").inc()
        # A reply that was nothing but a block (a haiku "drawn") shows the block's text.
        text = parsed.text or "\n\n".join(parsed.prompts)
        # Stored without the blocks: the history must not show an image that was never made.
        return RoutedReply(text, [], text, *tokens)
    if action == "reask":
        state.metrics.router_guard.labels("reasked").inc()
        again = await ask_mllm(
            state,
            [
                *messages,
                ChatMessage("assistant", result.content),
                ChatMessage("user", settings.router_reask_message),
            ],
        )
        prompts = parse_reply(again.content).prompts
        if not prompts:
            state.metrics.router_guard.labels("reask_untagged").inc()
        # The shown reply stays the first one (it may already have been streamed); the
        # stored one carries the prompts, as if the model had written them at once.
        raw = result.content + "".join(f"\n<gen_image>{p}</gen_image>" for p in prompts)
        return RoutedReply(
            parsed.text,
            prompts,
            raw,
            tokens[0] + again.prompt_tokens,
            tokens[1] + again.completion_tokens,
        )
    return RoutedReply(parsed.text, parsed.prompts, result.content, *tokens)
