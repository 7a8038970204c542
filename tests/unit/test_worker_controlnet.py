"""ControlNet (canny) in process: edge maps where the edges are, thresholds checked, and on
the tiny models the control image steers the output through the shared text-to-image
components; a ControlNet job is prepared from a real blob store."""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
import torch
from diffusers.pipelines.controlnet.pipeline_controlnet_sd_xl import (
    StableDiffusionXLControlNetPipeline,
)
from PIL import Image

from services.common.blob_store import RedisBlobStore
from services.common.contract import Control, ControlType, GenerationRequest, Task
from services.common.image_rules import CannyThresholds, resolve_canny_thresholds
from services.common.redis_keys import RedisKeys
from services.worker.control_images import canny_edges, control_image
from services.worker.job_preparation import prepare_job
from services.worker.loading import LoadedModels, load_models
from services.worker.pipelines.controlnet import resolve_controlnet_params, run_controlnet
from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image
from services.worker.profiles import ModelProfile, get_profile
from services.worker.task_table import model_revision
from services.worker.testing.tiny_models import build_profile_models

CPU = torch.device("cpu")
TINY = get_profile("tiny")
DEFAULTS = CannyThresholds(100, 200)


def square(value: int, size: int = 64) -> Image.Image:
    """A square of grey level `value` on black, rows and columns 16 to 47."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[16:48, 16:48] = value
    return Image.fromarray(pixels)


def load(profile: ModelProfile, models_dir_factory: pytest.TempPathFactory) -> LoadedModels:
    models_dir = models_dir_factory.mktemp("models")
    build_profile_models(profile, models_dir)
    return load_models(profile, models_dir, CPU, torch.float32, components={"controlnet"})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedModels]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small shared CPUs: one thread is much faster than two fighting
    yield load(TINY, tmp_path_factory)
    torch.set_num_threads(threads)


def request(steps: int = 3, seed: int = 7, **control: object) -> GenerationRequest:
    message = GenerationRequest(
        task=Task.TASK_CONTROLNET,
        prompt="a house by a lake",
        width=64,
        height=64,
        steps=steps,
        control=Control(**control),  # type: ignore[arg-type]
    )
    message.seed = seed
    return message


def pixels(result: object) -> np.ndarray:
    return np.stack([np.asarray(image) for image in result.images])  # type: ignore[attr-defined]


# -- control images -----------------------------------------------------------------------


def test_canny_edges_lie_on_the_squares_outline() -> None:
    edges = np.asarray(canny_edges(square(255), DEFAULTS))
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) == {0, 255}
    assert (edges == edges[..., :1]).all()  # the same map in every channel
    ys, xs = np.nonzero(edges[..., 0])
    on_outline = (np.isin(ys, (15, 16, 47, 48)) & (xs >= 15) & (xs <= 48)) | (
        np.isin(xs, (15, 16, 47, 48)) & (ys >= 15) & (ys <= 48)
    )
    assert len(ys) > 4 * 28 and on_outline.all()
    assert not edges[20:44, 20:44].any()  # nothing inside the flat square


def test_thresholds_decide_which_edges_count() -> None:
    faint = square(20)  # a step of 20 grey levels: a weak gradient
    assert not np.asarray(canny_edges(faint, DEFAULTS)).any()
    assert np.asarray(canny_edges(faint, resolve_canny_thresholds(50, 100))).any()


def test_thresholds_default_to_100_and_200() -> None:
    assert resolve_canny_thresholds(0, 0) == DEFAULTS
    assert resolve_canny_thresholds(150, 0) == CannyThresholds(150, 200)
    assert resolve_canny_thresholds(0, 255) == CannyThresholds(100, 255)


@pytest.mark.parametrize(("low", "high"), [(150, 100), (120, 120), (10, 256), (250, 0)])
def test_bad_thresholds_are_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="0 <= low < high <= 255"):
        resolve_canny_thresholds(low, high)


def test_the_control_image_is_resized_to_the_output() -> None:
    photo = square(255, size=32).resize((48, 32))
    edges = control_image(photo, (96, 64), preprocessed=False, thresholds=DEFAULTS)
    assert edges.size == (96, 64) and edges.mode == "RGB"
    given = Image.fromarray(np.asarray(canny_edges(square(255), DEFAULTS))[..., 0])  # greyscale
    kept = control_image(given, (64, 64), preprocessed=True, thresholds=DEFAULTS)
    assert kept.mode == "RGB" and np.array_equal(np.asarray(kept)[..., 0], np.asarray(given))


# -- the pipeline ---------------------------------------------------------------------------


def test_controlnet_shares_the_text_to_image_components(models: LoadedModels) -> None:
    assert models.controlnet is not None
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert getattr(models.controlnet, name) is getattr(models.text_to_image, name), name
    assert model_revision(models, GenerationRequest(task=Task.TASK_CONTROLNET)) == (
        f"{models.revision}+{models.controlnet_revision}"
    )
    assert models.controlnet_revision.startswith("tiny-")


def test_the_control_image_changes_the_output(models: LoadedModels) -> None:
    assert models.controlnet is not None
    outline = resolve_controlnet_params(request(), TINY, square(255))
    shifted_square = Image.fromarray(np.roll(np.asarray(square(255)), 12, axis=1))
    shifted = resolve_controlnet_params(request(), TINY, shifted_square)
    assert outline.conditioning_scale == 1.0  # the profile's default
    progress: list[tuple[int, int]] = []
    first = run_controlnet(models.controlnet, outline, lambda d, t: progress.append((d, t)))
    assert first.images[0].size == (64, 64) and progress[-1] == (3, 3)
    assert np.array_equal(pixels(first), pixels(run_controlnet(models.controlnet, outline)))
    moved = pixels(run_controlnet(models.controlnet, shifted))
    # Not a rounding accident: the edges moved, so a good share of the pixels did.
    assert (pixels(first) != moved).mean() > 0.05


def test_conditioning_scale_zero_is_plain_text_to_image(models: LoadedModels) -> None:
    # A zero scale multiplies every ControlNet residual by 0 before the UNet adds it: the
    # UNet computes exactly what it computes without a ControlNet.
    assert models.controlnet is not None
    params = resolve_controlnet_params(request(conditioning_scale=0.0), TINY, square(255))
    plain = run_text_to_image(models.text_to_image, resolve_params(request(), TINY))
    assert np.array_equal(pixels(run_controlnet(models.controlnet, params)), pixels(plain))


@pytest.mark.parametrize("scale", [-0.1, 2.5, float("nan")])
def test_conditioning_scale_is_limited(scale: float) -> None:
    with pytest.raises(ValueError, match="conditioning_scale must be between 0 and 2"):
        resolve_controlnet_params(request(conditioning_scale=scale), TINY, square(255))


def test_the_output_size_is_the_requests_or_the_profiles() -> None:
    sized = resolve_controlnet_params(request(), TINY, square(255, size=100))
    assert (sized.width, sized.height) == sized.control_image.size == (64, 64)
    default = request()
    default.ClearField("width")
    default.ClearField("height")
    params = resolve_controlnet_params(default, TINY, square(255))
    assert params.control_image.size == (TINY.width, TINY.height)


def test_only_canny_is_served() -> None:
    with pytest.raises(ValueError, match="only canny"):
        resolve_controlnet_params(request(type=7), TINY, square(255))  # an unknown type
    assert resolve_controlnet_params(request(type=ControlType.CONTROL_TYPE_CANNY), TINY, square(9))


def test_the_sdxl_controlnet_runs_on_the_sdxl_components(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    profile = get_profile("tiny-sdxl")
    sdxl = load(profile, tmp_path_factory)
    assert isinstance(sdxl.controlnet, StableDiffusionXLControlNetPipeline)
    assert sdxl.controlnet.text_encoder_2 is sdxl.text_to_image.text_encoder_2
    params = resolve_controlnet_params(request(), profile, square(255))
    assert params.conditioning_scale == 0.5  # the SDXL profile's default
    (image,) = run_controlnet(sdxl.controlnet, params).images
    assert image.size == (64, 64)


# -- the job --------------------------------------------------------------------------------


@pytest.fixture
def blobs() -> Iterator[RedisBlobStore]:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = RedisKeys(f"test-controlnet-{uuid.uuid4().hex[:12]}")
    yield RedisBlobStore(client, keys, ttl_s=60)
    for key in client.scan_iter(match=f"{keys.prefix}:*"):
        client.delete(key)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_controlnet_job_runs_from_the_blob_store(
    models: LoadedModels, blobs: RedisBlobStore
) -> None:
    job_request = request(preprocessed=True)
    job_request.tenant = "t1"
    job_request.input_image_ids.append(blobs.put("t1", png(square(255, size=32))))
    job = prepare_job(job_request, models, blobs)
    (image,) = job.run(None).images
    assert image.size == (64, 64)

    del job_request.input_image_ids[:]
    with pytest.raises(ValueError, match="controlnet needs a control image"):
        prepare_job(job_request, models, blobs)
    without = dataclasses.replace(models, controlnet=None)
    with pytest.raises(NotImplementedError, match="profile tiny has no ControlNet"):
        prepare_job(job_request, without, blobs)
