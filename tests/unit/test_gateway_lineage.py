"""Unit tests of the similar-image output size and the chat turn's task inference."""

from __future__ import annotations

import pytest

from services.gateway.chat.protocol import ChatRequest
from services.gateway.chat.serving import turn_task
from services.gateway.tasks.similar import similar_size


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((512, 512), (512, 512)),
        ((83, 66), (80, 64)),  # rounded down to multiples of 8
        ((70, 40), (64, 64)),  # clamped up to the minimum
        ((4096, 2048), (2048, 1024)),  # scaled down, aspect kept
        ((3000, 100), (2048, 64)),
        ((1000, 999), (1000, 992)),
    ],
)
def test_similar_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert similar_size(*size, 64, 2048) == expected


def test_similar_size_with_limits_not_multiples_of_8() -> None:
    assert similar_size(10, 5000, 60, 1030) == (64, 1024)


@pytest.mark.parametrize(
    ("payload", "task"),
    [
        ({}, "t2i"),
        ({"images": [{"id": "img_a"}]}, "similar"),
        ({"outpaint": {"left": 32}}, "outpaint"),
        ({"mask": {"id": "img_m"}}, "inpaint"),
        ({"task": "similar"}, "similar"),
    ],
)
def test_turn_task(payload: dict[str, object], task: str) -> None:
    assert turn_task(ChatRequest.model_validate({"message": "x", **payload})) == task
