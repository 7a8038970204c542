"""Speed settings of the diffusion pipelines, applied once when the worker loads them.

Each is a worker setting (docs/worker.md, GPU path settings) and each can be measured on
its own (`benchmarks/bench_gpu.py --only`):

- the weights' dtype (LLMGA_WORKER_DTYPE, loading.py): float16 or bfloat16 on a GPU;
- `attention`: PyTorch's fused scaled_dot_product_attention (`sdpa`, flash / memory-
  efficient kernels) or the plain matmul-softmax-matmul (`eager`, for comparison);
- `channels_last`: the UNet and VAE convolutions in NHWC memory layout, what cuDNN's
  tensor-core convolution kernels want (on by default on CUDA only);
- `vae_dtype`: the VAE's own dtype. SDXL's original VAE overflows in float16; its config
  says `force_upcast` and the decode step upcasts it to float32 (pipelines/common.py). An
  fp16-fixed VAE, or bfloat16 (float32's range), needs no upcast;
- `fuse_qkv`: one matmul for the query, key and value projections of self-attention (and
  key + value of cross-attention), diffusers' `fuse_qkv_projections`;
- `compile_unet`: `torch.compile` the UNet, then warm it up at start-up on the profile's
  default size so the first job does not pay the compilation. Another size or batch
  compiles once more on first use;
- `feature_reuse_interval`: DeepCache-style reuse of the UNet's deep features between
  full steps (feature_reuse.py); off by default: it changes the images.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from services.worker.feature_reuse import FeatureReuse
from services.worker.settings import Attention, CompileMode, WorkerSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Optimisations:
    """What `optimise_pipeline` applies; the defaults change nothing but the attention
    kernel (SDPA, also diffusers' own default on torch 2)."""

    attention: Attention = "sdpa"
    channels_last: bool = False
    # None: the dtype the weights were loaded in.
    vae_dtype: torch.dtype | None = None
    fuse_qkv: bool = False
    compile_unet: bool = False
    compile_mode: CompileMode = "default"
    # torch.compile's backend: `inductor` generates kernels; `eager` only traces (tests).
    compile_backend: str = "inductor"
    # 0: off; N >= 2: the whole UNet every N steps, its shallow blocks only in between.
    feature_reuse_interval: int = 0

    def __post_init__(self) -> None:
        if self.compile_unet and self.feature_reuse_interval:
            # The reuse switches Python-side per step: a compiled graph would bake one in.
            raise ValueError("feature reuse and torch.compile of the UNet do not combine")

    @classmethod
    def from_settings(cls, settings: WorkerSettings, device: torch.device) -> Optimisations:
        """The worker's settings resolved for `device` (`auto` values)."""
        channels_last = settings.channels_last == "on" or (
            settings.channels_last == "auto" and device.type == "cuda"
        )
        return cls(
            attention=settings.attention,
            channels_last=channels_last,
            # "float16" -> torch.float16, ...
            vae_dtype=None if settings.vae_dtype == "auto" else getattr(torch, settings.vae_dtype),
            fuse_qkv=settings.fuse_qkv,
            compile_unet=settings.compile_unet,
            compile_mode=settings.compile_mode,
            # 1 would run every step whole: the same as off.
            feature_reuse_interval=settings.feature_reuse_interval
            if settings.feature_reuse_interval > 1
            else 0,
        )

    def describe(self) -> str:
        """A short label for logs and benchmark tables."""
        parts = [f"attention={self.attention}"]
        if self.channels_last:
            parts.append("channels_last")
        if self.vae_dtype is not None:
            parts.append(f"vae={str(self.vae_dtype).removeprefix('torch.')}")
        if self.fuse_qkv:
            parts.append("fused_qkv")
        if self.compile_unet:
            parts.append(f"compile({self.compile_mode},{self.compile_backend})")
        if self.feature_reuse_interval:
            parts.append(f"feature_reuse={self.feature_reuse_interval}")
        return " ".join(parts)


def optimise_pipelines(pipelines: list[Any], options: Optimisations) -> None:
    """Apply `options` in place to the UNets, ControlNets and VAEs of loaded SD 1.5 or SDXL
    pipelines, each module once however many pipelines share it (ControlNet and editing
    pipelines reuse the text-to-image components). Compilation comes last, after every
    change to the modules."""
    networks = _distinct(
        [p.unet for p in pipelines] + [p.controlnet for p in pipelines if hasattr(p, "controlnet")]
    )
    vaes = _distinct([p.vae for p in pipelines])
    for network in networks:
        set_attention(network, options.attention)
        if options.fuse_qkv:
            # Replaces the processors with diffusers' fused SDPA one.
            network.fuse_qkv_projections()
    for vae in vaes:
        set_attention(vae, options.attention)
        if options.vae_dtype is not None:
            vae.to(dtype=options.vae_dtype)
    if options.channels_last:
        for module in (*networks, *vaes):
            module.to(memory_format=torch.channels_last)
    if options.feature_reuse_interval:
        for unet in _distinct([p.unet for p in pipelines]):
            FeatureReuse(unet, options.feature_reuse_interval)
    if options.compile_unet:
        for unet in _distinct([p.unet for p in pipelines]):
            # In place (nn.Module.compile): every pipeline holding the UNet runs it compiled.
            unet.compile(
                mode=None if options.compile_mode == "default" else options.compile_mode,
                backend=options.compile_backend,
                dynamic=False,
            )


def set_attention(module: Any, attention: Attention) -> None:
    """Every attention layer of `module` on the SDPA or the plain processor."""
    module.set_attn_processor(AttnProcessor2_0() if attention == "sdpa" else AttnProcessor())


def warm_up(pipeline: Any, width: int, height: int, guidance_scale: float, steps: int = 2) -> float:
    """Run one short generation at `width` x `height` (the profile's default), so a compiled
    UNet is compiled before the first job; returns the seconds it took."""
    started = time.perf_counter()
    with torch.no_grad():
        pipeline(
            prompt="warm-up",
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            output_type="latent",
        )
    elapsed = time.perf_counter() - started
    logger.info("warm-up at %dx%d took %.1f s", width, height, elapsed)
    return elapsed


def _distinct(modules: list[Any]) -> list[Any]:
    """`modules` without repeats (by identity), in order."""
    seen: dict[int, Any] = {}
    for module in modules:
        seen.setdefault(id(module), module)
    return list(seen.values())
