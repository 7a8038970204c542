"""Logic of the images area."""

from __future__ import annotations

from dataclasses import replace

import anyio
from fastapi import Request

from services.common.blob_store import Blob
from services.gateway.http.errors import invalid, not_found
from services.gateway.images.formats import MEDIA_TYPES, ImageFormat, convert_png
from services.gateway.images.protocol import ImagesRequest, ImagesResponse, UploadResponse
from services.gateway.jobs.serving import job_view
from services.gateway.mllm.assistant import ask_for_prompts
from services.gateway.mllm.client import ChatMessage
from services.gateway.state import GatewayState
from services.gateway.stores.job_submitter import checked_params
from services.gateway.tasks import edit
from services.gateway.tasks.base import CheckedInputs, ImageTask, MllmRole, TaskArgs
from services.gateway.tasks.similar import describe_image
from services.gateway.tasks.table import TASKS, check_task_fields
from services.gateway.uploads import DecodedImage, check_image, check_size, decode_image
from services.gateway.webhooks.targets import accepted_webhook


async def refine_prompt(
    state: GatewayState, prompt: str, image_url: str | None = None
) -> tuple[str, str | None]:
    """Ask the mllm for a detailed generation prompt; returns (prompt, note), where the
    note says why the original prompt is kept when the reply holds no generation block.
    `image_url` (inpaint/outpaint: the masked image; controlnet: the control image, as a
    data URI) goes with the message."""
    message = state.settings.refine_template.replace("{prompt}", prompt)
    images = (image_url,) if image_url else ()
    _, prompts = await ask_for_prompts(state, [ChatMessage("user", message, image_urls=images)])
    if not prompts:
        return prompt, "the MLLM wrote no generation prompt; the original prompt is used"
    return prompts[0], None


def check_prompt(request: ImagesRequest, max_chars: int) -> None:
    """422 naming the field: `prompt` missing where the task needs it (similar: never;
    edit: unless target_caption is given) or given where it has none (restore, which
    takes no generation option but `seed` either), over the length limit, or `refine`
    asked where the mllm does not write the prompt."""
    task = TASKS[request.task]
    if not task.takes_prompt:
        for name in ("prompt", "negative_prompt", "steps", "guidance_scale"):
            if getattr(request, name) not in (None, ""):
                raise invalid(f"{task.name} takes no {name}", name)
    needs_prompt = task.mllm is MllmRole.WRITES_PROMPT or (
        task.mllm is MllmRole.CAPTIONS_IMAGE and request.target_caption is None
    )
    if request.prompt is None and needs_prompt:
        needs = "the instruction" if task.mllm is MllmRole.CAPTIONS_IMAGE else "a prompt"
        raise invalid(f"prompt is required for task {task.name!r} ({needs})", "prompt")
    for name in ("prompt", "source_caption", "target_caption"):
        value = getattr(request, name)
        if value is not None and len(value) > max_chars:
            raise invalid(f"{name} is longer than {max_chars} characters", name)
    if request.refine and task.mllm is not MllmRole.WRITES_PROMPT:
        raise invalid(f"refine does not apply to {task.name!r}", "refine")


async def check_images_inputs(
    state: GatewayState, tenant: str, task: ImageTask, request: ImagesRequest
) -> CheckedInputs | None:
    """The task's fields and input images checked (4xx naming the field; nothing stored).
    None for a task without an input image (t2i)."""
    check_task_fields(
        request.task,
        image_field="image",
        has_image=request.image is not None,
        given={
            "mask": request.mask,
            "outpaint": request.outpaint,
            "strength": request.strength,
            "restore": request.restore,
            "reference": request.reference,
            "edit_method": request.edit_method,
            "source_caption": request.source_caption,
            "target_caption": request.target_caption,
            "control": request.control,
        },
        width=request.width,
        height=request.height,
        n=request.n,
    )
    if task.prepare is None or request.image is None:
        return None
    args = TaskArgs(
        options=request,
        mask=request.mask,
        reference=request.reference,
        instruction=request.prompt or "",
        source_caption=request.source_caption,
    )
    return await task.prepare(state, tenant, request.image, "image", args)


async def job_prompt(
    state: GatewayState, task: ImageTask, request: ImagesRequest, inputs: CheckedInputs | None
) -> tuple[CheckedInputs | None, str, str | None, str | None]:
    """The job's prompt, as the task's mllm role has it written: returns (inputs, prompt,
    refined_prompt, refine_note). similar: the mllm's description of the image; edit: the
    target caption (given, or the mllm's answer to the instruction), the inputs carrying
    the source caption; a prompt the mllm writes: the caller's, refined on request."""
    prompt = request.prompt or ""
    if task.mllm is MllmRole.DESCRIBES_IMAGE and inputs is not None:
        described = await describe_image(state, await inputs.preview_data_uri(), request.prompt)
        return inputs, described, described, None
    if task.mllm is MllmRole.CAPTIONS_IMAGE and inputs is not None:
        captioned = await edit.with_source_caption(state, inputs)
        if request.target_caption is not None:
            return captioned, request.target_caption, None, None
        target = await edit.target_caption(state, captioned)
        return captioned, target, target, None
    if task.mllm is MllmRole.WRITES_PROMPT and request.refine:
        preview = await inputs.preview_data_uri() if inputs is not None else None
        refined, note = await refine_prompt(state, prompt, preview)
        return inputs, refined, refined if note is None else None, note
    return inputs, prompt, None, None


async def create_images_job(
    state: GatewayState, tenant: str, request: ImagesRequest
) -> ImagesResponse:
    """Queue one job. The inputs are checked before the mllm is asked, and inline images
    are stored only once the job is queued. similar: a t2i job from the mllm's description
    of the image, recording the image in its `input_image_ids`; edit: the target caption is
    the job's prompt, the source caption goes in `request.edit`."""
    task = TASKS[request.task]
    check_prompt(request, state.settings.max_prompt_chars)
    params = checked_params(request, state.settings)
    webhook = await accepted_webhook(
        request.webhook, state.settings, state.redis, state.keys, tenant
    )
    inputs = await check_images_inputs(state, tenant, task, request)
    # After validation (bad input is a 422 whatever the quota), before the mllm is asked.
    await state.quota.admit(tenant, params.n)
    inputs, prompt, refined, note = await job_prompt(state, task, request, inputs)
    if inputs is not None and inputs.output_size is not None:
        params = replace(params, width=inputs.output_size[0], height=inputs.output_size[1])
    record = await state.submitter.submit(
        tenant=tenant,
        task=task.contract_task,
        prompt=prompt,
        params=params,
        inputs=await inputs.store(state, tenant) if inputs is not None else None,
        webhook=webhook,
    )
    return ImagesResponse(
        **job_view(record, state.links(tenant)).model_dump(),
        refined_prompt=refined,
        refine_note=note,
    )


async def create_images_job_waiting(
    state: GatewayState, tenant: str, request: ImagesRequest, wait_s: int | None
) -> ImagesResponse:
    """Queue the job, then wait up to `wait_s` seconds for it to end (a bounded wait)."""
    created = await create_images_job(state, tenant, request)
    if not wait_s:
        return created
    record = await state.events.wait_until_done(tenant, created.id, wait_s)
    if record is None:  # expired or deleted while we waited: the creation still stands
        return created
    return created.model_copy(update=job_view(record, state.links(tenant)).model_dump())


async def read_image(state: GatewayState, tenant: str, image_id: str) -> Blob:
    """The stored image; 404 if unknown or expired."""
    blob = await state.blobs.get(tenant, image_id)
    if blob is None:
        raise not_found(f"image {image_id!r} not found")
    return blob


async def image_redirect(state: GatewayState, tenant: str, image_id: str) -> str | None:
    """Where to redirect a download of the stored image: the object store's presigned URL
    (LLMGA_BLOB_STORE=s3), after checking that the image exists and has not expired; None
    when the gateway serves the bytes itself (Redis, or presigned URLs turned off)."""
    url = state.blobs.presigned_url(tenant, image_id)
    if url is None:
        return None
    if not await state.blobs.exists(tenant, image_id):
        raise not_found(f"image {image_id!r} not found")
    return url


async def converted_image(
    blob: Blob, image_format: ImageFormat | None, quality: int | None
) -> tuple[bytes, str]:
    """(bytes, media type) of a stored image in `image_format` (None: as stored),
    converted in a worker thread; 422 naming `quality` unless the format takes one."""
    if quality is not None and image_format not in ("jpeg", "webp"):
        raise invalid("quality applies to format jpeg or webp only", "quality")
    if image_format is None or (image_format == "png" and blob.content_type == "image/png"):
        return blob.data, blob.content_type
    data = await anyio.to_thread.run_sync(convert_png, blob.data, image_format, quality)
    return data, MEDIA_TYPES[image_format]


async def delete_image(state: GatewayState, tenant: str, image_id: str) -> None:
    """Delete the stored image; 404 if unknown or expired."""
    if not await state.blobs.delete(tenant, image_id):
        raise not_found(f"image {image_id!r} not found")


UPLOAD_FIELD = "image"


async def upload_image(state: GatewayState, tenant: str, image_b64: str) -> UploadResponse:
    """Check an uploaded image (decoding in a worker thread: CPU only) and store it once,
    as PNG."""
    image = await anyio.to_thread.run_sync(decode_image, image_b64, "image", state.image_limits)
    return await _store_upload(state, tenant, image)


async def upload_image_form(state: GatewayState, tenant: str, request: Request) -> UploadResponse:
    """`POST /v1/uploads` as `multipart/form-data`: the file field `image` (or a text field
    `image` holding base64, as in JSON), with the JSON form's limits and errors (413/422
    naming `image`). The body limit holds the whole form; a file part over 1 MiB is
    spooled to a temporary file, not kept in memory."""
    limits = state.image_limits
    max_fields = 8
    async with request.form(
        max_files=1, max_fields=max_fields, max_part_size=state.settings.max_request_bytes
    ) as form:
        value = form.get(UPLOAD_FIELD)
        if value is None:
            raise invalid(
                f"{UPLOAD_FIELD}: missing; send the image as the multipart file field "
                f"{UPLOAD_FIELD!r}",
                UPLOAD_FIELD,
            )
        if isinstance(value, str):
            return await upload_image(state, tenant, value)
        if value.size is not None:
            check_size(value.size, UPLOAD_FIELD, limits.max_bytes)
        data = await value.read(limits.max_bytes + 1)
    check_size(len(data), UPLOAD_FIELD, limits.max_bytes)
    if not data:
        raise invalid(f"{UPLOAD_FIELD}: empty image", UPLOAD_FIELD)
    image = await anyio.to_thread.run_sync(check_image, data, UPLOAD_FIELD, limits)
    return await _store_upload(state, tenant, image)


async def _store_upload(state: GatewayState, tenant: str, image: DecodedImage) -> UploadResponse:
    """Store a checked upload once, as PNG."""
    image_id = await state.blobs.put(tenant, image.png, "image/png")
    return UploadResponse(
        id=image_id, url=state.links(tenant).image(image_id), width=image.width, height=image.height
    )
