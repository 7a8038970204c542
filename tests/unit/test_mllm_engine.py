"""Local engine prompting and stop handling, without loading a model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from services.mllm.engine import ChatTurn, LocalEngine, find_stop, held_back
from services.mllm.openai.protocol import ChatCompletionRequest
from services.mllm.openai.serving import IMAGE_NOTE, OpenAIServingChat, RequestError
from services.mllm.settings import MllmSettings


class FakeTokenizer:
    bos_token = "<bos>"

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, Any]:
        return {"input_ids": list(range(len(text.split())))}


@pytest.fixture()
def engine() -> LocalEngine:
    return LocalEngine(model=SimpleNamespace(), tokenizer=FakeTokenizer())


def test_prompt_has_few_shot_examples_and_history(engine: LocalEngine) -> None:
    prompt = engine.render_prompt(
        [
            ChatTurn("user", "a husky astronaut"),
            ChatTurn("assistant", "Here it is. <gen_image> a husky in space </gen_image>"),
            ChatTurn("user", "now make it night"),
        ]
    )
    assert prompt.startswith("<bos>Below are conversations")
    assert "<gen_image>" in prompt.split("User: a husky astronaut")[0]  # few-shot examples
    assert prompt.endswith(
        "User: a husky astronaut\nLLMGA: Here it is. <gen_image> a husky in space </gen_image>\n\n"
        "User: now make it night\nLLMGA:"
    )


def test_system_message_replaces_the_default(engine: LocalEngine) -> None:
    prompt = engine.render_prompt([ChatTurn("system", "Custom."), ChatTurn("user", "hi")])
    assert prompt.startswith("<bos>Custom.\n")
    assert "Below are conversations" not in prompt


def test_find_stop_and_held_back() -> None:
    assert find_stop("abc\ndef", ["\n"]) == 3
    assert find_stop("abcSTOPx", ["\n", "STOP"]) == 3
    assert find_stop("abc", ["STOP"]) == -1
    assert held_back("abcST", ["STOP"]) == 2
    assert held_back("abcS", ["STOP", "\n"]) == 1
    assert held_back("abc", ["STOP"]) == 0


def _serving(engine: LocalEngine, **settings: Any) -> OpenAIServingChat:
    return OpenAIServingChat(engine, MllmSettings(**settings))


def test_images_become_a_note(engine: LocalEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[ChatTurn]] = []
    original = engine.render_prompt

    def recording(turns: list[ChatTurn]) -> str:
        seen.append(turns)
        return original(turns)

    monkeypatch.setattr(engine, "render_prompt", recording)
    request = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {"role": "system", "content": "Custom."},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                        {"type": "text", "text": "make it winter"},
                    ],
                },
            ],
            "max_completion_tokens": 8,
            "stop": "END",
        }
    )
    chat = _serving(engine).prepare(request)
    assert chat.ignored_images == 1
    assert chat.params.max_tokens == 8
    assert chat.params.stop == ("END",)
    assert seen[0] == [
        ChatTurn("system", "Custom."),
        ChatTurn("user", f"{IMAGE_NOTE}\nmake it winter"),
    ]


def test_prompt_too_long(engine: LocalEngine) -> None:
    request = ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": "word " * 500}]}
    )
    with pytest.raises(RequestError) as caught:
        _serving(engine, max_prompt_tokens=100).prepare(request)
    assert caught.value.status == 400
    assert caught.value.body.error.code == "context_length_exceeded"
