"""Logic of the images area."""

from __future__ import annotations

from dataclasses import replace

from starlette.concurrency import run_in_threadpool

from services.common.blob_store import Blob
from services.common.contract import Task
from services.gateway.assistant import ask_mllm
from services.gateway.errors import ApiError, invalid, not_found, not_implemented
from services.gateway.generation_tags import parse_reply
from services.gateway.images.protocol import ImagesRequest, ImagesResponse, UploadResponse
from services.gateway.job_submitter import checked_params
from services.gateway.jobs.serving import image_url, job_view
from services.gateway.mllm_client import ChatMessage
from services.gateway.similar import DEFAULT_SIMILAR_MESSAGE, SimilarInputs, prepare_similar
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


def describe_image(state: GatewayState, inputs: SimilarInputs, text: str | None) -> str:
    """similar: the mllm's description of the image (its first generation prompt), asked
    with `text` (default DEFAULT_SIMILAR_MESSAGE); 502 if it wrote none."""
    message = ChatMessage(
        "user", text or DEFAULT_SIMILAR_MESSAGE, image_urls=(inputs.preview_data_uri(),)
    )
    prompts = parse_reply(ask_mllm(state, [message]).content).prompts
    if not prompts:
        raise ApiError(
            502, "upstream_error", "the mllm wrote no generation prompt describing the image"
        )
    return prompts[0]


def check_images_inputs(
    state: GatewayState, tenant: str, request: ImagesRequest
) -> PreparedInputs | SimilarInputs | None:
    """Check the task's fields and input images (4xx naming the field; nothing stored);
    501 for a task not served yet. Returns the inpaint/outpaint/similar inputs, None for
    t2i."""
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
    if request.task == "similar":
        if request.image is None:
            raise invalid("similar needs an input image", "image")
        return prepare_similar(state, tenant, request.image, "image", request.width, request.height)
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
    """Queue one job (501 for tasks not served yet). Inpaint/outpaint/similar inputs are
    checked before the mllm is asked, and inline images are stored only once the job is
    queued. similar: a t2i job from the mllm's description of the image, recording the
    image in its `input_image_ids`."""
    settings = state.settings
    if request.prompt is None and request.task != "similar":
        raise invalid(f"prompt is required for task {request.task!r}", "prompt")
    if request.prompt is not None and len(request.prompt) > settings.max_prompt_chars:
        raise invalid(f"prompt is longer than {settings.max_prompt_chars} characters", "prompt")
    params = checked_params(request, settings)
    inputs = check_images_inputs(state, tenant, request)

    task = Task.TASK_T2I if request.task == "similar" else SERVED_TASKS[request.task]
    prompt, refined, note = request.prompt or "", None, None
    if isinstance(inputs, SimilarInputs):  # always described by the mllm
        params = replace(params, width=inputs.width, height=inputs.height)
        prompt = refined = describe_image(state, inputs, request.prompt)
    elif request.refine:
        preview = inputs.preview_data_uri() if inputs is not None else None
        prompt, note = refine_prompt(state, prompt, preview)
        refined = prompt if note is None else None
    record = state.submitter.submit(
        tenant=tenant,
        task=task,
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
