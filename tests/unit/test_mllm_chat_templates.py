"""The vLLM chat templates render exactly the prompts LLaVA's conversation code builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES = Path(__file__).resolve().parents[2] / "services" / "mllm" / "chat_templates"

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
LLMGA_SYSTEM = (
    "You are LLMGA, a useful language and vision generation assistant. You can generate images "
    "according to the user's requirements. If the user wants you to inpaint or outpaint images, "
    "please imagine what is in the black mask parts of the image. If image generation is "
    "required, please provide a detailed description of the generated images in the form of "
    "<gen_image> DETAILED DESCRIPTION </gen_image>."
)


def _raise(message: str) -> None:
    raise TemplateError(message)


def render(name: str, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    """Render the way vLLM (via transformers' apply_chat_template) does."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    template = env.from_string((TEMPLATES / f"{name}.jinja").read_text())
    return template.render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token="<s>",
        eos_token="</s>",
    )


def image_parts(text: str) -> list[dict[str, Any]]:
    return [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": text},
    ]


SINGLE = [{"role": "user", "content": "a husky astronaut"}]
MULTI = [
    {"role": "user", "content": "a husky astronaut"},
    {"role": "assistant", "content": "Sure. <gen_image> a husky in a space suit </gen_image>"},
    {"role": "user", "content": "now make it night"},
]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (SINGLE, f"<s>{VICUNA_SYSTEM} USER: a husky astronaut ASSISTANT:"),
        (
            MULTI,
            f"<s>{VICUNA_SYSTEM} USER: a husky astronaut ASSISTANT: Sure. <gen_image> a husky in "
            "a space suit </gen_image></s>USER: now make it night ASSISTANT:",
        ),
        (
            [{"role": "user", "content": image_parts("describe this image")}],
            f"<s>{VICUNA_SYSTEM} USER: <image>\ndescribe this image ASSISTANT:",
        ),
        (
            [{"role": "user", "content": image_parts("make the sky red")}, *MULTI[1:]],
            f"<s>{VICUNA_SYSTEM} USER: <image>\nmake the sky red ASSISTANT: Sure. <gen_image> a "
            "husky in a space suit </gen_image></s>USER: now make it night ASSISTANT:",
        ),
        (
            [{"role": "system", "content": "Be brief."}, *SINGLE],
            "<s>Be brief. USER: a husky astronaut ASSISTANT:",
        ),
        (
            # vLLM's "string" content format puts "<image>" into the text itself.
            [{"role": "user", "content": "<image>\ndescribe this image"}],
            f"<s>{VICUNA_SYSTEM} USER: <image>\ndescribe this image ASSISTANT:",
        ),
    ],
    ids=["single", "multi", "image", "image-multi", "system", "string-image"],
)
def test_llava_v1(messages: list[dict[str, Any]], expected: str) -> None:
    assert render("llava_v1", messages) == expected


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (SINGLE, f"<s>[INST] <<SYS>>\n{LLMGA_SYSTEM}\n<</SYS>>\n\na husky astronaut [/INST]"),
        (
            MULTI,
            f"<s>[INST] <<SYS>>\n{LLMGA_SYSTEM}\n<</SYS>>\n\na husky astronaut [/INST] Sure. "
            "<gen_image> a husky in a space suit </gen_image> </s><s>[INST] now make it night "
            "[/INST]",
        ),
        (
            [{"role": "user", "content": image_parts("describe this image")}],
            f"<s>[INST] <<SYS>>\n{LLMGA_SYSTEM}\n<</SYS>>\n\n<image>\ndescribe this image [/INST]",
        ),
        (
            [{"role": "user", "content": image_parts("make the sky red")}, *MULTI[1:]],
            f"<s>[INST] <<SYS>>\n{LLMGA_SYSTEM}\n<</SYS>>\n\n<image>\nmake the sky red [/INST] "
            "Sure. <gen_image> a husky in a space suit </gen_image> </s><s>[INST] now make it "
            "night [/INST]",
        ),
        (
            [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, *SINGLE],
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\na husky astronaut [/INST]",
        ),
    ],
    ids=["single", "multi", "image", "image-multi", "system"],
)
def test_llava_llama_2(messages: list[dict[str, Any]], expected: str) -> None:
    assert render("llava_llama_2", messages) == expected


@pytest.mark.parametrize("name", ["llava_v1", "llava_llama_2"])
def test_image_in_later_turn_goes_to_first_user_turn(name: str) -> None:
    messages: list[dict[str, Any]] = [
        *MULTI[:2],
        {"role": "user", "content": image_parts("now make it night")},
    ]
    prompt = render(name, messages)
    assert prompt.count("<image>") == 1
    assert prompt.index("<image>\na husky astronaut") < prompt.index("now make it night")


@pytest.mark.parametrize("name", ["llava_v1", "llava_llama_2"])
def test_image_only_part(name: str) -> None:
    prompt = render(
        name, [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    )
    assert "<image>\nhi [/INST]" in prompt or "USER: <image>\nhi ASSISTANT:" in prompt


@pytest.mark.parametrize("name", ["llava_v1", "llava_llama_2"])
@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "tool", "content": "x"}],
        [{"role": "assistant", "content": "x"}],
        [*SINGLE, *SINGLE],
    ],
    ids=["unknown-role", "assistant-first", "no-alternation"],
)
def test_bad_conversations_raise(name: str, messages: list[dict[str, Any]]) -> None:
    with pytest.raises(TemplateError):
        render(name, messages)
