"""Schemas of OpenAI's Images API (`POST /v1/images/generations`, `/edits`,
`/variations`): OpenAI's fields, the gateway's generation options as extra fields, and
OpenAI's answer with the `llmga` extra field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway.images.formats import ImageFormat
from services.gateway.jobs.protocol import JobView
from services.gateway.protocol import MAX_SEED, NonBlankText


class OpenAIImageOptions(BaseModel):
    """What every route of OpenAI's Images API takes. OpenAI's parameters without a
    meaning here (`model`, `quality`, `style`, `user`, `background`, `moderation`,
    `input_fidelity`) are accepted and ignored; other unknown fields
    are 422."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(default=1, ge=1, description="Images, 1..LLMGA_MAX_N (4); edit: 1.")
    size: str | None = Field(
        default=None,
        description="'WIDTHxHEIGHT' (e.g. '512x512'): each side a multiple of 8 within "
        "LLMGA_MIN_SIZE..LLMGA_MAX_SIZE; 'auto' or omitted: the model profile's default "
        "(edits and variations: the input image's size).",
    )
    response_format: Literal["url", "b64_json"] | None = Field(
        default=None, description="'url' (default): a download URL; 'b64_json': the bytes."
    )
    output_format: ImageFormat | None = Field(
        default=None, description="'png' (default), 'jpeg' or 'webp'."
    )
    output_compression: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="jpeg/webp: the encoder's quality, 0..100 (omitted: 90).",
    )
    stream: bool | None = Field(
        default=None,
        description="Generations: true answers server-sent events (OpenAI's Images "
        "streaming: partial images, then the completed ones); edits and variations: false.",
    )
    partial_images: int | None = Field(
        default=None,
        ge=0,
        le=3,
        description="With stream: how many previews to send as partial images (0..3; "
        "omitted: 0); fewer when the worker stores fewer previews.",
    )
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="Extra: seed of the first image."
    )
    steps: int | None = Field(default=None, ge=1, description="Extra: denoising steps.")
    negative_prompt: str = Field(default="", description="Extra: what not to show.")
    # OpenAI's, accepted and ignored.
    model: str | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    background: str | None = None
    moderation: str | None = None
    input_fidelity: str | None = None

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("streaming is served by generations only; omit stream or send false")
        return value


class ImageGenerationRequest(OpenAIImageOptions):
    """`POST /v1/images/generations`: a t2i job."""

    prompt: NonBlankText = Field(min_length=1, description="What to generate; not blank.")
    refine: bool = Field(
        default=False,
        description="Extra: let the mllm rewrite the prompt first (revised_prompt shows it).",
    )

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value: bool | None) -> bool | None:
        return value  # generations stream (streaming.py)


class ImageEditForm(OpenAIImageOptions):
    """The fields of `POST /v1/images/edits` besides the files: the instruction (no mask:
    an edit job) or the prompt of the region to regenerate (with a mask: inpaint)."""

    prompt: NonBlankText = Field(min_length=1, description="The instruction, or what to paint.")


class ImageVariationForm(OpenAIImageOptions):
    """The fields of `POST /v1/images/variations` besides the image."""


class OpenAIImage(BaseModel):
    """One image of the answer: `url` or `b64_json` (response_format)."""

    url: str | None = Field(
        default=None,
        description="response_format 'url': /v1/images/<id> (absolute and signed as "
        "configured), with `?format=` unless png.",
    )
    b64_json: str | None = Field(default=None, description="response_format 'b64_json'.")
    revised_prompt: str = Field(
        description="The prompt the job used: refined (refine), the mllm's description "
        "(variations) or target caption (edits without a mask), else the prompt."
    )


class LlmgaImagesExtra(BaseModel):
    """The gateway's extra field: the job that made the images."""

    job: JobView


class OpenAIImagesResponse(BaseModel):
    """OpenAI's ImagesResponse, plus `llmga`."""

    created: int = Field(description="Unix seconds.")
    data: list[OpenAIImage]
    output_format: ImageFormat
    size: str = Field(description="'WIDTHxHEIGHT' of the images.")
    llmga: LlmgaImagesExtra
