"""Inpainting and outpainting on the tiny inpainting model, in process: the unmasked pixels
come back exactly, sizes are right, and a seed reproduces its image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import (
    StableDiffusionInpaintPipeline,
)
from PIL import Image

from services.common.contract import GenerationRequest, Outpaint, Task
from services.worker.loading import load_pipeline
from services.worker.pipelines.inpainting import (
    InpaintParams,
    params_for_mask_image,
    run_inpainting,
)
from services.worker.pipelines.outpainting import resolve_outpaint_params
from services.worker.profiles import TINY_SD15_INPAINTING_DIRNAME, get_profile
from services.worker.restorers import COLOR_RESTORER
from services.worker.testing.tiny_models import build_tiny_sd15_inpainting

PROFILE = get_profile("tiny")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> StableDiffusionInpaintPipeline:
    models_dir = tmp_path_factory.mktemp("models")
    build_tiny_sd15_inpainting(models_dir / TINY_SD15_INPAINTING_DIRNAME)
    assert PROFILE.inpainting is not None
    loaded, _ = load_pipeline(
        StableDiffusionInpaintPipeline,
        PROFILE.inpainting,
        models_dir,
        torch.device("cpu"),
        torch.float32,
    )
    assert isinstance(loaded, StableDiffusionInpaintPipeline)
    return loaded


def photo(width: int, height: int) -> Image.Image:
    """A smooth colourful test image (a gradient plus a little texture)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 128)], axis=-1)
    pixels = pixels + rng.normal(0, 8, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def box_mask(width: int, height: int) -> Image.Image:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 : height * 3 // 4, width // 3 : width * 2 // 3] = 255
    return Image.fromarray(mask)


def inpaint_params(image: Image.Image, mask: Image.Image, **fields: object) -> InpaintParams:
    request = GenerationRequest(task=Task.TASK_INPAINT, prompt="a red apple", steps=4, seed=5)
    for name, value in fields.items():
        setattr(request, name, value)
    return params_for_mask_image(request, PROFILE, image, mask)


def test_inpaint_keeps_unmasked_pixels_exactly(pipeline: StableDiffusionInpaintPipeline) -> None:
    # Not a multiple of 8: the model runs on a padded canvas, the output has the input's size.
    image, mask = photo(100, 68), box_mask(100, 68)
    result = run_inpainting(pipeline, inpaint_params(image, mask, n=2))

    keep = np.asarray(mask) < 128
    assert [output.size for output in result.images] == [(100, 68), (100, 68)]
    for output in result.images:
        pixels = np.asarray(output)
        assert np.array_equal(pixels[keep], np.asarray(image)[keep])
        assert not np.array_equal(pixels[~keep], np.asarray(image)[~keep])  # generated
    assert result.seeds == [5, 6]


def test_same_seed_same_image_and_image_i_uses_seed_plus_i(
    pipeline: StableDiffusionInpaintPipeline,
) -> None:
    image, mask = photo(64, 64), box_mask(64, 64)
    pair = run_inpainting(pipeline, inpaint_params(image, mask, n=2)).images
    again = run_inpainting(pipeline, inpaint_params(image, mask, seed=5)).images
    second = run_inpainting(pipeline, inpaint_params(image, mask, seed=6)).images
    assert np.array_equal(np.asarray(again[0]), np.asarray(pair[0]))
    assert np.array_equal(np.asarray(second[0]), np.asarray(pair[1]))
    assert not np.array_equal(np.asarray(pair[0]), np.asarray(pair[1]))


def test_progress_counts_every_step_up_to_the_total(
    pipeline: StableDiffusionInpaintPipeline,
) -> None:
    image, mask = photo(64, 64), box_mask(64, 64)
    params = inpaint_params(image, mask, n=2, steps=6, strength=0.5)
    assert params.total_steps == 6  # int(6 x 0.5) per image
    seen: list[tuple[int, int]] = []
    run_inpainting(pipeline, params, lambda done, total: seen.append((done, total)))
    steps = [done for done, _ in seen]
    assert steps == sorted(steps) and steps[-1] == 6 and {t for _, t in seen} == {6}


def test_long_prompts_are_encoded_whole(pipeline: StableDiffusionInpaintPipeline) -> None:
    image, mask = photo(64, 64), box_mask(64, 64)
    result = run_inpainting(pipeline, inpaint_params(image, mask, prompt="a red apple " * 40))
    assert result.prompt_tokens == 200 and result.chunks == 3  # 75 + 75 + 50: none cut


def test_colour_restore_changes_only_the_masked_region(
    pipeline: StableDiffusionInpaintPipeline,
) -> None:
    image, mask = photo(64, 64), box_mask(64, 64)
    params = inpaint_params(image, mask)
    plain = np.asarray(run_inpainting(pipeline, params, restorer=None).images[0])
    restored = np.asarray(run_inpainting(pipeline, params, restorer=COLOR_RESTORER).images[0])
    keep = np.asarray(mask) < 128
    assert np.array_equal(plain[keep], restored[keep])
    assert not np.array_equal(plain[~keep], restored[~keep])


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"width": 64}, "width and height must be unset"),
        ({"strength": 1.5}, r"strength must be in \(0, 1\]"),
        ({"strength": 0.1}, "steps x strength must be at least 1"),
    ],
)
def test_bad_inpaint_requests_fail_clearly(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        inpaint_params(photo(64, 64), box_mask(64, 64), **fields)


def test_outpaint_extends_the_canvas_and_keeps_the_original(
    pipeline: StableDiffusionInpaintPipeline,
) -> None:
    image = photo(64, 48)
    request = GenerationRequest(
        task=Task.TASK_OUTPAINT,
        prompt="a wide landscape",
        steps=4,
        seed=9,
        outpaint=Outpaint(left=16, top=8, right=4, bottom=20),
    )
    params = resolve_outpaint_params(request, PROFILE, image)
    (output,) = run_inpainting(pipeline, params).images
    assert output.size == (64 + 16 + 4, 48 + 8 + 20)
    pixels = np.asarray(output)
    assert np.array_equal(pixels[8 : 8 + 48, 16 : 16 + 64], np.asarray(image))


def test_outpaint_takes_no_mask() -> None:
    request = GenerationRequest(
        task=Task.TASK_OUTPAINT, mask_image_id="img_x", outpaint=Outpaint(left=8)
    )
    with pytest.raises(ValueError, match="outpaint takes no mask"):
        resolve_outpaint_params(request, PROFILE, photo(64, 64))
