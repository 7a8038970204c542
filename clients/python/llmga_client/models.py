"""Typed request and response bodies of the gateway's native routes.

Each class is named like its schema in the gateway's OpenAPI document and has the same
fields, types, defaults and required fields; the repository's tests compare them with the
committed document, so a change of the API shows up as a failing test here. Value limits
(sizes, lengths, ranges) are left to the gateway: it answers a 422 naming the field, which
the client raises as `UnprocessableEntityError`.

Response models ignore fields they do not know, so a newer gateway does not break an older
client.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["t2i", "similar", "inpaint", "outpaint", "edit", "restore", "controlnet"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
EditMethod = Literal["p2p", "diffedit"]
OutputFormat = Literal["png", "jpeg", "webp"]
WebhookEventName = Literal["started", "succeeded", "failed", "canceled"]

TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})


class _Request(BaseModel):
    """A request body: unknown fields are a mistake of the caller, refused before sending."""

    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    """A response body: fields a newer gateway adds are ignored."""

    model_config = ConfigDict(extra="ignore")


# ----------------------------------------------------------------------------- inputs


class ImageInput(_Request):
    """An image given to a job: an upload's or a result's `id`, or inline base64 `b64`
    (plain or a `data:image/...;base64,` URI). Exactly one of the two."""

    b64: str | None = None
    id: str | None = None


class OutpaintInput(_Request):
    """How far to grow the canvas: pixels per side, or `ratio` of each side."""

    bottom: int = 0
    left: int = 0
    ratio: float | None = None
    right: int = 0
    top: int = 0


class ControlInput(_Request):
    """ControlNet options: Canny thresholds, or `preprocessed` for an edge map given as is."""

    conditioning_scale: float | None = None
    high_threshold: int | None = None
    low_threshold: int | None = None
    preprocessed: bool = False
    type: Literal["canny"] = "canny"


class WebhookInput(_Request):
    """Where to POST signed notifications of the job's state changes."""

    events: list[WebhookEventName] = Field(default_factory=list)
    url: str


class ImagesRequest(_Request):
    """`POST /v1/images`: one job of `task`."""

    control: ControlInput | None = None
    edit_method: EditMethod | None = None
    guidance_scale: float | None = None
    height: int | None = None
    image: ImageInput | None = None
    mask: ImageInput | None = None
    n: int = 1
    negative_prompt: str = ""
    outpaint: OutpaintInput | None = None
    output_format: OutputFormat = "png"
    output_quality: int | None = None
    prompt: str | None = None
    reference: ImageInput | None = None
    refine: bool = False
    restore: bool | None = None
    seed: int | None = None
    source_caption: str | None = None
    steps: int | None = None
    strength: float | None = None
    target_caption: str | None = None
    task: Task = "t2i"
    webhook: WebhookInput | None = None
    width: int | None = None


class ChatRequest(_Request):
    """`POST /v1/chat`: one turn; the mllm's generation prompts become jobs."""

    control: ControlInput | None = None
    conversation_id: str | None = None
    edit_method: EditMethod | None = None
    generate: bool | None = None
    guidance_scale: float | None = None
    height: int | None = None
    images: list[ImageInput] = Field(default_factory=list)
    mask: ImageInput | None = None
    message: str
    n: int = 1
    negative_prompt: str = ""
    outpaint: OutpaintInput | None = None
    output_format: OutputFormat = "png"
    output_quality: int | None = None
    restore: bool | None = None
    seed: int | None = None
    steps: int | None = None
    stream: bool = False
    strength: float | None = None
    task: Task | None = None
    webhook: WebhookInput | None = None
    width: int | None = None


# ----------------------------------------------------------------------------- answers


class ProgressView(_Response):
    step: int
    total: int


class TimingsView(_Response):
    decode_s: float
    denoise_s: float
    encode_s: float


class UsageView(_Response):
    completion_tokens: int
    prompt_tokens: int


class ImageView(_Response):
    """A result image: download it at `url` (`Client.images.download`)."""

    height: int
    id: str
    seed: int
    url: str
    width: int

    def as_input(self) -> ImageInput:
        """This image as the input of another job."""
        return ImageInput(id=self.id)


class UploadResponse(_Response):
    """`POST /v1/uploads`: the stored image."""

    height: int
    id: str
    url: str
    width: int

    def as_input(self) -> ImageInput:
        """This upload as the input of a job."""
        return ImageInput(id=self.id)


class JobView(_Response):
    """A job (`GET /v1/jobs/{id}`): status, progress, and its images once succeeded."""

    batch_size: int | None = None
    control: ControlInput | None = None
    conversation_id: str | None = None
    created_at: float
    edit_method: EditMethod | None = None
    error: str | None = None
    estimated_start_s: float | None = None
    events_url: str
    finished_at: float | None = None
    id: str
    images: list[ImageView]
    input_image_ids: list[str] = Field(default_factory=list)
    instruction: str | None = None
    mask_image_id: str | None = None
    model_profile: str | None = None
    negative_prompt: str
    outpaint: OutpaintInput | None = None
    progress: ProgressView
    prompt: str
    queue_position: int | None = None
    restore: bool | None = None
    restore_used: str | None = None
    source_caption: str | None = None
    started_at: float | None = None
    status: JobStatus
    strength: float | None = None
    target_caption: str | None = None
    task: Task
    timings: TimingsView

    @property
    def done(self) -> bool:
        """True once the job is succeeded, failed or canceled."""
        return self.status in TERMINAL_STATUSES


class ImagesResponse(JobView):
    """`POST /v1/images`: the job, plus what `refine` made of the prompt."""

    refine_note: str | None = None
    refined_prompt: str | None = None


class ChatResponse(_Response):
    """`POST /v1/chat`: the reply, the generation prompts and one job per prompt."""

    conversation_id: str
    finish_reason: str = "stop"
    generation_prompts: list[str]
    jobs: list[JobView]
    reply: str
    source_caption: str | None = None
    source_image_id: str | None = None
    usage: UsageView


class JobList(_Response):
    """A page of `GET /v1/jobs`; `next_cursor` is None after the last page."""

    data: list[JobView]
    next_cursor: str | None


class TurnView(_Response):
    created_at: float
    generation_prompts: list[str]
    image_ids: list[str]
    job_ids: list[str]
    role: Literal["user", "assistant"]
    source_image_id: str | None = None
    text: str


class LineageStep(_Response):
    image_id: str
    job_id: str | None
    source_image_id: str | None
    task: Task | None
    turn_index: int | None


class ConversationView(_Response):
    """`GET /v1/conversations/{id}`; `lineage` when asked for an image's."""

    created_at: float
    id: str
    lineage: list[LineageStep] | None = None
    turns: list[TurnView]
    updated_at: float


class ConversationSummary(_Response):
    created_at: float
    id: str
    title: str
    turn_count: int
    updated_at: float


class ConversationList(_Response):
    data: list[ConversationSummary]
    next_cursor: str | None


class ErrorDetail(_Response):
    """The gateway's error: `type` (e.g. `invalid_request`), `message`, the `field` at fault."""

    field: str | None = None
    message: str
    type: str


class ErrorResponse(_Response):
    error: ErrorDetail


# ----------------------------------------------------------------------------- streams
# Event payloads of the server-sent event streams (not schemas of the OpenAPI document).


class JobEvent(_Response):
    """`event: status` (the status changed) or `event: progress` of a job's event stream."""

    event: Literal["status", "progress"]
    job: JobView


class PreviewEvent(_Response):
    """`event: preview`: a small JPEG of the latents while the job denoises."""

    event: Literal["preview"] = "preview"
    height: int
    image_id: str
    image_index: int
    step: int
    total: int
    url: str
    width: int


class ChatDelta(_Response):
    """A piece of a streamed chat reply, as the mllm writes it (no generation prompts)."""

    content: str


class WebhookEvent(_Response):
    """The body of a webhook delivery, once its signature is verified."""

    event: WebhookEventName
    id: str
    job: JobView
    occurred_at: float


# The classes above that are schemas of the gateway's OpenAPI document, by that name.
SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    ImageInput,
    OutpaintInput,
    ControlInput,
    WebhookInput,
    ImagesRequest,
    ChatRequest,
    ProgressView,
    TimingsView,
    UsageView,
    ImageView,
    UploadResponse,
    JobView,
    ImagesResponse,
    ChatResponse,
    JobList,
    TurnView,
    LineageStep,
    ConversationView,
    ConversationSummary,
    ConversationList,
    ErrorDetail,
    ErrorResponse,
)
