"""Keyword arguments of `images.create(...)` and `chat(...)`: the request bodies' fields,
typed for editors and type checkers (tests check them against `models.ImagesRequest` and
`models.ChatRequest`)."""

from typing import Required, TypedDict

from .models import (
    ControlInput,
    EditMethod,
    ImageInput,
    OutpaintInput,
    OutputFormat,
    Task,
    WebhookInput,
)


class ImagesFields(TypedDict, total=False):
    """`POST /v1/images` (docs: `ImagesRequest`)."""

    control: ControlInput | None
    edit_method: EditMethod | None
    guidance_scale: float | None
    height: int | None
    image: ImageInput | None
    mask: ImageInput | None
    n: int
    negative_prompt: str
    outpaint: OutpaintInput | None
    output_format: OutputFormat
    output_quality: int | None
    prompt: str | None
    reference: ImageInput | None
    refine: bool
    restore: bool | None
    seed: int | None
    source_caption: str | None
    steps: int | None
    strength: float | None
    target_caption: str | None
    task: Task
    webhook: WebhookInput | None
    width: int | None


class ChatFields(TypedDict, total=False):
    """`POST /v1/chat` (docs: `ChatRequest`), `stream` aside: `chat()` or `chat_stream()`."""

    control: ControlInput | None
    conversation_id: str | None
    edit_method: EditMethod | None
    generate: bool | None
    guidance_scale: float | None
    height: int | None
    images: list[ImageInput]
    mask: ImageInput | None
    message: Required[str]
    n: int
    negative_prompt: str
    outpaint: OutpaintInput | None
    output_format: OutputFormat
    output_quality: int | None
    restore: bool | None
    seed: int | None
    steps: int | None
    strength: float | None
    task: Task | None
    webhook: WebhookInput | None
    width: int | None
