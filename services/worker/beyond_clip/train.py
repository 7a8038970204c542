"""Train the Beyond CLIP encoder: `python -m services.worker.beyond_clip.train stage1|stage2`.

Stage 1 trains the mapping network alone, the LLM frozen and without adapters:

    L_cap = MSE(mapping(LLM(c)), CLIP(c))

over captions c, where CLIP(c) is SD's own text encoder's last hidden state: the features
the UNet was trained on. Stage 2 freezes the mapping, puts RepAdapters on every linear layer
of the LLM and trains them with

    L_cap + 0.1 * L_dif,  L_dif = MSE(UNet(noisy latents, t, mapping(LLM(c))), target)

the standard noise-prediction loss of the frozen UNet conditioned on the mapped features
(target: the noise, or v for v-prediction schedulers), on captioned images.

Alignment for L_cap. CLIP's side is what SD uses: BOS, tokens, EOS, padding to 77,
truncated at 77. The LLM sequence is laid out the same way with its own tokenizer and cut
or padded to the same 77 positions (encoder.py `aligned_ids`), and position i is regressed
onto position i. Why positions and not interpolation: both encoders are causal (CLIP's text
transformer masks future tokens too), so position i of each summarises the prompt up to
roughly the same point, and the padded tail of both summarises the whole prompt, where
most of SD's conditioning signal sits; the UNet attends over the set of positions without
a positional term of its own. Interpolating would blend states of different prefixes into
vectors neither encoder produces. At serving, prompts are padded to at least 77 the same
way (never truncated), so the mapping sees the layout it was trained on.

Scale: every step runs under `accelerate` (`Accelerator` wraps the trainable encoder, the
optimiser and the data), so the same command runs on one CPU and, through `accelerate
launch`, on 8 GPUs (docs/beyond-clip.md). The checkpoint is written in the layout the worker
loads (checkpoint.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from transformers import CLIPTextModel, CLIPTokenizer, PreTrainedTokenizerBase

from services.worker.beyond_clip.checkpoint import (
    MAPPING_NAME,
    EncoderConfig,
    build_text_encoder,
    save_checkpoint,
)
from services.worker.beyond_clip.encoder import LlmTextEncoder, aligned_ids
from services.worker.beyond_clip.rep_adapter import RepAdapterConfig, adapter_parameters

logger = logging.getLogger(__name__)

# The paper's weight of the diffusion loss in stage 2.
DIFFUSION_LOSS_WEIGHT = 0.1


@dataclass(frozen=True)
class TrainOptions:
    """One training run (`parse_args` documents each option)."""

    stage: Literal[1, 2]
    sd: str
    llm: str
    output: Path
    # Stage 1: a text file of captions, one a line. Stage 2: a JSONL file of
    # {"image": path relative to the file, "caption": text}.
    data: Path
    # Stage 2: the stage-1 checkpoint (its mapping is frozen). Stage 1: none.
    init: Path | None = None
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    # Stage 2: L_cap + dif_weight * L_dif (0: the "without L_dif" ablation).
    dif_weight: float = DIFFUSION_LOSS_WEIGHT
    # Stage 2 with adapters=False: no adapters; the mapping is trained with both losses
    # instead (the "without adapter" ablation).
    adapters: bool = True
    adapter: RepAdapterConfig = field(default_factory=RepAdapterConfig)
    resolution: int = 512
    seed: int = 0
    log_every: int = 50
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    # The frozen LLM's weights; what is trained (mapping, adapters) stays in float32.
    llm_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cpu: bool = False

    def __post_init__(self) -> None:
        if self.stage == 2 and self.init is None:
            raise ValueError("stage 2 starts from a stage-1 checkpoint: give --init")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch size must be at least 1")


@dataclass(frozen=True)
class Example:
    """A caption and, for stage 2, its image's path."""

    caption: str
    image: Path | None = None


@dataclass(frozen=True)
class Frozen:
    """SD's frozen parts: CLIP (the L_cap target), and for stage 2 the UNet, VAE, scheduler."""

    clip_tokenizer: CLIPTokenizer
    clip: CLIPTextModel
    unet: UNet2DConditionModel | None = None
    vae: AutoencoderKL | None = None
    scheduler: DDPMScheduler | None = None


def read_examples(path: Path, stage: int) -> list[Example]:
    """The training examples of `path` (`TrainOptions.data`)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if stage == 1:
        return [Example(line.strip()) for line in lines]
    examples = []
    for line in lines:
        row = json.loads(line)
        examples.append(Example(row["caption"], path.parent / row["image"]))
    return examples


def load_frozen(sd: str, with_unet: bool, device: torch.device) -> Frozen:
    """SD's frozen components from a pipeline folder or hub id (its subfolders), in float32
    whatever the checkpoint's dtype (the toy weights are stored in fp16)."""
    clip = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder", dtype=torch.float32)
    frozen = Frozen(
        clip_tokenizer=CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer"),
        clip=clip.to(device).eval().requires_grad_(False),  # type: ignore[arg-type]
    )
    if not with_unet:
        return frozen
    unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet", dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(sd, subfolder="vae", dtype=torch.float32)
    return dataclasses.replace(
        frozen,
        unet=unet.to(device).eval().requires_grad_(False),
        vae=vae.to(device).eval().requires_grad_(False),
        scheduler=DDPMScheduler.from_pretrained(sd, subfolder="scheduler"),
    )


def image_tensor(path: Path, resolution: int) -> torch.Tensor:
    """An image resized (shorter side) and centre-cropped to a square, in [-1, 1], CHW."""
    image = Image.open(path).convert("RGB")
    scale = resolution / min(image.size)
    image = image.resize(
        (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale))),
        Image.Resampling.BICUBIC,
    )
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def clip_ids(tokenizer: PreTrainedTokenizerBase, captions: Sequence[str]) -> torch.Tensor:
    """CLIP's input as SD builds it: padded and truncated to its 77 positions."""
    return tokenizer(
        list(captions),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


class Collate:
    """Examples -> a batch: aligned LLM ids, CLIP ids, and (stage 2) images."""

    def __init__(
        self,
        llm_tokenizer: PreTrainedTokenizerBase,
        clip_tokenizer: PreTrainedTokenizerBase,
        resolution: int | None,
    ) -> None:
        self.llm_tokenizer = llm_tokenizer
        self.clip_tokenizer = clip_tokenizer
        self.resolution = resolution

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        captions = [example.caption for example in examples]
        batch = {
            "llm_ids": aligned_ids(
                self.llm_tokenizer, captions, self.clip_tokenizer.model_max_length
            ),
            "clip_ids": clip_ids(self.clip_tokenizer, captions),
        }
        if self.resolution is not None:
            batch["pixels"] = torch.stack(
                [image_tensor(example.image, self.resolution) for example in examples]  # type: ignore[arg-type]
            )
        return batch


def caption_loss(
    encoder: torch.nn.Module, clip: CLIPTextModel, llm_ids: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_cap, the mapped features): MSE of mapping(LLM) to CLIP, position by position."""
    with torch.no_grad():
        target = clip(ids).last_hidden_state
    mapped = encoder(llm_ids)
    return F.mse_loss(mapped.float(), target.float()), mapped


def diffusion_loss(
    frozen: Frozen,
    pixels: torch.Tensor,
    conditioning: torch.Tensor,
    generator: torch.Generator,
    min_timestep: int = 0,
) -> torch.Tensor:
    """L_dif: the UNet's noise-prediction loss at a random timestep (uniform from
    `min_timestep` on), conditioned on the mapped features (gradients flow through the
    frozen UNet into the conditioning)."""
    assert frozen.unet is not None and frozen.vae is not None and frozen.scheduler is not None
    device = pixels.device
    with torch.no_grad():
        posterior = frozen.vae.encode(pixels).latent_dist
        latents = posterior.sample(generator) * frozen.vae.config["scaling_factor"]
    noise = torch.randn(latents.shape, generator=generator, device=device)
    scheduler = frozen.scheduler
    steps = scheduler.config["num_train_timesteps"]
    shape = (latents.shape[0],)
    timesteps = torch.randint(min_timestep, steps, shape, generator=generator, device=device)
    noisy = scheduler.add_noise(latents, noise, timesteps)  # type: ignore[arg-type]
    if scheduler.config["prediction_type"] == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)  # type: ignore[arg-type]
    else:
        target = noise
    prediction = frozen.unet(noisy, timesteps, encoder_hidden_states=conditioning).sample
    return F.mse_loss(prediction.float(), target.float())


def initial_encoder(options: TrainOptions, cross_attention_dim: int) -> LlmTextEncoder:
    """Stage 1: the LLM and a fresh mapping. Stage 2: the LLM with fresh adapters (unless
    the ablation turns them off) and the stage-1 mapping."""
    llm_dtype = getattr(torch, options.llm_dtype)
    if options.stage == 1:
        llm_width = _llm_hidden_size(options.llm)
        config = EncoderConfig(llm_hidden_size=llm_width, cross_attention_dim=cross_attention_dim)
        return _trainable_in_float32(build_text_encoder(options.llm, config, dtype=llm_dtype))
    assert options.init is not None
    init_config = EncoderConfig.read(options.init)
    config = dataclasses.replace(init_config, adapter=options.adapter if options.adapters else None)
    encoder = _trainable_in_float32(build_text_encoder(options.llm, config, dtype=llm_dtype))
    encoder.mapping.load_state_dict(load_file(str(options.init / MAPPING_NAME)))
    return encoder


def _trainable_in_float32(encoder: LlmTextEncoder) -> LlmTextEncoder:
    """The mapping in float32 (adapters are created in float32 already), whatever the LLM's
    dtype: optimiser steps on half-precision weights lose small updates."""
    encoder.mapping.float()
    return encoder


def encoder_config(encoder: LlmTextEncoder, options: TrainOptions) -> EncoderConfig:
    """The config a checkpoint of `encoder` is written with."""
    net = encoder.mapping.net
    return EncoderConfig(
        llm_hidden_size=net[0].in_features,  # type: ignore[arg-type]
        cross_attention_dim=net[2].out_features,  # type: ignore[arg-type]
        mapping_hidden_size=net[0].out_features,  # type: ignore[arg-type]
        adapter=options.adapter if options.stage == 2 and options.adapters else None,
        min_length=encoder.min_length,
    )


def trainable_parameters(
    encoder: LlmTextEncoder, options: TrainOptions
) -> list[torch.nn.Parameter]:
    """What the stage trains; everything else of the encoder is frozen."""
    encoder.requires_grad_(False)
    if options.stage == 1 or not options.adapters:
        params = list(encoder.mapping.parameters())
    else:
        params = adapter_parameters(encoder.llm)
    for param in params:
        param.requires_grad_(True)
    return params


def train(options: TrainOptions) -> list[dict[str, float]]:
    """Run one stage; write its checkpoint to `options.output`. Returns the per-step losses
    (`cap`, and in stage 2 `dif` and `total`)."""
    accelerator = Accelerator(mixed_precision=options.mixed_precision, cpu=options.cpu)
    stage2 = options.stage == 2
    frozen = load_frozen(options.sd, with_unet=stage2, device=accelerator.device)
    set_seed(options.seed)  # here: the initial mapping/adapters depend on the seed alone
    encoder = initial_encoder(options, frozen.clip.config.hidden_size)
    params = trainable_parameters(encoder, options)
    encoder.train()
    optimizer = torch.optim.AdamW(params, lr=options.lr)
    examples = read_examples(options.data, options.stage)
    loader: DataLoader[Example] = DataLoader(
        examples,  # type: ignore[arg-type]
        batch_size=options.batch_size,
        shuffle=True,
        drop_last=len(examples) >= options.batch_size,
        collate_fn=Collate(
            encoder.tokenizer, frozen.clip_tokenizer, options.resolution if stage2 else None
        ),
        generator=torch.Generator().manual_seed(options.seed),
    )
    model, optimizer, loader = accelerator.prepare(encoder, optimizer, loader)
    # Per process: each draws its own noise and timesteps.
    generator = torch.Generator(accelerator.device).manual_seed(
        options.seed + accelerator.process_index
    )
    history: list[dict[str, float]] = []
    for step, batch in zip(range(options.steps), _forever(loader), strict=False):
        with accelerator.autocast():
            cap, mapped = caption_loss(model, frozen.clip, batch["llm_ids"], batch["clip_ids"])
            losses = {"cap": cap}
            total = cap
            if stage2 and options.dif_weight > 0:
                dif = diffusion_loss(frozen, batch["pixels"], mapped, generator)
                losses["dif"] = dif
                total = cap + options.dif_weight * dif
        accelerator.backward(total)
        optimizer.step()
        optimizer.zero_grad()
        record = {name: float(value.detach()) for name, value in losses.items()}
        record["total"] = float(total.detach())
        history.append(record)
        if step % options.log_every == 0 or step == options.steps - 1:
            logger.info("step %d/%d %s", step + 1, options.steps, record)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trained: LlmTextEncoder = accelerator.unwrap_model(model)
        save_checkpoint(
            options.output, encoder_config(trained, options), trained.mapping, trained.llm
        )
        logger.info("wrote %s", options.output)
    return history


@torch.no_grad()
def caption_error(
    encoder: LlmTextEncoder,
    clip_tokenizer: PreTrainedTokenizerBase,
    clip: CLIPTextModel,
    captions: Sequence[str],
    batch_size: int = 32,
) -> tuple[float, float]:
    """(MSE, mean cosine similarity) of the mapped features to CLIP's over `captions`, per
    position as in L_cap: how well the encoder stands in for CLIP on them."""
    was_training = encoder.training
    encoder.eval()
    squared = cosine = 0.0
    count = 0
    for start in range(0, len(captions), batch_size):
        chunk = list(captions[start : start + batch_size])
        ids = clip_ids(clip_tokenizer, chunk)
        target = clip(ids).last_hidden_state.float()
        mapped = encoder(aligned_ids(encoder.tokenizer, chunk, ids.shape[1])).float()
        squared += float(F.mse_loss(mapped, target, reduction="sum"))
        cosine += float(F.cosine_similarity(mapped, target, dim=-1).sum())
        count += target.shape[0] * target.shape[1]
    encoder.train(was_training)
    return squared / (count * clip.config.hidden_size), cosine / count


def _forever(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


def _llm_hidden_size(llm: str) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(llm).hidden_size)


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    """The command line of `main`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["stage1", "stage2"])
    parser.add_argument("--sd", required=True, help="SD pipeline folder or hub id")
    parser.add_argument("--llm", required=True, help="LLM folder or hub id (with its tokenizer)")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="stage1: captions, one a line; stage2: JSONL of image and caption",
    )
    parser.add_argument("--output", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--init", type=Path, help="stage2: the stage-1 checkpoint folder")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument(
        "--dif-weight",
        type=float,
        default=DIFFUSION_LOSS_WEIGHT,
        help="stage2: weight of L_dif (0: without L_dif)",
    )
    parser.add_argument(
        "--no-adapters",
        action="store_true",
        help="stage2 without adapters: train the mapping with both losses",
    )
    parser.add_argument("--adapter-dim", type=int, default=RepAdapterConfig.hidden_dim)
    parser.add_argument("--adapter-groups", type=int, default=RepAdapterConfig.up_groups)
    parser.add_argument("--adapter-scale", type=float, default=RepAdapterConfig.scale)
    parser.add_argument("--resolution", type=int, default=512, help="stage2: image side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    parser.add_argument(
        "--llm-dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="the frozen LLM's weights (bfloat16 halves a 7B LLM's memory)",
    )
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    args = parser.parse_args(argv)
    return TrainOptions(
        stage=1 if args.stage == "stage1" else 2,
        sd=args.sd,
        llm=args.llm,
        output=args.output,
        data=args.data,
        init=args.init,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        dif_weight=args.dif_weight,
        adapters=not args.no_adapters,
        adapter=RepAdapterConfig(
            hidden_dim=args.adapter_dim, up_groups=args.adapter_groups, scale=args.adapter_scale
        ),
        resolution=args.resolution,
        seed=args.seed,
        log_every=args.log_every,
        mixed_precision=args.mixed_precision,
        llm_dtype=args.llm_dtype,
        cpu=args.cpu,
    )


def main(argv: list[str] | None = None) -> int:
    """Train one stage from the command line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = parse_args(argv)
    history = train(options)
    last = history[-1] if history else {}
    print(json.dumps({"output": str(options.output), "steps": len(history), "last": last}))
    return 0 if all(math.isfinite(value) for value in last.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
