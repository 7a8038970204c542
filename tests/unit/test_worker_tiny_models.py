"""The tiny models are built locally, deterministically, and load like real checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import CLIPTokenizer

from services.worker.profiles import (
    MANIFEST_NAME,
    TINY_SD15_CONTROLNET_DIRNAME,
    TINY_SD15_DIRNAME,
    tiny_revision,
)
from services.worker.testing.tiny_models import (
    TINY_BUILDS,
    TOY_INSTALLS,
    build_tiny,
    build_tiny_sd15,
    build_tiny_sd15_inpainting,
    bytes_to_unicode,
    content_hash,
    train_clip_bpe,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd15(tmp_path_factory.mktemp("models") / "tiny-sd15")


def test_build_is_deterministic(built: Path, tmp_path: Path) -> None:
    other = build_tiny_sd15(tmp_path / "tiny-sd15")
    assert content_hash(other) == content_hash(built)
    assert tiny_revision(other) == tiny_revision(built)


def test_build_is_idempotent_and_replaces_incomplete_builds(built: Path, tmp_path: Path) -> None:
    before = (built / MANIFEST_NAME).stat().st_mtime_ns
    assert build_tiny_sd15(built) == built
    assert (built / MANIFEST_NAME).stat().st_mtime_ns == before  # kept, not rebuilt

    broken = tmp_path / "tiny-sd15"
    (broken / "unet").mkdir(parents=True)  # a crashed build: no manifest
    build_tiny_sd15(broken)
    assert content_hash(broken) == content_hash(built)
    assert not list(tmp_path.glob(".tiny-sd15.building-*"))  # staging folders cleaned up


def test_build_loads_through_from_pretrained(built: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(built, safety_checker=None)
    assert pipeline.safety_checker is None
    assert pipeline.unet.config.cross_attention_dim == pipeline.text_encoder.config.hidden_size
    assert pipeline.text_encoder.config.max_position_embeddings == 77
    assert pipeline.text_encoder.config.vocab_size == len(pipeline.tokenizer)
    assert pipeline.vae_scale_factor == 8  # SD 1.5's latent geometry
    assert json.loads((built / "model_index.json").read_text())["tokenizer"] == [
        "transformers",
        "CLIPTokenizer",
    ]


def test_tokenizer_is_clip_shaped_and_round_trips(built: Path) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(built / "tokenizer")
    assert tokenizer.model_max_length == 77
    assert tokenizer.bos_token == "<|startoftext|>"
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"

    text = "A photo of an astronaut riding a horse on the moon, 8k! Zebra-xylophone."
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]  # byte-level: every character is covered
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded.replace(" ", "") == text.lower().replace(" ", "")
    # Common words are single tokens, as with the real CLIP vocabulary.
    assert tokenizer.tokenize("a photo of the") == ["a</w>", "photo</w>", "of</w>", "the</w>"]


def test_vocab_follows_clips_layout() -> None:
    vocab, merges = train_clip_bpe("the cat sat on the mat. the cat ate.", num_merges=50)
    symbols = list(bytes_to_unicode().values())
    tokens = sorted(vocab, key=vocab.__getitem__)
    assert tokens[:256] == symbols
    assert tokens[256:512] == [s + "</w>" for s in symbols]
    assert tokens[512:-2] == ["".join(pair) for pair in merges]
    assert tokens[-2:] == ["<|startoftext|>", "<|endoftext|>"]
    assert merges and train_clip_bpe("the cat sat on the mat. the cat ate.", 50)[1] == merges


def test_inpainting_build_is_sd15_inpainting_shaped(built: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionInpaintPipeline

    inpainting = build_tiny_sd15_inpainting(tmp_path / "tiny-sd15-inpainting")
    pipeline = StableDiffusionInpaintPipeline.from_pretrained(inpainting, safety_checker=None)
    assert pipeline.unet.config.in_channels == 9  # 4 latent + 1 mask + 4 masked-image latent
    assert pipeline.vae_scale_factor == 8
    # The VAE, text encoder and tokenizer are the text-to-image build's, byte for byte.
    for part in ("vae", "text_encoder", "tokenizer"):
        for file in sorted((built / part).iterdir()):
            assert (inpainting / part / file.name).read_bytes() == file.read_bytes()
    assert (inpainting / "unet").exists() and tiny_revision(inpainting) != tiny_revision(built)


def test_every_tiny_model_has_a_builder_and_unknown_names_are_refused(tmp_path: Path) -> None:
    from services.worker.profiles import PROFILES, local_sources

    for profile in PROFILES.values():
        known = {**TINY_BUILDS, **TOY_INSTALLS}
        assert all(source.name in known for source in local_sources(profile))
    with pytest.raises(ValueError, match="no local model is called 'tiny-sd3'"):
        build_tiny("tiny-sd3", tmp_path)


def test_the_tiny_controlnet_matches_the_unet_and_is_not_a_no_op(tmp_path: Path) -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    built = build_tiny(TINY_SD15_CONTROLNET_DIRNAME, tmp_path)
    controlnet = ControlNetModel.from_pretrained(built)
    unet = UNet2DConditionModel.from_pretrained(build_tiny(TINY_SD15_DIRNAME, tmp_path) / "unet")
    assert controlnet.config.block_out_channels == unet.config.block_out_channels
    assert controlnet.config.cross_attention_dim == unet.config.cross_attention_dim
    # Initialised from the UNet, as ControlNet training starts...
    assert torch.equal(controlnet.conv_in.weight, unet.conv_in.weight)
    # ...but with non-zero output convolutions, so the control image has an effect.
    assert controlnet.controlnet_mid_block.weight.abs().sum() > 0
