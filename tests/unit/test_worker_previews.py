"""The latent-to-RGB map of previews (services/worker/previews.py) on known latents, and
the batch step callback's `on_latents` hook."""

from __future__ import annotations

import io
from typing import Any

import torch
from PIL import Image

from services.common.job_previews import PreviewEntry
from services.worker.pipelines.batching import BatchMember, DenoisingBatch
from services.worker.pipelines.common import ResolvedParams
from services.worker.previews import (
    PREVIEW_MAX_SIDE,
    SD15_LATENT_RGB,
    SDXL_LATENT_RGB,
    SDXL_LATENT_RGB_BIAS,
    latents_to_rgb,
    preview_jpeg,
)


def _pixel(value: float) -> int:
    return round((max(-1.0, min(1.0, value)) + 1) * 127.5)


def test_each_sd15_channel_maps_to_its_row_of_factors() -> None:
    latents = torch.zeros(4, 2, 4)
    for channel in range(4):
        latents[channel, channel // 2, channel % 2] = 1.0  # one pixel per channel
    rgb = latents_to_rgb(latents, sdxl=False)
    assert rgb.shape == (2, 4, 3) and rgb.dtype == torch.uint8
    for channel, row in enumerate(SD15_LATENT_RGB):
        assert rgb[channel // 2, channel % 2].tolist() == [_pixel(v) for v in row]
    assert rgb[1, 3].tolist() == [128, 128, 128]  # a zero latent is mid grey


def test_sdxl_uses_its_own_factors_and_bias_and_clamps() -> None:
    latents = torch.zeros(4, 1, 2)
    latents[:, 0, 0] = torch.tensor([1.0, 0.5, -1.0, 2.0])
    latents[0, 0, 1] = 10.0  # far out of range: white
    rgb = latents_to_rgb(latents, sdxl=True)
    weights = (1.0, 0.5, -1.0, 2.0)
    expected = [
        _pixel(sum(w * row[c] for w, row in zip(weights, SDXL_LATENT_RGB, strict=True))
               + SDXL_LATENT_RGB_BIAS[c])
        for c in range(3)
    ]  # fmt: skip
    assert rgb[0, 0].tolist() == expected
    assert rgb[0, 1].tolist() == [255, 255, 255]


def test_preview_jpeg_is_the_latent_size_capped() -> None:
    data, width, height = preview_jpeg(torch.randn(4, 8, 12), sdxl=False)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (width, height) == (12, 8)
    data, width, height = preview_jpeg(torch.randn(4, 128, 256), sdxl=True)
    assert (width, height) == (PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE // 2)
    assert Image.open(io.BytesIO(data)).size == (width, height)


def test_preview_entry_round_trips() -> None:
    entry = PreviewEntry(step=4, total=8, image_index=1, image_id="img_x", width=8, height=8)
    assert PreviewEntry.decode(entry.encode()) == entry


class _Progress:
    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []
        self.latents: list[tuple[int, int, int, int, bool]] = []

    def __call__(self, step: int, total: int) -> None:
        self.steps.append((step, total))

    def on_latents(
        self, index: int, image_step: int, step: int, total: int, latents: Any, sdxl: bool
    ) -> None:
        assert latents.shape == (4, 2, 2)
        self.latents.append((index, image_step, step, total, sdxl))


class _Pipeline:
    num_timesteps = 3
    text_encoder_2 = None


def test_batch_step_callback_passes_each_steps_latents_once_and_unchanged() -> None:
    params = ResolvedParams("p", "", 64, 64, 2, 1.0, 1, 2)  # 2 steps, 2 images
    progress = _Progress()
    batch = DenoisingBatch(_Pipeline(), [BatchMember(params, progress)], [])  # type: ignore[arg-type]
    latents = torch.randn(2, 4, 2, 2)  # the job's two images step together
    for evaluation in range(3):  # 3 evaluations mapped onto 2 steps (as PNDM does)
        kwargs = {"latents": latents}
        assert batch(_Pipeline(), evaluation, None, kwargs) is kwargs  # type: ignore[arg-type]
    assert progress.steps == [(2, 4), (4, 4), (4, 4)]
    assert progress.latents == [
        (0, 1, 2, 4, False),
        (1, 1, 2, 4, False),
        (0, 2, 4, 4, False),
        (1, 2, 4, 4, False),
    ]
