"""Routes of OpenAI's Images API: `openai.OpenAI(base_url=<gateway>/v1)`'s
`images.generate`, `images.edit` and `images.create_variation` work unchanged. Each
route queues one job as `POST /v1/images` does, waits for it (LLMGA_OPENAI_IMAGES_WAIT_S)
and answers its images. Errors have OpenAI's body (openai_chat/errors.py)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.gateway.deps import StateDep, TenantDep
from services.gateway.http.errors import error_body
from services.gateway.http.event_streams import event_stream
from services.gateway.http.openapi_responses import (
    Responses,
    error,
    protected,
    too_large,
    upstream_errors,
)
from services.gateway.http.responses import ModelResponse
from services.gateway.openai_chat.protocol import OpenAIErrorResponse
from services.gateway.openai_images.protocol import (
    ImageEditForm,
    ImageGenerationRequest,
    ImageVariationForm,
    OpenAIImagesResponse,
)
from services.gateway.openai_images.serving import (
    NO_RETRY,
    JobNotDone,
    edit,
    generate,
    queue_generation,
    variation,
)
from services.gateway.openai_images.streaming import generation_events

router = APIRouter(tags=["openai"])

_ERRORS: Responses = {
    **protected(OpenAIErrorResponse, creates_jobs=True),
    400: error("Malformed body; more than one image.", model=OpenAIErrorResponse),
    404: error("An expired image.", model=OpenAIErrorResponse),
    409: error("The job was canceled (`job_canceled`).", model=OpenAIErrorResponse),
    **too_large("Body or image over its limit.", model=OpenAIErrorResponse),
    415: error("A content type other than JSON or multipart.", model=OpenAIErrorResponse),
    422: error("Invalid field (named in `param`).", model=OpenAIErrorResponse),
    500: error("The job failed (`job_failed`).", model=OpenAIErrorResponse),
    **upstream_errors(OpenAIErrorResponse),
    504: error(
        "`job_timeout`: the job did not end within LLMGA_OPENAI_IMAGES_WAIT_S (`job_id`, "
        "`job`: it keeps running), or the mllm timed out (`upstream_timeout`).",
        model=OpenAIErrorResponse,
    ),
}


def _form_body(
    fields: type[ImageEditForm] | type[ImageVariationForm], mask: bool
) -> dict[str, Any]:
    """The multipart request body of edits/variations, for the OpenAPI document."""
    schema = fields.model_json_schema()
    properties: dict[str, Any] = {
        "image": {"type": "string", "format": "binary", "description": "The image (one)."},
        **schema["properties"],
    }
    if mask:
        properties["mask"] = {
            "type": "string",
            "format": "binary",
            "description": "Where to edit: transparent (alpha < 0.5) = regenerate, the image's "
            "size; without transparency white = regenerate. Omitted: an instruction edit.",
        }
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": properties,
                "required": ["image", *schema.get("required", [])],
            }
        }
    }
    if mask:
        content["application/json"] = {
            "schema": {
                "type": "object",
                "description": 'As the form, with `images: [{"image_url": data URI}]` (one) '
                'and `mask: {"image_url": data URI}`.',
            }
        }
    return {"requestBody": {"required": True, "content": content}}


async def _answer(work: Awaitable[OpenAIImagesResponse]) -> Response:
    try:
        return ModelResponse(await work)
    except JobNotDone as error:
        body = error_body(
            error.code,
            error.message,
            job_id=error.job.id,
            job=error.job.model_dump(mode="json"),
        )
        return JSONResponse(body, status_code=error.status, headers=NO_RETRY)


@router.post(
    "/v1/images/generations",
    operation_id="createImageGeneration",
    response_model=OpenAIImagesResponse,
    responses={
        **_ERRORS,
        200: {
            "content": {"text/event-stream": {}},
            "description": "The images; with `stream: true` server-sent events "
            "(`image_generation.partial_image`, then `image_generation.completed`).",
        },
    },
)
async def images_generations(
    request: ImageGenerationRequest, state: StateDep, tenant: TenantDep
) -> Response:
    """OpenAI's image generation: a t2i job (as `POST /v1/images`), waited for, answered
    as `{created, data: [{url | b64_json, revised_prompt}], llmga: {job}}`. Extra fields:
    `seed`, `steps`, `negative_prompt`, `refine`. With `stream: true`: server-sent events
    in OpenAI's Images streaming format, `partial_images` (0..3) previews as
    `image_generation.partial_image`, then one `image_generation.completed` per image."""
    if request.stream:
        job_id = await queue_generation(state, tenant, request)
        return event_stream(generation_events(state, tenant, job_id, request), state.settings)
    return await _answer(generate(state, tenant, request))


@router.post(
    "/v1/images/edits",
    operation_id="createImageEdit",
    response_model=OpenAIImagesResponse,
    responses=_ERRORS,
    openapi_extra=_form_body(ImageEditForm, mask=True),
)
async def images_edits(request: Request, state: StateDep, tenant: TenantDep) -> Response:
    """OpenAI's image edit: one `image` (or `image[]`) and the `prompt`; with a `mask` an
    inpaint job (pixels outside the mask are kept exactly), without one an instruction
    edit job (the mllm describes the image and writes the target caption). `size` may
    be omitted, 'auto' or the image's size."""
    return await _answer(edit(state, tenant, request))


@router.post(
    "/v1/images/variations",
    operation_id="createImageVariation",
    response_model=OpenAIImagesResponse,
    responses=_ERRORS,
    openapi_extra=_form_body(ImageVariationForm, mask=False),
)
async def images_variations(request: Request, state: StateDep, tenant: TenantDep) -> Response:
    """OpenAI's image variation: the mllm describes `image` and a t2i job draws the
    description (the `similar` task; revised_prompt is the description)."""
    return await _answer(variation(state, tenant, request))
