"""Routes of the images area."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.gateway.deps import StateDep, TenantDep
from services.gateway.http.idempotency import IdempotencyKey, run_idempotent
from services.gateway.http.responses import ModelResponse
from services.gateway.http.waiting import WaitSeconds, mark_applied
from services.gateway.images.protocol import (
    ImagesRequest,
    ImagesResponse,
    UploadRequest,
    UploadResponse,
)
from services.gateway.images.serving import (
    create_images_job_waiting,
    delete_image,
    read_image,
    upload_image,
)
from services.gateway.protocol import ErrorResponse

router = APIRouter(tags=["images"])

_INVALID = {"model": ErrorResponse, "description": "Invalid field (named in `field`)."}


@router.post(
    "/v1/images",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImagesResponse,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown or expired input image id."},
        409: {
            "model": ErrorResponse,
            "description": "Idempotency-Key used for another request, or still in progress.",
        },
        413: {"model": ErrorResponse, "description": "An image over LLMGA_MAX_UPLOAD_BYTES."},
        422: _INVALID,
        502: {
            "model": ErrorResponse,
            "description": "The mllm gave an unusable answer (similar: no description; edit: "
            "no source or target caption).",
        },
        503: {"model": ErrorResponse, "description": "The mllm or the job queue is down."},
        504: {"model": ErrorResponse, "description": "The mllm timed out."},
    },
)
async def create_images(
    request: ImagesRequest,
    state: StateDep,
    tenant: TenantDep,
    wait: WaitSeconds,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Queue a generation job (t2i; inpaint: `image` + `mask`; outpaint: `image` +
    `outpaint`; similar: `image`; edit: `image` + the instruction as `prompt`, the mllm
    writing the captions not given; controlnet: `image` as the control source + `prompt`;
    restore: `image` + `reference` + `mask`); follow it at `GET /v1/jobs/{id}` (also in
    `Location`) or its `/events`.
    `Prefer: wait=N` answers when the job ends or after N seconds (still 202); an
    `Idempotency-Key` makes retries return the first answer."""

    async def handle() -> Response:
        job = await create_images_job_waiting(state, tenant, request, wait)
        response = ModelResponse(
            job,
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/v1/jobs/{job.id}"},
        )
        mark_applied(response, wait)
        return response

    return await run_idempotent(
        state.idempotency, tenant, idempotency_key, "POST /v1/images", request, handle
    )


@router.get(
    "/v1/images/{image_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The image bytes."},
        404: {"model": ErrorResponse, "description": "Unknown or expired image."},
    },
)
async def download_image(
    image_id: str,
    state: StateDep,
    tenant: TenantDep,
) -> Response:
    """The image (PNG). Images never change, so clients may cache them."""
    blob = await read_image(state, tenant, image_id)
    return Response(
        content=blob.data,
        media_type=blob.content_type,
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


@router.delete(
    "/v1/images/{image_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"model": ErrorResponse, "description": "Unknown or expired image."}},
)
async def remove_image(
    image_id: str,
    state: StateDep,
    tenant: TenantDep,
) -> Response:
    """Delete an uploaded or generated image now, not at its expiry (LLMGA_IMAGE_TTL_S).
    Jobs and conversations that name it keep its id; downloading it answers 404, and a
    new job naming it as an input gets 404."""
    await delete_image(state, tenant, image_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResponse,
    responses={
        413: {"model": ErrorResponse, "description": "Image over LLMGA_MAX_UPLOAD_BYTES."},
        422: {
            "model": ErrorResponse,
            "description": "Not base64, not an image, too many pixels or too long a side.",
        },
    },
)
async def create_upload(
    request: UploadRequest,
    state: StateDep,
    tenant: TenantDep,
) -> UploadResponse:
    """Store an input image once; refer to it by id afterwards."""
    return await upload_image(state, tenant, request.image)
