"""`POST /v1/images/generations` with `stream: true`: OpenAI's Images streaming format.

The job is queued as without streaming; the answer is `text/event-stream` whose events
are named by their `type` and carry it in their JSON `data`:

- `image_generation.partial_image`: up to `partial_images` (0..3) of the job's previews
  (small JPEGs from the latents, services/worker/previews.py) as `b64_json`, numbered by
  `partial_image_index` from 0; the previews nearest to evenly spaced points of the
  job's progress (after 1/(N+1), 2/(N+1), ... of its steps) are picked, so there may be
  fewer when the worker stores few (LLMGA_WORKER_PREVIEW_EVERY; 0: none);
- `image_generation.completed`: one per image of the job, in order, with the final image
  as `b64_json` in `output_format`;
- a job that fails or is canceled (or disappears) ends the stream with `event: error`,
  `data: {"error": {...}}` in OpenAI's shape (the `openai` package raises it as an
  APIError).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

from sse_starlette import ServerSentEvent

from services.common.contract import TERMINAL_STATUSES
from services.common.job_previews import PreviewEntry, read_previews
from services.gateway.images.serving import converted_image
from services.gateway.jobs.serving import job_view
from services.gateway.openai_chat.errors import openai_error_body
from services.gateway.openai_images.protocol import ImageGenerationRequest
from services.gateway.state import GatewayState

PARTIAL = "image_generation.partial_image"
COMPLETED = "image_generation.completed"
# OpenAI's event fields without a meaning here.
_FIXED = {"background": "opaque", "quality": "auto"}
_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}


def wants_partial(entry: PreviewEntry, sent: int, partial_images: int) -> bool:
    """Whether `entry` is the next partial image: fewer than `partial_images` were sent
    and it is past the next of the evenly spaced points (sent + 1) / (N + 1) of the job."""
    if sent >= partial_images or entry.total <= 0:
        return False
    return entry.step * (partial_images + 1) >= (sent + 1) * entry.total


def _event(data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data), event=data["type"], sep="\n")


def _error(status: int, code: str, message: str, job_id: str) -> ServerSentEvent:
    body = openai_error_body(status, {"error": {"type": code, "message": message}})
    body["error"]["job_id"] = job_id
    return ServerSentEvent(data=json.dumps(body), event="error", sep="\n")


async def generation_events(
    state: GatewayState, tenant: str, job_id: str, request: ImageGenerationRequest
) -> AsyncGenerator[ServerSentEvent, None]:
    """The SSE events of a streamed generation of job `job_id` (already queued)."""
    partial_images = request.partial_images or 0
    fmt = request.output_format or "png"
    quality = request.output_compression if fmt != "png" else None
    size = request.size or "auto"  # of the final images (partials are smaller)
    seen = sent = 0
    async with state.events.subscribe(tenant, job_id) as subscription:
        while True:
            record = await subscription.read()
            if record is None:
                yield _error(404, "not_found", f"job {job_id} is gone", job_id)
                return
            entries = await read_previews(state.redis, state.keys, tenant, job_id, seen)
            seen += len(entries)
            for entry in entries:
                if not wants_partial(entry, sent, partial_images):
                    continue
                blob = await state.blobs.get(tenant, entry.image_id)
                if blob is None:  # expired already: skip it
                    continue
                yield _event(
                    {
                        "type": PARTIAL,
                        "b64_json": base64.b64encode(blob.data).decode("ascii"),
                        "partial_image_index": sent,
                        "created_at": int(time.time()),
                        "output_format": "jpeg",
                        "size": size,
                        **_FIXED,
                    }
                )
                sent += 1
            if record.status not in TERMINAL_STATUSES:
                await subscription.wait_for_change(state.events.poll_s)
                continue
            view = job_view(record, state.links(tenant))
            if view.status != "succeeded":
                status = 500 if view.status == "failed" else 409
                reason = f": {view.error}" if view.error else ""
                message = f"job {job_id} {view.status}{reason}"
                yield _error(status, f"job_{view.status}", message, job_id)
                return
            for image in view.images:
                blob = await state.blobs.get(tenant, image.id)
                if blob is None:
                    yield _error(404, "not_found", f"image {image.id} expired", job_id)
                    return
                content, _ = await converted_image(blob, fmt, quality)
                yield _event(
                    {
                        "type": COMPLETED,
                        "b64_json": base64.b64encode(content).decode("ascii"),
                        "created_at": int(time.time()),
                        "output_format": fmt,
                        "size": f"{image.width}x{image.height}",
                        "usage": _USAGE,
                        **_FIXED,
                    }
                )
            return
