"""Schemas shared by several API areas: generation options and the error body."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Every task of the contract, by its API name; only "t2i" is served so far (others: 501).
TaskName = Literal["t2i", "similar", "inpaint", "outpaint", "edit", "restore"]

# Seeds fit the worker's uint64 even after adding the image index (seed + i).
MAX_SEED = 2**63 - 1


class ErrorDetail(BaseModel):
    """What went wrong."""

    type: str = Field(description="Machine-readable kind, e.g. invalid_request, not_found.")
    message: str = Field(description="Human-readable explanation.")
    field: str | None = Field(default=None, description="The offending request field, if any.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class GenerationOptions(BaseModel):
    """Optional diffusion settings; omitted values use the worker's model-profile defaults."""

    model_config = ConfigDict(extra="forbid")

    negative_prompt: str = Field(
        default="",
        description="What the image should not show; at most LLMGA_MAX_PROMPT_CHARS (4000).",
    )
    width: int | None = Field(
        default=None,
        multiple_of=8,
        description="Image width: a multiple of 8 between LLMGA_MIN_SIZE (64) and "
        "LLMGA_MAX_SIZE (2048). Default: the model profile's (512 for SD 1.5).",
    )
    height: int | None = Field(
        default=None,
        multiple_of=8,
        description="Image height; same rules as width.",
    )
    steps: int | None = Field(
        default=None,
        ge=1,
        description="Denoising steps, 1..LLMGA_MAX_STEPS (150). Default: profile's.",
    )
    guidance_scale: float | None = Field(
        default=None,
        ge=0,
        le=50,
        description="Classifier-free guidance scale, 0..50 (0 disables it).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Seed of the first image (image i uses seed + i); omitted: random, "
        "recorded in the job.",
    )
    n: int = Field(default=1, ge=1, description="Number of images, 1..LLMGA_MAX_N (4).")
