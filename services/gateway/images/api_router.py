"""Routes of the images area."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.gateway.deps import StateDep, TenantDep
from services.gateway.http.idempotency import IdempotencyKey, run_idempotent
from services.gateway.http.openapi_responses import (
    error,
    image_content,
    job_created,
    malformed,
    protected,
    too_large,
    upstream_errors,
)
from services.gateway.http.responses import ModelResponse
from services.gateway.http.waiting import WaitSeconds, mark_applied
from services.gateway.images.formats import ImageFormat
from services.gateway.images.protocol import (
    ImagesRequest,
    ImagesResponse,
    UploadRequest,
    UploadResponse,
)
from services.gateway.images.serving import (
    converted_image,
    create_images_job_waiting,
    delete_image,
    image_redirect,
    read_image,
    upload_image,
    upload_image_form,
)

router = APIRouter(tags=["images"])

_INVALID = error("Invalid field (named in `field`).")
_UNKNOWN_IMAGE = error("Unknown or expired image.")


@router.post(
    "/v1/images",
    operation_id="createImageJob",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImagesResponse,
    responses={
        **job_created(
            "The queued job (with `Prefer: wait=N`: as it is when it ends or N "
            "seconds have passed)."
        ),
        **protected(creates_jobs=True),
        **malformed(),
        404: error("Unknown or expired input image id."),
        409: error("Idempotency-Key used for another request, or still in progress."),
        **too_large("Body over LLMGA_MAX_REQUEST_BYTES, or an image over LLMGA_MAX_UPLOAD_BYTES."),
        422: _INVALID,
        **upstream_errors(
            bad_answer="The mllm gave an unusable answer (similar: no description; edit: "
            "no source or target caption)."
        ),
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
    operation_id="getImage",
    response_class=Response,
    responses={
        **image_content("The image bytes (PNG, or the format asked for)."),
        307: {
            "description": "LLMGA_BLOB_STORE=s3 and no `format`/`quality`: the image is "
            "downloaded from the object store, at the presigned URL in `Location`.",
            "headers": {
                "Location": {
                    "description": "A presigned GET URL of the image, valid "
                    "LLMGA_S3_PRESIGNED_TTL_S.",
                    "schema": {"type": "string", "format": "uri"},
                }
            },
        },
        **protected(),
        403: error(
            "A signed URL whose signature does not match or has expired (the field is named)."
        ),
        404: _UNKNOWN_IMAGE,
        422: error("`quality` without jpeg or webp, or another invalid parameter."),
    },
)
async def download_image(
    image_id: str,
    state: StateDep,
    tenant: TenantDep,
    signed_tenant: Annotated[
        str | None, Query(alias="tenant", description="Signed URLs: the signed tenant.")
    ] = None,
    expires: Annotated[
        int | None, Query(description="Signed URLs: when the URL expires (Unix seconds).")
    ] = None,
    sig: Annotated[
        str | None, Query(description="Signed URLs: the hex HMAC-SHA256 signature.")
    ] = None,
    image_format: Annotated[
        ImageFormat | None,
        Query(
            alias="format",
            description="Convert the stored PNG: `png`, `jpeg` or `webp`; omitted: the PNG.",
        ),
    ] = None,
    quality: Annotated[
        int | None,
        Query(
            ge=0,
            le=100,
            description="jpeg/webp only: the encoder's quality, 0..100 (omitted: 90).",
        ),
    ] = None,
) -> Response:
    """The image (PNG, or `?format=jpeg|webp` converted on the fly; the Content-Type
    follows). Images never change, so clients may cache them. With
    LLMGA_URL_SIGNING_SECRET set, the `url` of a job's or upload's image is signed
    (`tenant`, `expires`, `sig`) and works without an API key (an `<img src>`) until it
    expires; the middleware verifies it (docs/api.md "Browsers"). With the S3 object
    store, a download without `format`/`quality` is a 307 redirect to a presigned URL of
    the store (docs/deploy.md "Object store"); a conversion is served here."""
    if image_format is None and quality is None:
        location = await image_redirect(state, tenant, image_id)
        if location is not None:
            return Response(
                status_code=status.HTTP_307_TEMPORARY_REDIRECT,
                headers={"Location": location, "Cache-Control": "no-store"},
            )
    blob = await read_image(state, tenant, image_id)
    content, media_type = await converted_image(blob, image_format, quality)
    return Response(
        content=content,
        media_type=media_type,
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )


@router.delete(
    "/v1/images/{image_id}",
    operation_id="deleteImage",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**protected(), 404: _UNKNOWN_IMAGE, 422: _INVALID},
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
    operation_id="createUpload",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResponse,
    responses={
        **protected(),
        400: error("Malformed JSON or multipart body."),
        **too_large("Body over LLMGA_MAX_REQUEST_BYTES, or the image over LLMGA_MAX_UPLOAD_BYTES."),
        422: error("Not base64, not an image, too many pixels or too long a side."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": UploadRequest.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "image": {
                                "type": "string",
                                "format": "binary",
                                "description": "The image file (a browser's File or Blob); "
                                "the same formats and limits as the JSON form.",
                            }
                        },
                        "required": ["image"],
                    }
                },
            },
        }
    },
)
async def create_upload(
    request: Request,
    state: StateDep,
    tenant: TenantDep,
) -> UploadResponse:
    """Store an input image once; refer to it by id afterwards. The body is JSON
    (`{"image": base64}`) or `multipart/form-data` with the file field `image` (a
    browser's `FormData`), under the same limits and errors."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await upload_image_form(state, tenant, request)
    try:
        upload = UploadRequest.model_validate_json(await request.body())
    except ValidationError as error:
        # The JSON form's errors as FastAPI's own body validation words them (400/422).
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_input=False)]
        ) from None
    return await upload_image(state, tenant, upload.image)
