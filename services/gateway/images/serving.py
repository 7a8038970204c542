"""Logic of the images area."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from services.common.blob_store import Blob
from services.gateway.assistant import ask_mllm
from services.gateway.errors import invalid, not_found, not_implemented
from services.gateway.generation_tags import parse_reply
from services.gateway.images.protocol import ImagesRequest, ImagesResponse, UploadResponse
from services.gateway.job_submitter import checked_params
from services.gateway.jobs.serving import image_url, job_view
from services.gateway.mllm_client import ChatMessage
from services.gateway.state import GatewayState
from services.gateway.task_inputs import (
    SERVED_TASKS,
    PreparedInputs,
    check_task_fields,
    load_input_image,
    prepare_inputs,
)
from services.gateway.uploads import decode_image


def refine_prompt(
    state: GatewayState, prompt: str, image_url: str | None = None
) -> tuple[str, str | None]:
    """Ask the mllm for a detailed generation prompt; returns (prompt, note), where the
    note says why the original prompt is kept when the reply holds no generation block.
    `image_url` (inpaint/outpaint: the masked image as a data URI) goes with the message."""
    message = state.settings.refine_template.replace("{prompt}", prompt)
    images = (image_url,) if image_url else ()
    result = ask_mllm(state, [ChatMessage("user", message, image_urls=images)])
    prompts = parse_reply(result.content).prompts
    if not prompts:
        return prompt, "the MLLM wrote no generation prompt; the original prompt is used"
    return prompts[0], None


def check_images_inputs(
    state: GatewayState, tenant: str, request: ImagesRequest
) -> PreparedInputs | None:
    """Check the task's fields and input images (4xx naming the field; nothing stored);
    501 for a task not served yet. Returns the inpaint/outpaint inputs, None for t2i."""
    check_task_fields(
        request.task,
        image_field="image",
        has_image=request.image is not None,
        mask=request.mask,
        outpaint=request.outpaint,
        strength=request.strength,
        width=request.width,
        height=request.height,
    )
    if request.task not in SERVED_TASKS:
        if request.image is not None:  # bad input is the client's error, whatever the task
            load_input_image(state, tenant, request.image, "image")
        raise not_implemented(f"task {request.task!r} is not implemented yet", "task")
    if request.image is None:
        return None
    return prepare_inputs(
        state,
        tenant,
        SERVED_TASKS[request.task],
        request.image,
        mask=request.mask,
        outpaint=request.outpaint,
        strength=request.strength,
    )


def create_images_job(state: GatewayState, tenant: str, request: ImagesRequest) -> ImagesResponse:
    """Queue one job (501 for tasks not served yet). Inpaint/outpaint inputs are checked
    before the mllm is asked, and inline images are stored only once the job is queued."""
    settings = state.settings
    if len(request.prompt) > settings.max_prompt_chars:
        raise invalid(f"prompt is longer than {settings.max_prompt_chars} characters", "prompt")
    params = checked_params(request, settings)
    inputs = check_images_inputs(state, tenant, request)

    prompt, refined, note = request.prompt, None, None
    if request.refine:
        preview = inputs.preview_data_uri() if inputs is not None else None
        prompt, note = refine_prompt(state, request.prompt, preview)
        refined = prompt if note is None else None
    record = state.submitter.submit(
        tenant=tenant,
        task=SERVED_TASKS[request.task],
        prompt=prompt,
        params=params,
        inputs=inputs.store(state, tenant) if inputs is not None else None,
    )
    return ImagesResponse(**job_view(record).model_dump(), refined_prompt=refined, refine_note=note)


async def create_images_job_waiting(
    state: GatewayState, tenant: str, request: ImagesRequest, wait_s: int | None
) -> ImagesResponse:
    """Queue the job, then wait up to `wait_s` seconds for it to end (a bounded wait)."""
    created = await run_in_threadpool(create_images_job, state, tenant, request)
    if not wait_s:
        return created
    record = await state.events.wait_until_done(tenant, created.id, wait_s)
    if record is None:  # expired or deleted while we waited: the creation still stands
        return created
    return created.model_copy(update=job_view(record).model_dump())


def read_image(state: GatewayState, tenant: str, image_id: str) -> Blob:
    """The stored image; 404 if unknown or expired."""
    blob = state.blobs.get(tenant, image_id)
    if blob is None:
        raise not_found(f"image {image_id!r} not found")
    return blob


def upload_image(state: GatewayState, tenant: str, image_b64: str) -> UploadResponse:
    """Check an uploaded image and store it once, as PNG."""
    image = decode_image(image_b64, "image", state.image_limits)
    image_id = state.blobs.put(tenant, image.png, "image/png")
    return UploadResponse(
        id=image_id, url=image_url(image_id), width=image.width, height=image.height
    )
