"""Logic of the images area."""

from __future__ import annotations

from dataclasses import replace

import anyio

from services.common.blob_store import Blob
from services.gateway.assistant import ask_mllm
from services.gateway.controlnet import ControlInputs, prepare_control
from services.gateway.edit import (
    DESCRIBE_MESSAGE,
    EditInputs,
    no_target_caption,
    prepare_edit,
    target_caption_messages,
)
from services.gateway.errors import invalid, not_found
from services.gateway.generation_tags import parse_reply
from services.gateway.images.protocol import ImagesRequest, ImagesResponse, UploadResponse
from services.gateway.job_submitter import checked_params
from services.gateway.jobs.serving import image_url, job_view
from services.gateway.mllm_client import ChatMessage
from services.gateway.restoration import RestoreInputs, prepare_restore
from services.gateway.similar import SimilarInputs, describe_image, prepare_similar
from services.gateway.state import GatewayState
from services.gateway.task_inputs import (
    CONTRACT_TASKS,
    PreparedInputs,
    check_task_fields,
    prepare_inputs,
)
from services.gateway.uploads import decode_image
from services.gateway.webhooks.targets import accepted_webhook

ImagesInputs = PreparedInputs | SimilarInputs | EditInputs | ControlInputs | RestoreInputs

# Tasks that run without a prompt, and those that take no `refine` (the mllm writes their
# prompt anyway, or there is none).
_NO_PROMPT = ("restore",)
_NO_REFINE = ("similar", "edit", "restore")


async def refine_prompt(
    state: GatewayState, prompt: str, image_url: str | None = None
) -> tuple[str, str | None]:
    """Ask the mllm for a detailed generation prompt; returns (prompt, note), where the
    note says why the original prompt is kept when the reply holds no generation block.
    `image_url` (inpaint/outpaint: the masked image; controlnet: the control image, as a
    data URI) goes with the message."""
    message = state.settings.refine_template.replace("{prompt}", prompt)
    images = (image_url,) if image_url else ()
    result = await ask_mllm(state, [ChatMessage("user", message, image_urls=images)])
    prompts = parse_reply(result.content).prompts
    if not prompts:
        return prompt, "the MLLM wrote no generation prompt; the original prompt is used"
    return prompts[0], None


def check_prompt(request: ImagesRequest, max_chars: int) -> None:
    """422 naming the field: `prompt` missing where the task needs it (edit: unless
    target_caption is given) or given where it has none (restore, which takes no
    generation option but `seed` either), over the length limit, or `refine` asked where
    it does not apply."""
    task, prompt = request.task, request.prompt
    if task in _NO_PROMPT:
        for name in ("prompt", "negative_prompt", "steps", "guidance_scale"):
            if getattr(request, name) not in (None, ""):
                raise invalid(f"{task} takes no {name}", name)
    optional = (*_NO_PROMPT, "similar") + (("edit",) if request.target_caption else ())
    if prompt is None and task not in optional:
        needs = "the instruction" if task == "edit" else "a prompt"
        raise invalid(f"prompt is required for task {task!r} ({needs})", "prompt")
    for name in ("prompt", "source_caption", "target_caption"):
        value = getattr(request, name)
        if value is not None and len(value) > max_chars:
            raise invalid(f"{name} is longer than {max_chars} characters", name)
    if request.refine and task in _NO_REFINE:
        raise invalid(f"refine does not apply to {task!r}", "refine")


async def check_images_inputs(
    state: GatewayState, tenant: str, request: ImagesRequest
) -> ImagesInputs | None:
    """Check the task's fields and input images (4xx naming the field; nothing stored).
    Returns the task's inputs, None for t2i."""
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
    task, image = request.task, request.image
    if image is None:  # t2i (every other task needs an image: checked above)
        return None
    if task == "similar":
        return await prepare_similar(state, tenant, image, "image", request.width, request.height)
    if task == "edit":
        return await prepare_edit(
            state,
            tenant,
            image,
            "image",
            instruction=request.prompt or "",
            method=request.edit_method,
            source_caption=request.source_caption,
        )
    if task == "controlnet":
        return await prepare_control(
            state, tenant, image, "image", request.control, request.width, request.height
        )
    if task == "restore":
        assert request.reference is not None and request.mask is not None  # checked above
        return await prepare_restore(state, tenant, image, request.reference, request.mask)
    return await prepare_inputs(
        state,
        tenant,
        CONTRACT_TASKS[task],
        image,
        mask=request.mask,
        outpaint=request.outpaint,
        strength=request.strength,
        restore=request.restore,
    )


async def edit_captions(
    state: GatewayState, inputs: EditInputs, target_caption: str | None
) -> tuple[EditInputs, str]:
    """The edit with its source caption, and the target caption: each as given, else
    written by the mllm (source: its description of the image, 502 if it wrote none;
    target: its answer to the instruction right after that description, 502 if it wrote
    none)."""
    preview = await inputs.preview_data_uri()
    source = inputs.source_caption or await describe_image(state, preview, DESCRIBE_MESSAGE)
    if target_caption is None:
        messages = target_caption_messages(preview, source, inputs.instruction)
        prompts = parse_reply((await ask_mllm(state, messages)).content).prompts
        if not prompts:
            raise no_target_caption()
        target_caption = prompts[0]
    return replace(inputs, source_caption=source), target_caption


async def create_images_job(
    state: GatewayState, tenant: str, request: ImagesRequest
) -> ImagesResponse:
    """Queue one job. The inputs are checked before the mllm is asked, and inline images
    are stored only once the job is queued. similar: a t2i job from the mllm's description
    of the image, recording the image in its `input_image_ids`; edit: the target caption is
    the job's prompt, the source caption goes in `request.edit`."""
    check_prompt(request, state.settings.max_prompt_chars)
    params = checked_params(request, state.settings)
    webhook = accepted_webhook(request.webhook, state.settings)
    inputs = await check_images_inputs(state, tenant, request)
    # After validation (bad input is a 422 whatever the quota), before the mllm is asked.
    await state.quota.admit(tenant, params.n)

    prompt, refined, note = request.prompt or "", None, None
    if isinstance(inputs, SimilarInputs):  # always described by the mllm
        params = replace(params, width=inputs.width, height=inputs.height)
        prompt = refined = await describe_image(
            state, await inputs.preview_data_uri(), request.prompt
        )
    elif isinstance(inputs, EditInputs):
        inputs, prompt = await edit_captions(state, inputs, request.target_caption)
        refined = prompt if request.target_caption is None else None
    elif request.refine:
        preview = (
            await inputs.preview_data_uri()
            if isinstance(inputs, (PreparedInputs, ControlInputs))
            else None
        )
        prompt, note = await refine_prompt(state, prompt, preview)
        refined = prompt if note is None else None
    if isinstance(inputs, ControlInputs):
        params = replace(params, width=inputs.width, height=inputs.height)
    record = await state.submitter.submit(
        tenant=tenant,
        task=CONTRACT_TASKS[request.task],
        prompt=prompt,
        params=params,
        inputs=await inputs.store(state, tenant) if inputs is not None else None,
        webhook=webhook,
    )
    return ImagesResponse(**job_view(record).model_dump(), refined_prompt=refined, refine_note=note)


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
    return created.model_copy(update=job_view(record).model_dump())


async def read_image(state: GatewayState, tenant: str, image_id: str) -> Blob:
    """The stored image; 404 if unknown or expired."""
    blob = await state.blobs.get(tenant, image_id)
    if blob is None:
        raise not_found(f"image {image_id!r} not found")
    return blob


async def upload_image(state: GatewayState, tenant: str, image_b64: str) -> UploadResponse:
    """Check an uploaded image (decoding in a worker thread: CPU only) and store it once,
    as PNG."""
    image = await anyio.to_thread.run_sync(decode_image, image_b64, "image", state.image_limits)
    image_id = await state.blobs.put(tenant, image.png, "image/png")
    return UploadResponse(
        id=image_id, url=image_url(image_id), width=image.width, height=image.height
    )
