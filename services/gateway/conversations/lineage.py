"""Lineage of images in a conversation: which image each turn started from.

A chat turn that works on an image (inpaint, outpaint, similar, edit, controlnet) records
the image it started from (`source_image_id`) on both stored turns, and every job records
its input in `input_image_ids[0]`. So the chain of any image back to the first turn is: the job that
produced it, that job's source image, the job that produced that one, and so on, until an
image no job of the conversation produced (an upload) or a t2i job (no source).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.contract import JobRecord, JobStatus
from services.gateway.state import GatewayState
from services.gateway.stores.conversations import StoredConversation


@dataclass(frozen=True)
class ProducedImage:
    """A result image of one of the conversation's jobs."""

    record: JobRecord
    turn_index: int  # the assistant turn that started the job


async def latest_result_image(
    state: GatewayState, tenant: str, conversation: StoredConversation
) -> str | None:
    """The first image of the conversation's most recent succeeded job (latest turn first,
    within a turn its last job first), as it stands now; None if no job has succeeded yet
    (queued, running, failed, canceled or expired jobs are skipped)."""
    for turn in reversed(conversation.turns):
        for job_id in reversed(turn.job_ids):
            record = await state.jobs.get(tenant, job_id)
            if (
                record is not None
                and record.status == JobStatus.JOB_STATUS_SUCCEEDED
                and record.images
            ):
                return str(record.images[0].image_id)
    return None


async def produced_images(
    state: GatewayState, tenant: str, conversation: StoredConversation
) -> dict[str, ProducedImage]:
    """Every result image of the conversation's (unexpired) jobs, by image id."""
    produced: dict[str, ProducedImage] = {}
    for index, turn in enumerate(conversation.turns):
        for job_id in turn.job_ids:
            record = await state.jobs.get(tenant, job_id)
            if record is None:
                continue
            for image in record.images:
                produced[image.image_id] = ProducedImage(record, index)
    return produced


def known_image_ids(conversation: StoredConversation) -> set[str]:
    """Input images the turns refer to (uploads, sources, masks)."""
    ids = {image_id for turn in conversation.turns for image_id in turn.image_ids}
    ids.update(turn.source_image_id for turn in conversation.turns if turn.source_image_id)
    return ids
