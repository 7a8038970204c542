"""Routes of the images area."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from services.gateway.images.protocol import (
    ImagesRequest,
    ImagesResponse,
    UploadRequest,
    UploadResponse,
)
from services.gateway.images.serving import create_images_job, read_image, upload_image
from services.gateway.protocol import ErrorResponse
from services.gateway.state import GatewayState, get_state, get_tenant

router = APIRouter(tags=["images"])

_INVALID = {"model": ErrorResponse, "description": "Invalid field (named in `field`)."}


@router.post(
    "/v1/images",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImagesResponse,
    responses={
        422: _INVALID,
        501: {"model": ErrorResponse, "description": "Task not served yet."},
        502: {"model": ErrorResponse, "description": "refine: unusable mllm answer."},
        503: {"model": ErrorResponse, "description": "refine: mllm down; or queue down."},
        504: {"model": ErrorResponse, "description": "refine: the mllm timed out."},
    },
)
def create_images(
    request: ImagesRequest,
    response: Response,
    state: Annotated[GatewayState, Depends(get_state)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> ImagesResponse:
    """Queue a generation job; poll `GET /v1/jobs/{id}` for its images."""
    job = create_images_job(state, tenant, request)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get(
    "/v1/images/{image_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The image bytes."},
        404: {"model": ErrorResponse, "description": "Unknown or expired image."},
    },
)
def download_image(
    image_id: str,
    state: Annotated[GatewayState, Depends(get_state)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> Response:
    """The image (PNG). Images never change, so clients may cache them."""
    blob = read_image(state, tenant, image_id)
    return Response(
        content=blob.data,
        media_type=blob.content_type,
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


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
def create_upload(
    request: UploadRequest,
    state: Annotated[GatewayState, Depends(get_state)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> UploadResponse:
    """Store an input image once; refer to it by id afterwards."""
    return upload_image(state, tenant, request.image)
