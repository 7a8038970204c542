"""What the router's decision does to an LLMGA reply (the guard), and how a tag-less
model's reply becomes a generation prompt."""

from __future__ import annotations

import pytest

from services.gateway.chat.turn_routing import TurnRoute, guard_action
from services.gateway.mllm.prompt_writing import clean_prompt
from services.gateway.settings import GatewaySettings

GUARD = GatewaySettings(router_guard=True, router_chat_margin=2.0)
NO_GUARD = GatewaySettings(router_guard=False)


@pytest.mark.parametrize(
    ("settings", "route", "has_prompts", "action"),
    [
        # The router, guard on: clear chat drops blocks; borderline chat is left alone.
        (GUARD, TurnRoute(False, "router", -2.5), True, "suppress"),
        (GUARD, TurnRoute(False, "router", -2.0), True, "suppress"),
        (GUARD, TurnRoute(False, "router", -1.9), True, None),
        (GUARD, TurnRoute(False, "router", -9.0), False, None),
        (GUARD, TurnRoute(True, "router", 0.3), False, "reask"),
        (GUARD, TurnRoute(True, "router", 0.3), True, None),
        # An image task generates: a reply without blocks is asked again.
        (GUARD, TurnRoute(True, "task"), False, "reask"),
        # Guard off: the reply decides, whatever the router says.
        (NO_GUARD, TurnRoute(False, "router", -9.0), True, None),
        (NO_GUARD, TurnRoute(True, "router", 9.0), False, None),
        (NO_GUARD, TurnRoute(True, "task"), False, None),
        # The request's `generate` counts with the guard off too.
        (NO_GUARD, TurnRoute(False, "request"), True, "suppress"),
        (NO_GUARD, TurnRoute(True, "request"), False, "reask"),
        (GUARD, TurnRoute(True, "request"), True, None),
    ],
)
def test_guard_action(
    settings: GatewaySettings, route: TurnRoute, has_prompts: bool, action: str | None
) -> None:
    assert guard_action(settings, route, has_prompts) == action


@pytest.mark.parametrize(
    ("reply", "prompt"),
    [
        (
            "A red fox asleep in fresh snow, soft light.",
            "A red fox asleep in fresh snow, soft light.",
        ),
        ('  "A red fox asleep in snow"  ', "A red fox asleep in snow"),
        ("Prompt: a red fox, watercolor", "a red fox, watercolor"),
        ("Image description - a red fox", "a red fox"),
        ("```\na red fox\n```", "a red fox"),
        ("Sure! <gen_image> a red fox </gen_image>", "a red fox"),
        ("“a red   fox”\n", "a red fox"),
        ("   ", ""),
    ],
)
def test_clean_prompt(reply: str, prompt: str) -> None:
    assert clean_prompt(reply) == prompt
