"""Beyond CLIP in process, on the tiny models: RepAdapter merging is exact, the LLM text
encoder pads instead of truncating or chunking, the tiny-beyond-clip profile runs
text-to-image on it and refuses CLIP-conditioned tasks, and both training stages run on the
CPU, stage 1 cutting the held-out error to CLIP by at least 10x, with checkpoints the worker
loads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch import nn

from services.common.contract import GenerationRequest, Task
from services.worker.beyond_clip.checkpoint import (
    ADAPTERS_NAME,
    MAPPING_NAME,
    EncoderConfig,
    build_text_encoder,
    load_weights,
)
from services.worker.beyond_clip.encoder import CLIP_POSITIONS
from services.worker.beyond_clip.rep_adapter import (
    AdaptedLinear,
    RepAdapterConfig,
    add_rep_adapters,
    merge_rep_adapters,
)
from services.worker.beyond_clip.shapes import shape_captions, split_captions, write_dataset
from services.worker.beyond_clip.train import (
    TrainOptions,
    caption_error,
    initial_encoder,
    load_frozen,
    main,
    train,
)
from services.worker.job_preparation import prepare_job
from services.worker.loading import LoadedModels, load_llm_conditioner, load_models
from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image
from services.worker.profiles import get_profile
from services.worker.testing.tiny_models import (
    LLM_HIDDEN_SIZE,
    TEXT_HIDDEN_SIZE,
    build_profile_models,
    build_tiny,
    build_tiny_llama,
    content_hash,
)
from tests.support.torch_threads import one_torch_thread

CPU = torch.device("cpu")
PROFILE = get_profile("tiny-beyond-clip")
# 48 words, 104 tokens of the tiny LLM tokenizer: past 77, one sequence all the same.
LONG_PROMPT = " ".join(["a small wooden cabin in the forest with smoke from the chimney"] * 4)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models_dir = tmp_path_factory.mktemp("models")
    build_profile_models(PROFILE, models_dir)
    return models_dir


@pytest.fixture(scope="module")
def models(models_dir: Path) -> LoadedModels:
    return load_models(
        PROFILE, models_dir, CPU, torch.float32, components={"inpainting", "editing"}
    )


def request(prompt: str) -> GenerationRequest:
    return GenerationRequest(
        task=Task.TASK_T2I, prompt=prompt, width=64, height=64, steps=3, seed=1
    )


def test_the_tiny_llm_and_encoder_builds_are_deterministic(
    models_dir: Path, tmp_path: Path
) -> None:
    # Job records name tiny builds by content hash: two machines must agree.
    for name in ("tiny-llama", "tiny-beyond-clip-encoder"):
        again = build_tiny(name, tmp_path)
        assert content_hash(again) == content_hash(models_dir / name)


# -- RepAdapter ------------------------------------------------------------------------------


def test_merged_adapters_compute_what_the_unmerged_ones_do_with_plain_linear_layers() -> None:
    torch.manual_seed(0)
    llm = build_tiny_llama(vocab_size=100).model  # type: ignore[attr-defined]
    config = RepAdapterConfig(hidden_dim=8, down_groups=2, up_groups=4, scale=0.7)
    wrapped = add_rep_adapters(llm, config)
    # Every linear layer of the decoder: 4 attention and 3 MLP projections per layer.
    assert len(wrapped) == 2 * 7
    for module in llm.modules():  # trained adapters are not the identity a fresh one is
        if isinstance(module, AdaptedLinear):
            nn.init.normal_(module.adapter.up.weight, std=0.1)
            nn.init.normal_(module.adapter.up.bias, std=0.1)  # type: ignore[arg-type]
            nn.init.normal_(module.adapter.down.bias, std=0.1)  # type: ignore[arg-type]
    llm.eval()
    ids = torch.randint(0, 100, (2, 20))
    with torch.no_grad():
        unmerged = llm(input_ids=ids).last_hidden_state
        plain = build_tiny_llama(vocab_size=100).model(input_ids=ids).last_hidden_state  # type: ignore[attr-defined]
        assert merge_rep_adapters(llm) == len(wrapped)
        merged = llm(input_ids=ids).last_hidden_state

    assert not any(isinstance(module, AdaptedLinear) for module in llm.modules())
    linears = [m for m in llm.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == len(wrapped) and all(type(m) is nn.Linear for m in linears)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    assert (unmerged - plain).abs().max() > 1e-2  # the adapters did change the model


def test_adapter_groups_must_divide_the_widths() -> None:
    with pytest.raises(ValueError, match="adapter groups"):
        add_rep_adapters(
            nn.Sequential(nn.Linear(6, 6)), RepAdapterConfig(hidden_dim=4, up_groups=3)
        )


# -- the LLM text encoder ----------------------------------------------------------------------


def test_short_prompts_pad_to_77_and_long_ones_are_neither_truncated_nor_chunked(
    models: LoadedModels,
) -> None:
    encode = models.text_conditioner
    assert encode is not None
    short = encode("a red apple", "blurry", CPU, True)
    assert short.prompt_embeds.shape == (1, CLIP_POSITIONS, TEXT_HIDDEN_SIZE)
    assert short.negative_prompt_embeds is not None
    assert short.negative_prompt_embeds.shape == short.prompt_embeds.shape

    long = encode(LONG_PROMPT, "blurry", CPU, True)
    assert long.prompt_tokens > CLIP_POSITIONS and long.chunks == 1
    length = long.prompt_tokens + 2  # BOS and EOS
    assert long.prompt_embeds.shape == (1, length, TEXT_HIDDEN_SIZE)
    # The negative prompt is padded to the prompt's length; padding on the right of a
    # causal LLM changes nothing before it.
    assert long.negative_prompt_embeds is not None
    assert long.negative_prompt_embeds.shape == long.prompt_embeds.shape
    torch.testing.assert_close(
        long.negative_prompt_embeds[:, :CLIP_POSITIONS], short.negative_prompt_embeds
    )
    # Without guidance there is no negative prompt to encode.
    assert encode("a red apple", "", CPU, False).negative_prompt_embeds is None


def test_a_prompt_past_the_llms_context_is_refused_naming_the_field(models: LoadedModels) -> None:
    assert models.text_conditioner is not None
    with pytest.raises(ValueError, match="negative_prompt is .* tokens; .* at most 510"):
        models.text_conditioner("a cat", "cat " * 600, CPU, True)


# -- the profile ------------------------------------------------------------------------------


def test_text_to_image_runs_on_the_llm_encoder_and_the_prompt_steers_it(
    models: LoadedModels,
) -> None:
    pipeline = models.text_to_image
    assert pipeline.text_encoder is None and pipeline.tokenizer is None  # CLIP not loaded
    assert "+llm:tiny-" in models.revision and "+beyond-clip-" in models.revision

    def generate(prompt: str) -> np.ndarray:
        params = resolve_params(request(prompt), PROFILE)
        result = run_text_to_image(pipeline, params, text_conditioner=models.text_conditioner)
        assert result.chunks == 1
        [image] = result.images
        assert image.size == (64, 64)
        return np.asarray(image)

    red = generate("a red apple on a table")
    assert np.array_equal(red, generate("a red apple on a table"))  # seeded
    assert not np.array_equal(red, generate(LONG_PROMPT))


@pytest.mark.parametrize(
    ("task", "missing"),
    [
        (Task.TASK_INPAINT, "inpainting model loaded"),
        (Task.TASK_EDIT, "CLIP-conditioned SD 1.5 editing pipeline"),
        (Task.TASK_CONTROLNET, "ControlNet loaded"),
    ],
)
def test_clip_conditioned_tasks_are_refused_before_anything_runs(
    models: LoadedModels, task: Task, missing: str
) -> None:
    job = GenerationRequest(task=task, prompt="a cat", input_image_ids=["img_x"])
    with pytest.raises(NotImplementedError, match=f"profile tiny-beyond-clip has no {missing}"):
        prepare_job(job, models, blobs=None)  # type: ignore[arg-type]


def test_the_full_profile_needs_the_trained_mapping_to_be_named(tmp_path: Path) -> None:
    sources = get_profile("beyond-clip").llm_encoder
    assert sources is not None and sources.weights is None
    with pytest.raises(ValueError, match="LLMGA_WORKER_BEYOND_CLIP_WEIGHTS"):
        load_llm_conditioner(sources, tmp_path, CPU, torch.float32)


# -- training -------------------------------------------------------------------------------


def test_stage_one_cuts_the_held_out_error_to_clip_tenfold_and_stage_two_trains_adapters(
    models_dir: Path, tmp_path: Path
) -> None:
    sd, llm = str(models_dir / "tiny-sd15"), str(models_dir / "tiny-llama")
    train_captions, held_out = split_captions(shape_captions(), held_out=0.2, seed=0)
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(train_captions) + "\n")
    stage1 = TrainOptions(
        stage=1, sd=sd, llm=llm, output=tmp_path / "stage1", data=captions,
        steps=120, batch_size=16, lr=1e-3, cpu=True,
    )  # fmt: skip
    frozen = load_frozen(sd, with_unet=False, device=CPU)
    set_seed(stage1.seed)  # the initial mapping, as train() draws it
    before, _ = caption_error(
        initial_encoder(stage1, TEXT_HIDDEN_SIZE), frozen.clip_tokenizer, frozen.clip, held_out
    )

    history = train(stage1)
    config = EncoderConfig.read(stage1.output)
    assert (config.llm_hidden_size, config.adapter) == (LLM_HIDDEN_SIZE, None)
    trained = build_text_encoder(llm, config)
    load_weights(trained, stage1.output, config)
    after, cosine = caption_error(trained, frozen.clip_tokenizer, frozen.clip, held_out)
    ratio = before / after
    print(f"held-out MSE to CLIP: {before:.4f} -> {after:.4f} ({ratio:.1f}x), cos {cosine:.3f}")
    assert len(history) == 120 and history[-1]["cap"] < history[0]["cap"]
    assert after * 10 <= before
    assert cosine > 0.9

    # Stage 2 from the command line, on captioned images: adapters trained with
    # L_cap + 0.1 L_dif, the mapping frozen.
    data = write_dataset(train_captions[:8], tmp_path / "shapes", side=64)
    stage2 = tmp_path / "stage2"
    argv = ["stage2", "--sd", sd, "--llm", llm, "--data", str(data), "--init", str(stage1.output)]
    argv += ["--output", str(stage2), "--steps", "2", "--batch-size", "4", "--resolution", "64"]
    assert main([*argv, "--cpu", "--lr", "1e-2"]) == 0
    config2 = EncoderConfig.read(stage2)
    assert config2.adapter == RepAdapterConfig()
    for name, tensor in load_file(str(stage1.output / MAPPING_NAME)).items():
        assert torch.equal(load_file(str(stage2 / MAPPING_NAME))[name], tensor)
    adapters = load_file(str(stage2 / ADAPTERS_NAME))
    assert any(
        name.endswith("up.weight") and tensor.abs().max() > 0 for name, tensor in adapters.items()
    )
    # The same run without L_dif trains other adapters: the diffusion loss's gradient
    # reaches them through the frozen UNet and the frozen mapping.
    without_dif = tmp_path / "stage2-without-dif"
    argv[argv.index(str(stage2))] = str(without_dif)
    assert main([*argv, "--cpu", "--lr", "1e-2", "--dif-weight", "0"]) == 0
    other = load_file(str(without_dif / ADAPTERS_NAME))
    assert other.keys() == adapters.keys()
    assert any(not torch.equal(other[name], adapters[name]) for name in adapters)

    # The worker serves the stage-2 checkpoint: adapters merged, mapping loaded.
    served = load_models(PROFILE, models_dir, CPU, torch.float32, beyond_clip_weights=stage2)
    params = resolve_params(request("a large red circle on a blue background"), PROFILE)
    [image] = run_text_to_image(
        served.text_to_image, params, text_conditioner=served.text_conditioner
    ).images
    assert image.size == (64, 64)
