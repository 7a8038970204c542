"""Instruction editing on the tiny SD 1.5 model, in process: inversion reconstructs the
input, prompt-to-prompt with an unchanged caption changes nothing, DiffEdit keeps what is
outside its mask, and bad requests fail with clear messages.

Random weights make the edits themselves meaningless, so the tests check the properties
that hold for any weights. The images are 64x64 (8x8 latents) and schedules 4-6 steps.
"""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import redis
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from PIL import Image

from services.common.blob_store import RedisBlobStore
from services.common.contract import EditMethod, GenerationRequest, Task
from services.common.redis_keys import RedisKeys
from services.worker.editing.attention_control import position_map
from services.worker.editing.captions import EncodedCaptions, encode_captions
from services.worker.editing.diffedit_mask import diffedit_mask
from services.worker.editing.inversion import (
    ddim_invert,
    ddim_sample,
    ddim_schedule,
    direct_inversion,
)
from services.worker.job_preparation import prepare_job
from services.worker.loading import LoadedModels, load_models
from services.worker.pipelines.common import decode_latents, image_generator
from services.worker.pipelines.editing import (
    EditParams,
    edit_with_diffedit,
    encode_image,
    pixel_mask,
    resolve_edit_params,
    run_edit,
)
from services.worker.pipelines.inpainting import pad_image_to_latent_grid
from services.worker.profiles import TINY_SD15_DIRNAME, ModelSource, get_profile
from tests.support.tiny_sd15 import tiny_sd15_models_dir
from tests.support.torch_threads import one_torch_thread

PROFILE = get_profile("tiny")
CPU = torch.device("cpu")
SOURCE = "a red apple on a wooden table"
TARGET = "a green pear on a wooden table"
# Several 75-token chunks: long captions must be encoded and controlled whole.
LONG = ", ".join(["a red apple on a wooden table in the warm light of a quiet kitchen"] * 12)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models() -> LoadedModels:
    return load_models(PROFILE, tiny_sd15_models_dir(), CPU, torch.float32, components={"editing"})


@pytest.fixture(scope="module")
def pipeline(models: LoadedModels) -> StableDiffusionPipeline:
    assert models.editing is not None
    return models.editing


def photo(width: int = 64, height: int = 64) -> Image.Image:
    """A smooth gradient with a little texture."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 / width, y * 255 / height, np.full_like(x, 128)], axis=-1)
    return Image.fromarray(
        np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    )


def edit_request(
    target: str = TARGET, source: str = SOURCE, method: int = EditMethod.EDIT_METHOD_P2P
) -> GenerationRequest:
    request = GenerationRequest(task=Task.TASK_EDIT, prompt=target, steps=5, seed=11)
    request.edit.source_caption = source
    request.edit.instruction = "make it a pear"
    request.edit.method = method  # type: ignore[assignment]
    return request


def edit_params(image: Image.Image | None = None, **fields: object) -> EditParams:
    request = edit_request(**fields)  # type: ignore[arg-type]
    return resolve_edit_params(request, PROFILE, image or photo())


def captions(pipeline: StableDiffusionPipeline, source: str, target: str) -> EncodedCaptions:
    return encode_captions(pipeline.tokenizer, pipeline.text_encoder, source, target, "", CPU, True)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@torch.no_grad()
def reconstruction(pipeline: StableDiffusionPipeline, image: Image.Image) -> np.ndarray:
    """The input through the VAE and back: what an edit that changes nothing returns."""
    (decoded,) = decode_latents(pipeline, encode_image(pipeline, image), image_generator(0))
    return pixels(decoded)


# -- inversion --------------------------------------------------------------------------------


@torch.no_grad()
def test_inversion_then_regeneration_with_the_source_caption_reconstructs_the_latent(
    pipeline: StableDiffusionPipeline,
) -> None:
    latents = encode_image(pipeline, photo())
    encoded = captions(pipeline, SOURCE, SOURCE)
    schedule = ddim_schedule(dict(pipeline.scheduler.config), 6)
    trajectory = ddim_invert(pipeline.unet, schedule, latents, encoded.source_embeds, 6)

    def regenerate(guidance: float, exact: bool) -> torch.Tensor:
        return ddim_sample(
            pipeline.unet,
            schedule,
            trajectory[-1],
            encoded.source_embeds,
            encoded.negative_embeds if guidance > 1 else None,
            guidance,
            start=6,
            fix_step=direct_inversion(trajectory) if exact else None,
        )

    scale = latents.abs().max().item()
    # Direct Inversion puts the latent back on the trajectory after every step, so it ends
    # on point 0, the input, up to float32 rounding of the offsets (~1e-7 relative; 1e-5
    # leaves room for rounding accumulated over the steps). It holds at any guidance.
    for guidance in (1.0, 7.5):
        error = (regenerate(guidance, exact=True) - latents).abs().max().item()
        assert error <= 1e-5 * scale, (guidance, error)
    # Plain DDIM inversion does not reconstruct on random weights: the noise predicted at
    # neighbouring points of the trajectory is unrelated, so the error is larger than the
    # latent itself (measured: RMS 1.0-1.4 for 6-100 steps, the latent's RMS 0.04). The test
    # below shows the approximation with a model that is consistent.
    plain = (regenerate(1.0, exact=False) - latents).abs().max().item()
    assert plain > 10 * scale  # measured: 31x the latent's largest value


class GaussianDataOracle:
    """The exact noise prediction for data distributed N(mean, std^2) per element: a
    stand-in for a trained UNet whose predictions are consistent along a trajectory (the
    property DDIM inversion relies on). eps(z, t) = sqrt(1-a) (z - sqrt(a) mean) /
    (a std^2 + 1 - a)."""

    def __init__(self, alphas_cumprod: torch.Tensor, mean: float, std: float) -> None:
        self.alphas_cumprod, self.mean, self.std = alphas_cumprod, mean, std

    def __call__(
        self, latents: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> SimpleNamespace:
        alpha = float(self.alphas_cumprod[int(timestep)])
        variance = alpha * self.std**2 + 1 - alpha
        noise = (1 - alpha) ** 0.5 * (latents - alpha**0.5 * self.mean) / variance
        return SimpleNamespace(sample=noise)


def test_plain_ddim_inversion_approximates_and_converges_with_steps(
    pipeline: StableDiffusionPipeline,
) -> None:
    """With consistent predictions, plain DDIM inversion (guidance 1) reconstructs only
    approximately: each inversion step uses the prediction at the point it starts from,
    sampling the one at the point it ends on. The error is first order in the step size."""
    scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    oracle = GaussianDataOracle(scheduler.alphas_cumprod, mean=0.3, std=0.5)
    latents = 0.3 + 0.5 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = []
    for steps in (10, 50):
        schedule = ddim_schedule(dict(pipeline.scheduler.config), steps)
        unet: Any = oracle
        trajectory = ddim_invert(unet, schedule, latents, latents, steps)
        out = ddim_sample(unet, schedule, trajectory[-1], latents, None, 1.0, start=steps)
        errors.append((out - latents).abs().max().item() / latents.abs().max().item())
    # Measured: 15% of the latent's largest value at 10 steps, 2.9% at 50 (first order: 5x
    # the steps, ~1/5 the error). Bounds: at least 3x smaller, and under 5% at 50 steps.
    assert errors[1] < errors[0] / 3, errors
    assert errors[1] <= 0.05, errors


# -- prompt-to-prompt ---------------------------------------------------------------------------


def test_p2p_with_the_source_caption_as_target_returns_the_reconstruction(
    pipeline: StableDiffusionPipeline,
) -> None:
    image = photo()
    expected = reconstruction(pipeline, image)
    # With guidance (4 batch rows, the conditional pair controlled) and without (2 rows).
    for caption, guidance in ((SOURCE, 7.5), (SOURCE, 1.0), (LONG, 7.5)):
        params = dataclasses.replace(
            edit_params(image, target=caption, source=caption), guidance_scale=guidance
        )
        result = run_edit(pipeline, params)
        assert result.edit_method_used == "p2p" and result.source_prompt_used == caption
        # Latents equal up to float rounding: decoded pixels within one level.
        assert np.abs(pixels(result.images[0]) - expected).max() <= 1
    assert result.chunks == -(-result.prompt_tokens // 75) >= 2  # encoded whole


def test_token_alignment_maps_shared_tokens_across_chunks() -> None:
    # Source: 80 tokens; target: one token inserted after token 2, source token 76
    # replaced. Token k sits at position 1 + k (chunk 0) or 78 + k - 75 (chunk 1).
    source = list(range(100, 180))
    target = source[:3] + [999] + source[3:76] + [998] + source[77:]
    sources, copies = position_map(source, target, chunk_size=75, chunk_length=77, chunks=2)
    assert copies[1] and sources[1] == 1  # token 0 -> token 0
    assert not copies[4]  # the inserted token keeps its own attention
    assert copies[5] and sources[5] == 4  # target token 4 = source token 3
    # Target token 75 = source token 74: chunk 1 in the target, chunk 0 in the source.
    assert copies[78] and sources[78] == 75
    assert copies[79] and sources[79] == 78  # target 76 = source 75, both in chunk 1
    assert not copies[80]  # target token 77 is the replacement
    assert copies[81] and sources[81] == 80  # target 78 = source 77
    # BOS, EOS and padding copy from the same position.
    assert copies[0] and sources[0] == 0 and copies[76] and sources[76] == 76


def test_p2p_with_another_target_changes_the_image_and_restores_the_unet(
    pipeline: StableDiffusionPipeline,
) -> None:
    image = photo(76, 68)  # not a multiple of 8: padded for the model, cropped back
    expected = reconstruction(pipeline, pad_image_to_latent_grid(image))[:68, :76]
    for source, target in ((SOURCE, TARGET), (SOURCE, LONG)):  # 1 chunk vs several too
        (edited,) = run_edit(pipeline, edit_params(image, target=target, source=source)).images
        assert edited.size == (76, 68)
        assert np.abs(pixels(edited) - expected).mean() > 1
    # The attention processors are the UNet's own again: later jobs are not controlled.
    processors = pipeline.unet.attn_processors.values()
    assert all(isinstance(processor, AttnProcessor2_0) for processor in processors)


# -- DiffEdit -------------------------------------------------------------------------------------


@torch.no_grad()
def test_diffedit_mask_is_empty_for_identical_captions(pipeline: StableDiffusionPipeline) -> None:
    latents = encode_image(pipeline, photo())
    schedule = ddim_schedule(dict(pipeline.scheduler.config), 5)
    same = captions(pipeline, SOURCE, SOURCE)
    mask = diffedit_mask(
        pipeline.unet, schedule, latents, same.source_embeds, same.target_embeds, image_generator(1)
    )
    assert mask.shape == (1, 1, 8, 8) and not mask.any()

    # An edit with an empty mask keeps every pixel of the input.
    image = photo()
    params = edit_params(image, target=SOURCE, method=EditMethod.EDIT_METHOD_DIFFEDIT)
    (output,) = run_edit(pipeline, params).images
    assert np.array_equal(np.asarray(output), np.asarray(image))


@torch.no_grad()
def test_diffedit_keeps_latents_and_pixels_outside_its_mask(
    pipeline: StableDiffusionPipeline,
) -> None:
    image = photo()
    params = edit_params(image, method=EditMethod.EDIT_METHOD_DIFFEDIT)
    latents = encode_image(pipeline, image)
    schedule = ddim_schedule(dict(pipeline.scheduler.config), params.steps)
    edited, mask = edit_with_diffedit(
        pipeline, schedule, latents, captions(pipeline, SOURCE, TARGET), params, lambda: None
    )
    assert 0 < mask.float().mean() < 1  # the captions differ somewhere, not everywhere
    assert torch.equal(edited * ~mask, latents * ~mask)
    assert not torch.equal(edited * mask, latents * mask)

    (output,) = run_edit(pipeline, params).images  # the same mask: same seed, same inputs
    region = pixel_mask(mask, image.width, image.height)
    assert np.array_equal(np.asarray(output)[~region], np.asarray(image)[~region])
    assert not np.array_equal(np.asarray(output)[region], np.asarray(image)[region])


# -- inputs, progress, the job --------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors() -> None:
    image = photo()
    with pytest.raises(ValueError, match="edit needs an input image"):
        resolve_edit_params(edit_request(), PROFILE, None)
    with pytest.raises(ValueError, match="edit needs a source caption"):
        resolve_edit_params(edit_request(source="  "), PROFILE, image)
    with pytest.raises(ValueError, match="edit needs a target caption"):
        resolve_edit_params(edit_request(target=""), PROFILE, image)
    sized = edit_request()
    sized.width = 64
    with pytest.raises(ValueError, match="width and height must be unset"):
        resolve_edit_params(sized, PROFILE, image)
    for n, message in ((2, "n must be 1 for an edit"), (9, "n must be at most 8")):
        many = edit_request()
        many.n = n
        with pytest.raises(ValueError, match=message):
            resolve_edit_params(many, PROFILE, image)
    with pytest.raises(ValueError, match="width .* must be between 64 and 1024, got 2000"):
        resolve_edit_params(edit_request(), PROFILE, photo(2000, 64))
    # Unspecified method: the profile's default.
    default = resolve_edit_params(
        edit_request(method=EditMethod.EDIT_METHOD_UNSPECIFIED), PROFILE, image
    )
    assert default.method == PROFILE.edit_method


@pytest.mark.parametrize("method", [EditMethod.EDIT_METHOD_P2P, EditMethod.EDIT_METHOD_DIFFEDIT])
def test_progress_reaches_the_total_and_an_exception_stops_the_job(
    pipeline: StableDiffusionPipeline, method: int
) -> None:
    params = edit_params(method=method)
    seen: list[tuple[int, int]] = []
    run_edit(pipeline, params, lambda done, total: seen.append((done, total)))
    assert seen == [(done, params.total_steps) for done in range(1, params.total_steps + 1)]

    class Canceled(Exception):
        pass

    # Stop one step into the regeneration: for p2p, inside the attention control.
    stop_at = params.total_steps - params.steps + 1
    calls: list[int] = []

    def cancel(done: int, total: int) -> None:
        calls.append(done)
        if done == stop_at:
            raise Canceled

    with pytest.raises(Canceled):
        run_edit(pipeline, params, cancel)
    assert calls == list(range(1, stop_at + 1))  # nothing ran after the exception
    # The UNet's own attention processors are back even after the exception.
    processors = pipeline.unet.attn_processors.values()
    assert all(isinstance(processor, AttnProcessor2_0) for processor in processors)


@pytest.fixture
def blobs() -> Iterator[RedisBlobStore]:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = RedisKeys(f"test-editing-{uuid.uuid4().hex[:12]}")
    yield RedisBlobStore(client, keys, ttl_s=60)
    for key in client.scan_iter(match=f"{keys.prefix}:*"):
        client.delete(key)


def test_an_edit_job_runs_from_the_blob_store(models: LoadedModels, blobs: RedisBlobStore) -> None:
    buffer = io.BytesIO()
    photo(72, 64).save(buffer, format="PNG")
    request = edit_request(method=EditMethod.EDIT_METHOD_UNSPECIFIED)
    request.tenant = "t1"
    request.input_image_ids.append(blobs.put("t1", buffer.getvalue()))
    job = prepare_job(request, models, blobs)
    assert (job.params.width, job.params.height) == (72, 64)
    result = job.run(None)
    assert result.images[0].size == (72, 64)
    assert result.source_prompt_used == SOURCE
    assert result.edit_method_used == PROFILE.edit_method

    del request.input_image_ids[:]
    with pytest.raises(ValueError, match="edit needs an input image"):
        prepare_job(request, models, blobs)


def test_a_profile_with_an_editing_vae_shares_every_other_component(
    models: LoadedModels,
) -> None:
    # As the sd15 profile edits with sd-vae-ft-mse: here the tiny build's own VAE folder.
    models_dir = tiny_sd15_models_dir()
    vae = ModelSource(f"{TINY_SD15_DIRNAME}/vae", local=True)
    loaded = load_models(
        dataclasses.replace(PROFILE, edit_vae=vae),
        models_dir,
        CPU,
        torch.float32,
        components={"editing"},
    )
    assert loaded.editing is not None and loaded.editing is not loaded.text_to_image
    assert loaded.editing.vae is not loaded.text_to_image.vae
    assert loaded.editing.unet is loaded.text_to_image.unet
    assert loaded.editing.text_encoder is loaded.text_to_image.text_encoder
