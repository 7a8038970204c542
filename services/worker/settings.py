"""Typed settings of the worker service, read from the environment.

Shared state settings (`LLMGA_REDIS_URL`, `LLMGA_KEY_PREFIX`, `LLMGA_QUEUE_NAME`, ...) come
from `StateSettings`. Settings only the worker reads are named `LLMGA_WORKER_*`, so one
environment can serve every service without a name meaning two things (the mllm service
has its own profile and device); `LLMGA_MODELS_DIR` is shared on purpose.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import StateSettings
from services.worker.profiles import BEYOND_CLIP_CONFIG_NAME

DType = Literal["auto", "float32", "float16", "bfloat16"]
GPU_BATCH_WINDOW_MS = 5.0
CPU_BATCH_WINDOW_MS = 50.0
Attention = Literal["sdpa", "eager"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


def _env(name: str) -> AliasChoices:
    """The environment variable of a worker-only setting: `LLMGA_WORKER_<NAME>`."""
    return AliasChoices(f"LLMGA_WORKER_{name.upper()}")


class WorkerSettings(StateSettings):
    """Everything one worker process needs: which models, on which device, how it reports."""

    model_config = SettingsConfigDict(env_prefix="LLMGA_", extra="ignore", populate_by_name=True)

    profile: str = Field(
        default="tiny", validation_alias=_env("profile"), description="Model profile (profiles.py)."
    )
    models_dir: Path = Field(
        default=Path("~/.cache/llmga/models"),
        description="Where local models live (the tiny profile is built here).",
    )
    model_revision: str = Field(
        default="",
        validation_alias=_env("model_revision"),
        description="Hub revision (commit sha) to load; empty means the profile's pin.",
    )
    device: str = Field(
        default="auto",
        validation_alias=_env("device"),
        description="`auto`: cuda if available, else cpu.",
    )
    dtype: DType = Field(
        default="auto",
        validation_alias=_env("dtype"),
        description="`auto`: float16 on cuda, float32 on cpu.",
    )
    # GPU path (services/worker/optimisations.py, docs/worker.md "GPU path settings").
    attention: Attention = Field(
        default="sdpa",
        validation_alias=_env("attention"),
        description="Attention kernel: `sdpa` (PyTorch's fused scaled_dot_product_attention) "
        "or `eager` (plain matmul-softmax, for comparison).",
    )
    channels_last: Literal["auto", "on", "off"] = Field(
        default="auto",
        validation_alias=_env("channels_last"),
        description="UNet and VAE convolutions in channels-last (NHWC) layout; `auto`: on "
        "cuda only.",
    )
    vae_dtype: DType = Field(
        default="auto",
        validation_alias=_env("vae_dtype"),
        description="The VAE's dtype; `auto`: the weights' (LLMGA_WORKER_DTYPE). A float16 "
        "SDXL VAE whose config says force_upcast decodes in float32.",
    )
    fuse_qkv: bool = Field(
        default=False,
        validation_alias=_env("fuse_qkv"),
        description="Fuse the attention Q/K/V projections into one matmul (diffusers' "
        "fuse_qkv_projections).",
    )
    compile_unet: bool = Field(
        default=False,
        validation_alias=_env("compile_unet"),
        description="torch.compile the UNet and warm it up at start-up on the profile's "
        "default size (readiness waits for it); other sizes compile on first use.",
    )
    compile_mode: CompileMode = Field(
        default="default",
        validation_alias=_env("compile_mode"),
        description="torch.compile mode of the UNet (`max-autotune-no-cudagraphs`: faster "
        "kernels, minutes more warm-up).",
    )
    feature_reuse_interval: int = Field(
        default=0,
        ge=0,
        validation_alias=_env("feature_reuse_interval"),
        description="DeepCache-style feature reuse: the whole UNet every N denoising steps, "
        "its shallowest blocks only in between (faster, the images change); 0 or 1: off. "
        "Not with compile_unet.",
    )
    name: str = Field(
        default="",
        validation_alias=_env("name"),
        description="Name in the worker registry; empty means `worker-<host>-<pid>`.",
    )
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, validation_alias=_env("heartbeat_interval_s")
    )
    torch_threads: int = Field(
        default=0, ge=0, validation_alias=_env("torch_threads"), description="0: torch's default."
    )
    max_job_s: float = Field(
        default=1800.0,
        gt=0,
        validation_alias=_env("max_job_s"),
        description="A job still denoising after this long is stopped and marked failed.",
    )
    visibility_timeout_s: int = Field(
        default=7200,
        gt=0,
        validation_alias=_env("visibility_timeout_s"),
        description="Redis broker visibility timeout; must exceed max_job_s or jobs run twice.",
    )
    max_batch: int = Field(
        default=4,
        ge=1,
        validation_alias=_env("max_batch"),
        description="Most images denoised together in one batch, across compatible jobs "
        "(docs/batching.md: choose it from measured memory); also the worker's task threads "
        "and the messages it holds. 1: one job at a time (the solo pool, no batching "
        "across jobs).",
    )
    batch_window_ms: float | None = Field(
        default=None,
        ge=0,
        validation_alias=_env("batch_window_ms"),
        description="How long a batch waits for compatible jobs to arrive after its first "
        "(milliseconds); unset: 5 on a GPU, 50 on the CPU.",
    )
    color_restore: bool = Field(
        default=True,
        validation_alias=_env("color_restore"),
        description="Without DiffRIR weights: match brightness/contrast at the seam after "
        "inpaint and outpaint (the colour fallback).",
    )
    preview_every: int = Field(
        default=5,
        ge=0,
        validation_alias=_env("preview_every"),
        description="Store a preview of each image every this many denoising steps (a "
        "small JPEG from the latents, sent as `preview` events); 0: no previews.",
    )
    preview_ttl_s: int = Field(
        default=3600,
        gt=0,
        validation_alias=_env("preview_ttl_s"),
        description="How long previews (their JPEGs and the job's preview list) are kept.",
    )
    diffrir_weights: Path | None = Field(
        default=None,
        validation_alias=_env("diffrir_weights"),
        description="DiffRIR checkpoint (.pth with params_ema, or .safetensors): restore "
        "with DiffRIR after inpaint/outpaint instead of the colour fallback; unset: no DiffRIR.",
    )
    diffrir_tile: int = Field(
        default=512,
        ge=64,
        multiple_of=32,
        validation_alias=_env("diffrir_tile"),
        description="DiffRIR runs larger images in tiles of at most this side (pixels).",
    )
    diffrir_tile_overlap: int = Field(
        default=64,
        ge=0,
        multiple_of=32,
        validation_alias=_env("diffrir_tile_overlap"),
        description="Minimum overlap of neighbouring DiffRIR tiles (pixels), < diffrir_tile.",
    )
    beyond_clip_weights: Path | None = Field(
        default=None,
        validation_alias=_env("beyond_clip_weights"),
        description="LLM-conditioned profiles (beyond-clip, tiny-beyond-clip): the folder "
        "of a trained mapping network and RepAdapters (docs/beyond-clip.md); required by "
        "beyond-clip, replaces tiny-beyond-clip's untrained one; unset: the profile's own.",
    )
    loglevel: str = Field(default="info", validation_alias=_env("loglevel"))
    metrics_port: int = Field(
        default=9101,
        ge=0,
        le=65535,
        validation_alias=_env("metrics_port"),
        description="Port of the worker's Prometheus /metrics; 0 = off.",
    )

    @field_validator("models_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("diffrir_weights", mode="before")
    @classmethod
    def _weights_exist(cls, value: object) -> Path | None:
        # Empty means unset (compose files pass variables through); a path must be a file,
        # checked here so that a typo fails at startup, not at the first inpaint job.
        if value is None or value == "":
            return None
        path = Path(str(value)).expanduser()
        if not path.is_file():
            raise ValueError(f"DiffRIR weights {value} do not exist or are not a file")
        return path

    @field_validator("beyond_clip_weights", mode="before")
    @classmethod
    def _checkpoint_exists(cls, value: object) -> Path | None:
        # A typo fails at startup, not after the LLM has loaded.
        if value is None or value == "":
            return None
        path = Path(str(value)).expanduser()
        if not (path / BEYOND_CLIP_CONFIG_NAME).is_file():
            raise ValueError(
                f"{value} is not a Beyond CLIP encoder checkpoint (no {BEYOND_CLIP_CONFIG_NAME})"
            )
        return path

    @model_validator(mode="after")
    def _tiles_overlap_less_than_a_tile(self) -> WorkerSettings:
        if self.diffrir_tile_overlap >= self.diffrir_tile:
            raise ValueError(
                f"diffrir_tile_overlap ({self.diffrir_tile_overlap}) must be less than "
                f"diffrir_tile ({self.diffrir_tile})"
            )
        return self

    @model_validator(mode="after")
    def _reuse_or_compile(self) -> WorkerSettings:
        if self.compile_unet and self.feature_reuse_interval > 1:
            raise ValueError("feature_reuse_interval and compile_unet do not combine")
        return self

    @model_validator(mode="after")
    def _visibility_outlasts_jobs(self) -> WorkerSettings:
        # Redis redelivers an unacknowledged message after the visibility timeout; with
        # acks_late a job still running then would be run a second time by another worker.
        if self.visibility_timeout_s <= self.max_job_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed "
                f"max_job_s ({self.max_job_s})"
            )
        return self

    @property
    def worker_name(self) -> str:
        """The configured name, or one unique to this host and process."""
        return self.name or f"worker-{socket.gethostname()}-{os.getpid()}"

    def batch_window_s(self, device_type: str) -> float:
        """The batching window in seconds on a device of `device_type` ("cuda", "cpu")."""
        if self.batch_window_ms is not None:
            return self.batch_window_ms / 1000
        # A GPU step takes milliseconds: wait little. A CPU job takes seconds, and its
        # threads prepare jobs slower: a longer window still costs little.
        return (GPU_BATCH_WINDOW_MS if device_type == "cuda" else CPU_BATCH_WINDOW_MS) / 1000

    @property
    def heartbeat_ttl_s(self) -> int:
        """Worker info expires after three missed heartbeats (docs/redis.md)."""
        return max(1, round(3 * self.heartbeat_interval_s))
