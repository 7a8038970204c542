"""Response schemas of the jobs area (also embedded in chat and images responses)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from services.gateway.protocol import ControlInput, EditMethodName, OutpaintInput, TaskName

JobStatusName = Literal["queued", "running", "succeeded", "failed", "canceled"]


class ProgressView(BaseModel):
    """Denoising progress: `step` of `total` (0 of 0 until the worker starts)."""

    step: int
    total: int


class ImageView(BaseModel):
    """One generated image."""

    id: str
    url: str = Field(
        description="Where to download the PNG: /v1/images/<id>, absolute under "
        "LLMGA_PUBLIC_BASE_URL when set; with LLMGA_URL_SIGNING_SECRET set it is signed "
        "(`?tenant=&expires=&sig=`) and works without an API key until it expires. With "
        "the S3 object store (LLMGA_BLOB_STORE=s3) it is a presigned URL of the store, "
        "valid LLMGA_S3_PRESIGNED_TTL_S."
    )
    seed: int = Field(description="The seed that reproduces this image.")
    width: int
    height: int


class PreviewView(BaseModel):
    """A preview of one image while it denoises (`event: preview` of a job's events): a
    small JPEG made from the latents, kept LLMGA_WORKER_PREVIEW_TTL_S."""

    step: int = Field(description="The job-wide denoising step it shows (as in progress).")
    total: int = Field(description="The job's denoising steps (as in progress).")
    image_index: int = Field(description="Which image of the job (0-based).")
    image_id: str
    url: str = Field(description="Where to download the JPEG (as an image's url).")
    width: int
    height: int


class TimingsView(BaseModel):
    """Durations of the pipeline stages, in seconds (0 until measured)."""

    encode_s: float
    denoise_s: float
    decode_s: float


class JobView(BaseModel):
    """A generation job as the API shows it."""

    id: str
    task: TaskName
    status: JobStatusName
    progress: ProgressView
    events_url: str = Field(
        description="The job's server-sent events (GET): /v1/jobs/<id>/events, absolute "
        "under LLMGA_PUBLIC_BASE_URL when set; with LLMGA_URL_SIGNING_SECRET set it carries "
        "a short-lived `token` that lets an EventSource connect without an API key."
    )
    images: list[ImageView]
    prompt: str = Field(description="The prompt the pipeline used (or will use).")
    negative_prompt: str
    error: str | None = Field(default=None, description="Why the job failed, if it did.")
    created_at: float = Field(description="Unix seconds.")
    started_at: float | None = Field(default=None, description="Unix seconds; null until it runs.")
    finished_at: float | None = Field(default=None, description="Unix seconds; null until it ends.")
    timings: TimingsView
    batch_size: int | None = Field(
        default=None,
        description="Images the worker denoised together in the batch this job ran in: "
        "its own n plus those of compatible jobs it shared the batch with (1: it ran "
        "alone); null until it succeeded.",
    )
    model_profile: str | None = Field(default=None, description="The worker's model profile.")
    conversation_id: str | None = Field(default=None, description="The chat that started the job.")
    input_image_ids: list[str] = Field(
        default_factory=list,
        description="inpaint/outpaint/edit: the input image; a t2i job made by 'similar': "
        "the image it was described from; controlnet: the control image; restore: the "
        "generated image, then the reference (GET /v1/images/<id>).",
    )
    mask_image_id: str | None = Field(
        default=None, description="inpaint: the mask image; restore: the generated region."
    )
    outpaint: OutpaintInput | None = Field(
        default=None, description="outpaint: the extension as requested."
    )
    strength: float | None = Field(
        default=None, description="inpaint/outpaint: the strength asked for (null: default)."
    )
    restore: bool | None = Field(
        default=None, description="inpaint/outpaint: restore as asked for (null: on)."
    )
    restore_used: str | None = Field(
        default=None,
        description="What restored the result: 'diffrir' or 'color'; null until it ran, or "
        "when nothing did.",
    )
    source_caption: str | None = Field(
        default=None,
        description="edit: what the input image shows (the caption the worker inverted "
        "under, once it ran).",
    )
    target_caption: str | None = Field(
        default=None, description="edit: what the edited image should show (= `prompt`)."
    )
    instruction: str | None = Field(default=None, description="edit: the user's instruction.")
    edit_method: EditMethodName | None = Field(
        default=None,
        description="edit: the method that ran, or as asked for until then (null: the "
        "worker's default, not run yet).",
    )
    control: ControlInput | None = Field(
        default=None, description="controlnet: the control options as requested."
    )
    queue_position: int | None = Field(
        default=None,
        description="Queued jobs, in GET /v1/jobs and GET /v1/jobs/{id}: how many messages "
        "of the generation queue (all tenants') are ahead of this job's; 0 when it is next, "
        "or already handed to a worker that has not started it. A job held back by its "
        "tenant's in-flight cap counts the whole queue plus the tenant's earlier held jobs. "
        "Null otherwise (also while the broker cannot be read).",
    )
    estimated_start_s: float | None = Field(
        default=None,
        description="With `queue_position`: a rough estimate of the seconds until the job "
        "starts, queue_position x the mean run time (finished_at - started_at) of the "
        "tenant's up to 20 most recent succeeded jobs, or LLMGA_JOB_DURATION_ESTIMATE_S "
        "(10) when there is none. It assumes one worker taking one job at a time and "
        "ignores how far the running job is.",
    )


class JobList(BaseModel):
    """A page of the tenant's jobs, newest first."""

    data: list[JobView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null after the last page. A page "
        "may hold fewer than `limit` jobs (filters, expired jobs) while this is set."
    )
