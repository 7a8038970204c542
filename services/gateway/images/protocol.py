"""Schemas of the images area: job creation and uploads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.jobs.protocol import JobView
from services.gateway.protocol import (
    ImageInput,
    ImageTaskOptions,
    NonBlankText,
    TaskName,
)
from services.gateway.webhooks.protocol import WebhookInput


class ImagesRequest(ImageTaskOptions):
    """Create one generation job from a prompt and/or input images (per task)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "t2i",
                    "prompt": "a red fox sleeping in the snow, watercolor",
                    "width": 512,
                    "height": 512,
                    "steps": 30,
                    "seed": 42,
                },
            ]
        }
    )

    task: TaskName = Field(
        default="t2i",
        description="'t2i', 'inpaint' (needs image + mask), 'outpaint' (needs image + "
        "outpaint), 'similar' (needs image: the mllm describes it, the description drives "
        "a t2i job), 'edit' (needs image; prompt = the instruction), 'controlnet' (needs "
        "image = the control source, and prompt), 'restore' (needs image + reference + "
        "mask; no prompt).",
    )
    image: ImageInput | None = Field(
        default=None,
        description="inpaint/outpaint/edit: the input image; restore: the generated image. "
        "The output has its size (outpaint: plus the extension), so width and height must "
        "be omitted. similar: the image to describe; controlnet: the control source; for "
        "both, width/height default to its size (scaled into LLMGA_MIN_SIZE..LLMGA_MAX_SIZE, "
        "rounded down to a multiple of 8).",
    )
    mask: ImageInput | None = Field(
        default=None,
        description="inpaint: what to regenerate; restore: the generated region. The "
        "image's size. White = regenerate, black = keep (binarized at 0.5), or an RGBA image "
        "transparent (alpha < 0.5) where to regenerate. Must select at least one pixel.",
    )
    reference: ImageInput | None = Field(
        default=None,
        description="restore: the picture before generation (the image's size); outside "
        "the mask the result is exactly this image.",
    )
    source_caption: NonBlankText | None = Field(
        default=None,
        min_length=1,
        description="edit: what the image shows; omitted: the mllm describes the image.",
    )
    target_caption: NonBlankText | None = Field(
        default=None,
        min_length=1,
        description="edit: what the edited image should show; omitted: the mllm's answer "
        "to the instruction (`prompt`). With both captions the mllm is not asked.",
    )
    prompt: NonBlankText | None = Field(
        default=None,
        min_length=1,
        description="What to generate: not blank, at most LLMGA_MAX_PROMPT_CHARS (4000). "
        "edit: the instruction ('swap the cat for a parrot'; optional with target_caption). "
        "similar: optional text sent to the mllm with the image (default: 'Please generate "
        "a similar image.'). restore: must be omitted. Required otherwise.",
    )
    refine: bool = Field(
        default=False,
        description="t2i/inpaint/outpaint/controlnet: let the MLLM rewrite the prompt into a "
        "detailed generation prompt first (inpaint/outpaint/controlnet: it sees the image).",
    )
    webhook: WebhookInput | None = Field(
        default=None,
        description="POST signed notifications of the job's state changes to this URL "
        "(docs/api.md 'Webhooks'); the host must be allow-listed (422 otherwise).",
    )


class ImagesResponse(JobView):
    """The queued job; poll `GET /v1/jobs/{id}` (also in the Location header)."""

    refined_prompt: str | None = Field(
        default=None,
        description="With refine=true, or for 'similar' (always refined): the prompt the MLLM "
        "wrote (and the job uses); edit: the target caption when the MLLM wrote it.",
    )
    refine_note: str | None = Field(
        default=None, description="With refine=true: why the original prompt was used instead."
    )


# An 8x8 PNG, for the examples of the schemas.
EXAMPLE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAA"
    "FElEQVR4nGM8YaPBgA0wYRUdtBIA77ABPOi/LYYAAAAASUVORK5CYII="
)


class UploadRequest(BaseModel):
    """An image to store for later use as an input (by id)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"image": f"data:image/png;base64,{EXAMPLE_PNG}"}]},
    )

    image: str = Field(
        description="Raw base64 or a `data:image/...;base64,` URI of a PNG, JPEG, WebP, GIF "
        "or BMP; at most LLMGA_MAX_UPLOAD_BYTES (10 MiB) decoded, LLMGA_MAX_IMAGE_PIXELS "
        "(4096x4096 = 16.8 MP) and LLMGA_MAX_IMAGE_SIDE (8192) per side. Stored as PNG."
    )


class UploadResponse(BaseModel):
    """The stored image."""

    id: str
    url: str = Field(
        description="/v1/images/<id> (like a job's image URL: absolute, signed or, with "
        "the S3 object store, presigned as configured)"
    )
    width: int
    height: int
