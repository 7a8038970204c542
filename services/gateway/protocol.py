"""Schemas shared by several API areas: generation options and the error body."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from services.gateway.images.formats import ImageFormat

# Every task of the API, by its name ("similar" makes t2i jobs from the mllm's description
# of an image; the others are the contract's tasks).
TaskName = Literal["t2i", "similar", "inpaint", "outpaint", "edit", "restore", "controlnet"]

# Edit methods by API name (services/common/contract.py EditMethod); omitted: the worker's.
EditMethodName = Literal["p2p", "diffedit"]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Text a request must not leave blank (a prompt, a caption): whitespace alone is a 422.
NonBlankText = Annotated[str, AfterValidator(_not_blank)]


# Seeds fit the worker's uint64 even after adding the image index (seed + i).
MAX_SEED = 2**63 - 1


class ErrorDetail(BaseModel):
    """What went wrong."""

    type: str = Field(description="Machine-readable kind, e.g. invalid_request, not_found.")
    message: str = Field(description="Human-readable explanation.")
    field: str | None = Field(default=None, description="The offending request field, if any.")


# Listings (GET /v1/jobs, GET /v1/conversations): cursor pages.
MAX_PAGE = 100
DEFAULT_PAGE = 20

PageLimit = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"Items per page, 1..{MAX_PAGE} (default 20).")
]
Cursor = Annotated[
    str | None,
    Query(description="`next_cursor` of the previous page; omitted: the first page."),
]


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
    n: int = Field(
        default=1, ge=1, description="Number of images, 1..LLMGA_MAX_N (4); edit and restore: 1."
    )
    output_format: ImageFormat = Field(
        default="png",
        description="The format of the job's image URLs: png (as stored), jpeg or webp (the "
        "download converts; `GET /v1/images/{id}?format=`).",
    )
    output_quality: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="jpeg/webp quality, 0..100 (not with png); omitted: 90.",
    )


class ImageInput(BaseModel):
    """An input image: inline base64 (or a data URI) or the id of a stored image."""

    model_config = ConfigDict(extra="forbid")

    b64: str | None = Field(
        default=None,
        description="Raw base64 or a `data:image/...;base64,` URI; at most "
        "LLMGA_MAX_UPLOAD_BYTES (10 MiB) decoded and LLMGA_MAX_IMAGE_PIXELS (4096x4096 = 16.8 MP).",
    )
    id: str | None = Field(
        default=None, description="Id returned by POST /v1/uploads, or of a generated image."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageInput:
        if (self.b64 is None) == (self.id is None):
            raise ValueError("give exactly one of 'b64' and 'id'")
        return self


# Outpainting limits of the schema; the extended canvas must also fit LLMGA_MAX_SIZE.
MAX_OUTPAINT_PIXELS = 2048
MAX_OUTPAINT_RATIO = 4.0


class OutpaintInput(BaseModel):
    """How far to extend the canvas: pixels per side, or one ratio for every side."""

    model_config = ConfigDict(extra="forbid")

    left: int = Field(default=0, ge=0, le=MAX_OUTPAINT_PIXELS, description="Pixels added left.")
    top: int = Field(default=0, ge=0, le=MAX_OUTPAINT_PIXELS, description="Pixels added on top.")
    right: int = Field(default=0, ge=0, le=MAX_OUTPAINT_PIXELS, description="Pixels added right.")
    bottom: int = Field(
        default=0, ge=0, le=MAX_OUTPAINT_PIXELS, description="Pixels added at the bottom."
    )
    ratio: float | None = Field(
        default=None,
        gt=0,
        le=MAX_OUTPAINT_RATIO,
        description="Instead of pixels: left and right grow by round(ratio x width), top "
        "and bottom by round(ratio x height); in (0, 4].",
    )

    @model_validator(mode="after")
    def _pixels_or_ratio(self) -> OutpaintInput:
        sides = (self.left, self.top, self.right, self.bottom)
        if self.ratio is not None and any(sides):
            raise ValueError("give pixels per side or a ratio, not both")
        if self.ratio is None and not any(sides):
            raise ValueError("extend at least one side (left, top, right, bottom) or give a ratio")
        return self


# ControlNet limits of the schema (the worker checks them again).
MAX_CONDITIONING_SCALE = 2.0
MAX_CANNY_THRESHOLD = 255


class ControlInput(BaseModel):
    """How a ControlNet job reads its control image."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["canny"] = Field(
        default="canny", description="The control type; 'canny' (edge maps) is the one served."
    )
    preprocessed: bool = Field(
        default=False,
        description="true: the image is the edge map itself; false: the worker computes the "
        "Canny edges of the image.",
    )
    conditioning_scale: float | None = Field(
        default=None,
        ge=0,
        le=MAX_CONDITIONING_SCALE,
        description="How strongly the control steers the denoiser, 0..2; omitted: the profile's.",
    )
    low_threshold: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CANNY_THRESHOLD,
        description="Canny hysteresis low threshold, 1..255, below high_threshold; omitted: "
        "100. Not with preprocessed.",
    )
    high_threshold: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CANNY_THRESHOLD,
        description="Canny hysteresis high threshold, 1..255; omitted: 200.",
    )


class ImageTaskOptions(GenerationOptions):
    """The options of the image tasks, shared by `POST /v1/images` and `POST /v1/chat`
    (each rejects them with 422 when they do not fit the request's task)."""

    outpaint: OutpaintInput | None = Field(
        default=None,
        description="outpaint: how far to extend the input image; the extended size must be "
        "within LLMGA_MIN_SIZE..LLMGA_MAX_SIZE (64..2048) per side.",
    )
    strength: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="inpaint/outpaint: how much of the noise schedule runs, in (0, 1]; "
        "omitted: the profile's (1: the region is generated from pure noise).",
    )
    restore: bool | None = Field(
        default=None,
        description="inpaint/outpaint: restore the generated region against the kept one "
        "afterwards (DiffRIR, or the colour fallback without its weights); omitted: on.",
    )
    edit_method: EditMethodName | None = Field(
        default=None,
        description="edit: 'p2p' (the paper's: inversion + prompt-to-prompt) or 'diffedit' "
        "(the released code's: a mask from source vs target noise predictions); omitted: "
        "the worker's default. In chat, giving it makes the turn an edit.",
    )
    control: ControlInput | None = Field(
        default=None,
        description="controlnet: how to read the control image; omitted: Canny edges "
        "computed by the worker with its defaults. In chat, giving it makes the turn a "
        "controlnet turn.",
    )
