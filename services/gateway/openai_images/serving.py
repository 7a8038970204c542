"""Logic of OpenAI's Images API: each request becomes one `POST /v1/images` job through
images/serving.py (the same checks, quota, mllm steps and submission), waited for up to
LLMGA_OPENAI_IMAGES_WAIT_S, and answered in OpenAI's shape.

- generations: a t2i job (`refine` on request);
- edits: one image; with a `mask` (OpenAI's rule: transparent = edit; the gateway's mask
  rule reads alpha the same way) an inpaint job, without one an instruction edit job
  (the mllm writes the captions);
- variations: a similar job (the mllm describes the image; a t2i job draws it).
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from services.gateway.http.errors import ApiError, invalid
from services.gateway.images.protocol import ImagesRequest
from services.gateway.images.serving import (
    converted_image,
    create_images_job,
    create_images_job_waiting,
    read_image,
)
from services.gateway.jobs.protocol import JobView
from services.gateway.openai_images.protocol import (
    ImageEditForm,
    ImageGenerationRequest,
    ImageVariationForm,
    LlmgaImagesExtra,
    OpenAIImage,
    OpenAIImageOptions,
    OpenAIImagesResponse,
)
from services.gateway.protocol import ImageInput
from services.gateway.settings import GatewaySettings
from services.gateway.state import GatewayState
from services.gateway.uploads import DecodedImage, check_image, check_size, decode_base64

M = TypeVar("M", bound=BaseModel)
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
# OpenAI's clients send no retry of an answer that carries this (the job is queued).
NO_RETRY = {"x-should-retry": "false"}


class JobNotDone(Exception):
    """The job did not succeed within the wait: answered as an error naming the job."""

    def __init__(self, status: int, code: str, message: str, job: JobView) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.job = job


def parse_size(size: str | None, settings: GatewaySettings) -> tuple[int, int] | None:
    """'WxH' -> (W, H), each a multiple of 8 within min..max; None for omitted / 'auto';
    422 naming `size` otherwise."""
    if size is None or size.strip().lower() == "auto":
        return None
    match = _SIZE.match(size)
    if match is None:
        raise invalid(
            f"size must be 'WIDTHxHEIGHT' (e.g. '512x512') or 'auto', not {size!r}", "size"
        )
    width, height = int(match[1]), int(match[2])
    low, high = settings.min_size, settings.max_size
    for side in (width, height):
        if side % 8 or not low <= side <= high:
            raise invalid(
                f"size {width}x{height}: each side must be a multiple of 8 between {low} "
                f"and {high}",
                "size",
            )
    return width, height


def _options(options: OpenAIImageOptions) -> dict[str, Any]:
    """The gateway's generation options of an OpenAI request."""
    return {
        "n": options.n,
        "seed": options.seed,
        "steps": options.steps,
        "negative_prompt": options.negative_prompt,
    }


def _generation_job(state: GatewayState, request: ImageGenerationRequest) -> ImagesRequest:
    size = parse_size(request.size, state.settings)
    return ImagesRequest(
        task="t2i",
        prompt=request.prompt,
        refine=request.refine,
        width=size[0] if size else None,
        height=size[1] if size else None,
        **_options(request),
    )


async def generate(
    state: GatewayState, tenant: str, request: ImageGenerationRequest
) -> OpenAIImagesResponse:
    """`POST /v1/images/generations`: a t2i job."""
    return await _run(state, tenant, _generation_job(state, request), request)


async def queue_generation(
    state: GatewayState, tenant: str, request: ImageGenerationRequest
) -> str:
    """`POST /v1/images/generations` with `stream`: queue the t2i job (its errors are
    answered before the stream starts); returns its id (streaming.py follows it)."""
    created = await create_images_job(state, tenant, _generation_job(state, request))
    return created.id


@dataclass(frozen=True)
class ImageForm:
    """A multipart (or JSON) request of edits/variations: its fields and its images."""

    fields: dict[str, Any]
    image: DecodedImage
    mask: DecodedImage | None


async def edit(state: GatewayState, tenant: str, request: Request) -> OpenAIImagesResponse:
    """`POST /v1/images/edits`: with a mask an inpaint job, without one an edit job."""
    form = await read_image_form(state, request, mask=True)
    options = _validated(ImageEditForm, form.fields)
    _check_same_size(options.size, form.image, state.settings)
    job = ImagesRequest(
        task="inpaint" if form.mask is not None else "edit",
        prompt=options.prompt,
        image=_inline(form.image),
        mask=_inline(form.mask) if form.mask is not None else None,
        **_options(options),
    )
    return await _run(state, tenant, job, options)


async def variation(state: GatewayState, tenant: str, request: Request) -> OpenAIImagesResponse:
    """`POST /v1/images/variations`: a similar job (the mllm describes the image)."""
    form = await read_image_form(state, request, mask=False)
    options = _validated(ImageVariationForm, form.fields)
    size = parse_size(options.size, state.settings)
    job = ImagesRequest(
        task="similar",
        image=_inline(form.image),
        width=size[0] if size else None,
        height=size[1] if size else None,
        **_options(options),
    )
    return await _run(state, tenant, job, options)


def _check_same_size(size: str | None, image: DecodedImage, settings: GatewaySettings) -> None:
    """Edits keep the image's size: `size` may be omitted, 'auto' or that size."""
    parsed = parse_size(size, settings)
    if parsed is not None and parsed != (image.width, image.height):
        raise invalid(
            f"size {parsed[0]}x{parsed[1]}: an edit keeps the image's size, "
            f"{image.width}x{image.height}; omit size or send 'auto'",
            "size",
        )


def _inline(image: DecodedImage) -> ImageInput:
    return ImageInput(b64=base64.b64encode(image.png).decode("ascii"))


def _validated(model: type[M], fields: dict[str, Any]) -> M:
    """The form's fields as `model`, errors as FastAPI words body errors (422)."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_input=False)]
        ) from None


async def _run(
    state: GatewayState, tenant: str, job: ImagesRequest, options: OpenAIImageOptions
) -> OpenAIImagesResponse:
    """Queue the job as `POST /v1/images` does, wait for it, answer its images."""
    waited = await create_images_job_waiting(
        state, tenant, job, state.settings.openai_images_wait_s
    )
    # The job as JobView (a waited answer holds the re-read view's fields as plain data).
    view = JobView.model_validate(waited.model_dump(warnings=False))
    if view.status in ("queued", "running"):
        raise JobNotDone(
            504,
            "job_timeout",
            f"job {view.id} did not finish within {state.settings.openai_images_wait_s} s; "
            f"it keeps running: follow it at GET /v1/jobs/{view.id}",
            view,
        )
    if view.status != "succeeded":
        status = 500 if view.status == "failed" else 409
        reason = f": {view.error}" if view.error else ""
        raise JobNotDone(status, f"job_{view.status}", f"job {view.id} {view.status}{reason}", view)
    fmt = options.output_format or "png"
    quality = options.output_compression if fmt != "png" else None
    links = state.links(tenant)
    data = []
    for image in view.images:
        if options.response_format == "b64_json":
            blob = await read_image(state, tenant, image.id)
            content, _ = await converted_image(blob, fmt, quality)
            item = OpenAIImage(
                b64_json=base64.b64encode(content).decode("ascii"), revised_prompt=view.prompt
            )
        else:
            url = links.image(image.id, None if fmt == "png" else fmt, quality)
            item = OpenAIImage(url=url, revised_prompt=view.prompt)
        data.append(item)
    first = view.images[0] if view.images else None
    return OpenAIImagesResponse(
        created=int(time.time()),
        data=data,
        output_format=fmt,
        size=f"{first.width}x{first.height}" if first else "",
        llmga=LlmgaImagesExtra(job=view),
    )


IMAGE_FIELD = "image"
MASK_FIELD = "mask"


def _too_many(count: int) -> ApiError:
    return ApiError(
        400,
        "invalid_request",
        f"{IMAGE_FIELD}: one image is taken, not {count}",
        IMAGE_FIELD,
    )


async def read_image_form(state: GatewayState, request: Request, mask: bool) -> ImageForm:
    """The request's fields and images: `multipart/form-data` with the file `image` (or
    `image[]`, one) and, for edits, `mask`; or (edits) JSON with `images: [{"image_url":
    data URI}]` and `mask: {"image_url": …}`. Images are checked with the upload limits
    (413/422 naming the field); more than one image is 400 naming `image`."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    limits = state.image_limits
    images: list[bytes] = []
    masks: list[bytes] = []
    fields: dict[str, Any] = {}
    if media_type == "multipart/form-data":
        async with request.form(
            max_files=4, max_fields=64, max_part_size=state.settings.max_request_bytes
        ) as form:
            for key, value in form.multi_items():
                name = key.removesuffix("[]")
                target = {IMAGE_FIELD: images, MASK_FIELD: masks}.get(name)
                if target is None:
                    fields[key] = value if isinstance(value, str) else value.filename
                elif isinstance(value, UploadFile):
                    target.append(await _read_file(value, name, limits.max_bytes))
                else:
                    target.append(decode_base64(value, name, limits.max_bytes))
    elif media_type == "application/json" and mask:
        try:
            body = json.loads(await request.body())
        except ValueError as error:
            raise ApiError(400, "invalid_json", f"malformed JSON body: {error}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the request body must be a JSON object")
        fields = body
        listed = fields.pop("images", None)
        if not isinstance(listed, list):
            raise invalid("images: a list of one {'image_url': data URI}", "images")
        if len(listed) > 1:
            raise _too_many(len(listed))
        images = [_json_image(item, "images[0]", limits.max_bytes) for item in listed]
        if fields.get(MASK_FIELD) is not None:
            masks = [_json_image(fields.pop(MASK_FIELD), MASK_FIELD, limits.max_bytes)]
        fields.pop(MASK_FIELD, None)
    else:
        accepted = "multipart/form-data" + (" or application/json" if mask else "")
        raise ApiError(
            415 if media_type else 400,
            "unsupported_media_type",
            f"the body must be {accepted}, not {media_type or 'empty'}",
        )
    if not images:
        raise invalid(
            f"{IMAGE_FIELD}: missing; send the image as the multipart file field {IMAGE_FIELD!r}",
            IMAGE_FIELD,
        )
    if len(images) > 1:
        raise _too_many(len(images))
    if len(masks) > 1:
        raise ApiError(
            400, "invalid_request", f"{MASK_FIELD}: one mask, not {len(masks)}", MASK_FIELD
        )
    if masks and not mask:
        raise invalid(f"{MASK_FIELD}: variations take no mask", MASK_FIELD)
    image = await anyio.to_thread.run_sync(check_image, images[0], IMAGE_FIELD, limits)
    checked_mask = (
        await anyio.to_thread.run_sync(check_image, masks[0], MASK_FIELD, limits) if masks else None
    )
    return ImageForm(fields=fields, image=image, mask=checked_mask)


async def _read_file(value: UploadFile, field: str, max_bytes: int) -> bytes:
    """A file part's bytes; 413 over the upload limit, 422 when empty."""
    if value.size is not None:
        check_size(value.size, field, max_bytes)
    data = await value.read(max_bytes + 1)
    check_size(len(data), field, max_bytes)
    if not data:
        raise invalid(f"{field}: empty image", field)
    return data


def _json_image(item: object, field: str, max_bytes: int) -> bytes:
    """The bytes of `{"image_url": "data:image/...;base64,…"}` (no URL is fetched)."""
    url = item.get("image_url") if isinstance(item, dict) else None
    if isinstance(url, dict):  # {"image_url": {"url": …}} as in chat content parts
        url = url.get("url")
    if not isinstance(url, str) or not url.startswith("data:"):
        raise invalid(
            f"{field}.image_url: a data:image/...;base64, URI (no URL is fetched)",
            f"{field}.image_url",
        )
    return decode_base64(url, f"{field}.image_url", max_bytes)
