"""The training commands: captions are encoded for training exactly as the worker encodes
prompts at inference, and each command runs, checkpoints, resumes and writes a folder the
worker's pipelines load (a few steps only, on tiny models)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from services.worker.profiles import TINY_SD15_DIRNAME
from services.worker.prompt_encoding import encode_long_prompt
from services.worker.testing.tiny_models import build_tiny
from toyworld.captions import detailed_caption, short_caption
from toyworld.scenes import render, scene_from_seed
from training.text_conditioning import encode_captions
from training.text_to_image import T2IOptions, train_text_to_image


@pytest.fixture(scope="module")
def tiny_sd15(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(TINY_SD15_DIRNAME, tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def pipeline(tiny_sd15: Path) -> Any:
    return StableDiffusionPipeline.from_pretrained(tiny_sd15, safety_checker=None)


def test_training_encodes_captions_as_the_worker_encodes_prompts(
    pipeline: Any,
) -> None:
    scene = scene_from_seed(3)
    long_caption = detailed_caption(scene, random.Random(0)).text
    for caption in (short_caption(scene), long_caption, ""):
        worker = encode_long_prompt(
            pipeline.tokenizer,
            pipeline.text_encoder,
            caption,
            "",
            torch.device("cpu"),
            do_classifier_free_guidance=False,
        ).prompt_embeds
        with torch.no_grad():
            training = encode_captions(pipeline.tokenizer, pipeline.text_encoder, [caption])
        assert training.shape == worker.shape
        torch.testing.assert_close(training, worker, atol=1e-5, rtol=1e-4)
    # The long caption takes several 77-token chunks; truncation keeps one.
    with torch.no_grad():
        assert (
            encode_captions(pipeline.tokenizer, pipeline.text_encoder, [long_caption]).shape[1] > 77
        )
        truncated = encode_captions(
            pipeline.tokenizer, pipeline.text_encoder, [long_caption], truncate=True
        )
    assert truncated.shape[1] == 77


def test_a_batch_pads_shorter_captions_with_empty_chunks_as_the_negative_prompt(
    pipeline: Any,
) -> None:
    long_caption = "a red circle " * 60  # 180 tokens: three chunks
    with torch.no_grad():
        batch = encode_captions(pipeline.tokenizer, pipeline.text_encoder, [long_caption, ""])
    worker = encode_long_prompt(
        pipeline.tokenizer,
        pipeline.text_encoder,
        long_caption,
        "",
        torch.device("cpu"),
        do_classifier_free_guidance=True,
    )
    torch.testing.assert_close(batch[:1], worker.prompt_embeds, atol=1e-5, rtol=1e-4)
    assert worker.negative_prompt_embeds is not None
    torch.testing.assert_close(batch[1:], worker.negative_prompt_embeds, atol=1e-5, rtol=1e-4)


def _image_folder(folder: Path) -> Path:
    folder.mkdir()
    with (folder / "metadata.jsonl").open("w") as metadata:
        for seed in range(4):
            scene = scene_from_seed(seed)
            render(scene, 64).save(folder / f"{seed}.png")
            metadata.write(
                json.dumps({"file_name": f"{seed}.png", "text": short_caption(scene)}) + "\n"
            )
    return folder


def test_sd15_fine_tuning_runs_two_steps_resumes_and_loads(
    tiny_sd15: Path, pipeline: Any, tmp_path: Path
) -> None:
    data = _image_folder(tmp_path / "data")
    options = T2IOptions(
        output=tmp_path / "run",
        pretrained=tiny_sd15,
        data=data,
        steps=1,
        batch_size=2,
        lr=1e-3,
        train_text_encoder=False,
        checkpoint_every=1,
    )
    train_text_to_image(options)
    assert json.loads((tmp_path / "run" / "progress.json").read_text()) == {"step": 1}
    # Run again with two steps: resumes after step 1, runs step 2 only.
    train_text_to_image(T2IOptions(**{**options.__dict__, "steps": 2}))
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "losses.jsonl").open()]
    assert steps == [1, 2]
    tuned = StableDiffusionPipeline.from_pretrained(
        tmp_path / "run" / "pipeline", safety_checker=None
    )
    base = pipeline
    changed = [
        name
        for (name, p), (_, q) in zip(
            tuned.unet.named_parameters(), base.unet.named_parameters(), strict=True
        )
        if not torch.equal(p, q)
    ]
    assert changed  # the UNet was trained
    for p, q in zip(tuned.text_encoder.parameters(), base.text_encoder.parameters(), strict=True):
        assert torch.equal(p, q)  # the text encoder was frozen
    assert type(tuned.scheduler) is type(base.scheduler)  # it samples as it did
    image = tuned(
        "a red circle in the center", num_inference_steps=2, height=64, width=64, output_type="pil"
    ).images[0]
    assert isinstance(image, Image.Image) and image.size == (64, 64)
