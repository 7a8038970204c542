"""The toy world's training recipe: the text encoder's pretraining reads scenes out of
captions, the denoising loss weights timesteps by Min-SNR, inpainting masks often cover a
whole object, the VAE's latent anchor, and the toy text-to-image, inpainting and
ControlNet commands run a step on the committed toy models and write folders the worker's
pipelines load (a few steps only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.training_utils import compute_snr
from transformers import CLIPTextModel

from services.worker.profiles import TOY_SD15_DIRNAME
from services.worker.testing.tiny_models import toy_weights_dir
from tests.support.torch_threads import one_torch_thread
from toyworld.judge import OUTPUTS, loss_of, scene_targets
from toyworld.scenes import Scene, SceneObject, object_mask, render, scene_from_seed
from training.controlnet import train_controlnet
from training.denoising import SNR_GAMMA, NoisedLatents, denoising_loss
from training.inpainting import train_inpainting, training_mask
from training.text_encoder import pretrain_text_encoder
from training.text_to_image import T2IOptions, train_text_to_image
from training.toy_data import to_model_range
from training.vae import OBJECT_WEIGHT, anchor_loss, pixel_weights, train_vae

TOY_T2I = toy_weights_dir() / TOY_SD15_DIRNAME


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_min_snr_weights_leave_noisy_timesteps_whole_and_cap_clean_ones() -> None:
    schedule = DDPMScheduler.from_pretrained(TOY_T2I / "scheduler")
    timesteps = torch.tensor([0, 100, 500, 999])
    noise = torch.zeros(4, 4, 2, 2)
    # The same squared error of 1 at every timestep.
    noised = NoisedLatents(noisy=noise, noise=noise, timesteps=timesteps)
    per_sample = [
        denoising_loss(
            torch.ones(1, 4, 2, 2), NoisedLatents(noise[:1], noise[:1], t[None]), schedule
        )
        for t in timesteps
    ]
    snr = compute_snr(schedule, timesteps)
    for loss, ratio in zip(per_sample, snr, strict=True):
        assert float(loss) == pytest.approx(min(1.0, SNR_GAMMA / float(ratio)), rel=1e-5)
    assert float(per_sample[0]) < 0.01 and float(per_sample[-1]) == pytest.approx(1.0)
    # Without gamma it is the plain mean squared error.
    assert float(denoising_loss(torch.ones(4, 4, 2, 2), noised, schedule, None)) == 1.0


def test_a_caption_reader_is_not_asked_what_the_caption_leaves_out() -> None:
    scenes = [scene_from_seed(1), scene_from_seed(2)]
    logits = torch.randn(2, OUTPUTS)
    unknown = scene_targets(scenes, sizes_known=[False, False], texture_known=False)
    known = scene_targets(scenes)
    assert (unknown["size"] == -100).all() and (unknown["striped"] == -1).all()
    # Changing the size and texture logits changes the loss only when they are asked.
    changed = logits.clone()
    changed[:, 8] += 5  # striped
    changed[:, 9:].view(2, 9, -1)[..., -3:] += torch.randn(2, 9, 3) * 5  # sizes
    assert torch.equal(loss_of(logits, unknown), loss_of(changed, unknown))
    assert not torch.equal(loss_of(logits, known), loss_of(changed, known))


def test_text_encoder_pretraining_learns_to_read_the_background(tmp_path: Path) -> None:
    pretrain_text_encoder(tmp_path / "te", steps=400, lr=2e-3, checkpoint_every=400, held_out=200)
    report = json.loads((tmp_path / "te" / "report.json").read_text())
    # Eight colours: chance is 1/8.
    assert report["short_with_sizes"]["background"] >= 0.9
    assert (tmp_path / "te" / "tokenizer" / "vocab.json").exists()
    assert CLIPTextModel.from_pretrained(tmp_path / "te" / "text_encoder").config.hidden_size == 64


def test_toy_text_to_image_trains_the_unet_around_the_frozen_pretrained_text_encoder(
    tmp_path: Path,
) -> None:
    pretrain_text_encoder(tmp_path / "te", steps=2, checkpoint_every=2, held_out=10)
    options = T2IOptions(
        output=tmp_path / "t2i",
        toy=True,
        vae=TOY_T2I / "vae",
        text_encoder=tmp_path / "te",
        train_text_encoder=False,
        steps=2,
        batch_size=2,
        checkpoint_every=2,
    )
    train_text_to_image(options)
    trained = StableDiffusionPipeline.from_pretrained(tmp_path / "t2i" / "pipeline")
    pretrained = CLIPTextModel.from_pretrained(tmp_path / "te" / "text_encoder")
    for p, q in zip(trained.text_encoder.parameters(), pretrained.parameters(), strict=True):
        assert torch.equal(p, q)
    image = trained("a red circle in the center on a blue background", num_inference_steps=2)
    assert image.images[0].size == (64, 64)


def test_toy_inpainting_and_controlnet_commands_run_and_write_loadable_models(
    tmp_path: Path,
) -> None:
    train_inpainting(TOY_T2I, tmp_path / "inpaint", steps=1, batch_size=2)
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "inpaint" / "pipeline" / "unet")
    assert unet.config.in_channels == 9  # noisy latents, mask, masked image's latents
    train_controlnet(TOY_T2I, tmp_path / "controlnet", steps=1, batch_size=2)
    loaded = ControlNetModel.from_pretrained(tmp_path / "controlnet" / "controlnet")
    assert loaded.config.cross_attention_dim == 64


def test_inpainting_masks_often_cover_a_whole_object() -> None:
    # What a user masks to have a thing redrawn. The paper's mix alone covers some object
    # whole in 18 % of draws (a large box or border); with the object boxes, about half.
    def covers_an_object(scene: Scene, mask: np.ndarray) -> bool:
        boxes = (np.asarray(object_mask(scene, i)) >= 128 for i in range(len(scene.objects)))
        return any(not (box & ~mask).any() for box in boxes)

    rng = np.random.default_rng(0)
    covering = []
    for seed in range(400):
        scene = scene_from_seed(seed)
        mask = training_mask(scene, 64, rng)
        assert mask.shape == (64, 64) and mask.dtype == bool and mask.any() and not mask.all()
        covering.append(covers_an_object(scene, mask))
    assert 0.4 < np.mean(covering) < 0.6


def test_vae_training_saves_a_vae_with_its_latents_scaling(tmp_path: Path) -> None:
    trained = train_vae(tmp_path / "vae", steps=2, batch_size=2)
    reloaded = AutoencoderKL.from_pretrained(tmp_path / "vae" / "vae")
    assert reloaded.config.scaling_factor == trained.config.scaling_factor != 1.0  # type: ignore[attr-defined]


def test_anchor_loss_is_zero_when_latents_are_the_block_averaged_image() -> None:
    blocks = torch.rand(2, 3, 16, 16) * 2 - 1
    images = blocks.repeat_interleave(4, dim=-1).repeat_interleave(4, dim=-2)  # 64 x 64
    fourth = torch.randn(2, 1, 16, 16)  # the free channel is not anchored
    assert anchor_loss(torch.cat([blocks, fourth], 1), images).item() == pytest.approx(0.0)
    assert anchor_loss(torch.cat([-blocks, fourth], 1), images).item() > 0.5


def _latent_energy(vae: AutoencoderKL, a: Scene, b: Scene) -> float:
    with torch.no_grad():
        latents = vae.encode(to_model_range([render(a), render(b)])).latent_dist.mean  # type: ignore[attr-defined]
    return float((latents[0] - latents[1]).pow(2).sum())


def test_committed_vae_keeps_circles_and_squares_apart_in_latent_space() -> None:
    # What the UNet must learn to tell apart: a medium circle's and square's latents
    # differ by 4.7 % of the circle's own latent energy (0.2 % before the anchor).
    vae = AutoencoderKL.from_pretrained(TOY_T2I / "vae", dtype=torch.float32)
    circle, square = (
        Scene((SceneObject(shape, "red", "medium", "center"),), "blue", False)
        for shape in ("circle", "square")
    )
    empty = Scene((), "blue", False)
    assert _latent_energy(vae, circle, square) > 0.02 * _latent_energy(vae, circle, empty)


def test_object_pixels_weigh_more_in_the_reconstruction_loss() -> None:
    scene = Scene((SceneObject("square", "red", "large", "center"),), "blue", False)
    weights = pixel_weights([scene], 64)[0, 0]
    assert weights[32, 32] == 1 + OBJECT_WEIGHT and weights[0, 0] == 1
