"""Schemas of the images area: job creation and uploads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway.jobs.protocol import JobView
from services.gateway.protocol import GenerationOptions, ImageInput, OutpaintInput, TaskName


class ImagesRequest(GenerationOptions):
    """Create one generation job from a prompt (and, for inpaint/outpaint, an image)."""

    task: TaskName = Field(
        default="t2i",
        description="'t2i', 'inpaint' (needs image + mask), 'outpaint' (needs image + "
        "outpaint), 'similar' (needs image: the mllm describes it, the description drives "
        "a t2i job); 'edit', 'restore' answer 501 until implemented.",
    )
    image: ImageInput | None = Field(
        default=None,
        description="inpaint/outpaint: the input image. The output has its size (outpaint: "
        "plus the extension), so width and height must be omitted. similar: the image to "
        "describe; width/height default to its size (scaled into LLMGA_MIN_SIZE.."
        "LLMGA_MAX_SIZE, rounded down to a multiple of 8).",
    )
    mask: ImageInput | None = Field(
        default=None,
        description="inpaint: what to regenerate, the image's size. White = regenerate, "
        "black = keep (binarized at 0.5), or an RGBA image transparent (alpha < 0.5) where "
        "to regenerate. Must select at least one pixel.",
    )
    outpaint: OutpaintInput | None = Field(
        default=None,
        description="outpaint: how far to extend the canvas; the extended size must be "
        "within LLMGA_MIN_SIZE..LLMGA_MAX_SIZE (64..2048) per side.",
    )
    strength: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="inpaint/outpaint: how much of the noise schedule runs, in (0, 1]; "
        "omitted: the profile's (1: the region is generated from pure noise).",
    )
    prompt: str | None = Field(
        default=None,
        min_length=1,
        description="What to generate: not blank, at most LLMGA_MAX_PROMPT_CHARS (4000). "
        "Required except for 'similar', where it is optional text sent to the mllm with the "
        "image (default: 'Please generate a similar image.').",
    )
    refine: bool = Field(
        default=False,
        description="Let the MLLM rewrite the prompt into a detailed generation prompt first.",
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("prompt must not be blank")
        return value


class ImagesResponse(JobView):
    """The queued job; poll `GET /v1/jobs/{id}` (also in the Location header)."""

    refined_prompt: str | None = Field(
        default=None,
        description="With refine=true, or for 'similar' (always refined): the prompt the MLLM "
        "wrote (and the job uses).",
    )
    refine_note: str | None = Field(
        default=None, description="With refine=true: why the original prompt was used instead."
    )


class UploadRequest(BaseModel):
    """An image to store for later use as an input (by id)."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        description="Raw base64 or a `data:image/...;base64,` URI of a PNG, JPEG, WebP, GIF "
        "or BMP; at most LLMGA_MAX_UPLOAD_BYTES (10 MiB) decoded, LLMGA_MAX_IMAGE_PIXELS "
        "(4096x4096 = 16.7 MP) and LLMGA_MAX_IMAGE_SIDE (8192) per side. Stored as PNG."
    )


class UploadResponse(BaseModel):
    """The stored image."""

    id: str
    url: str = Field(description="/v1/images/<id>")
    width: int
    height: int
