"""Which previews a streamed OpenAI generation sends as partial images."""

from __future__ import annotations

import pytest

from services.common.job_previews import PreviewEntry
from services.gateway.openai_images.streaming import wants_partial


def _picked(steps: list[int], total: int, partial_images: int) -> list[int]:
    sent: list[int] = []
    for step in steps:
        entry = PreviewEntry(step, total, 0, "img_x", 8, 8)
        if wants_partial(entry, len(sent), partial_images):
            sent.append(step)
    return sent


@pytest.mark.parametrize(
    ("steps", "total", "partial_images", "picked"),
    [
        ([5, 10, 15, 20, 25, 30], 30, 2, [10, 20]),  # after 1/3 and 2/3 of the job
        ([5, 10, 15, 20, 25, 30], 30, 3, [10, 15, 25]),  # after 1/4, 2/4, 3/4
        ([5, 10, 15, 20, 25, 30], 30, 1, [15]),
        ([5, 10, 15, 20, 25, 30], 30, 0, []),
        ([2, 4], 4, 3, [2, 4]),  # fewer previews than asked: each one at most once
        ([], 30, 3, []),
    ],
)
def test_partials_are_spread_over_the_job(
    steps: list[int], total: int, partial_images: int, picked: list[int]
) -> None:
    assert _picked(steps, total, partial_images) == picked
