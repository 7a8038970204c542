"""The job record's state machine: every status change of a `JobRecord`, named once.

    queued ──start──> running ──succeed──> succeeded
      │  └─refuse─┐     │  └──fail──> failed
      │           v     └──cancel──> canceled
      ├──fail──> failed
      └──cancel──> canceled

`start` is also allowed from running: a message redelivered after its worker died starts
the job again (a second attempt). `report_progress` writes progress while running. A
terminal record (succeeded, failed, canceled) never changes again.

Each function applies one transition to a record in place, with the timings it sets, and
raises `IllegalTransition` when the record's status does not allow it. They are meant for
the `mutate` callback of `JobStore.update`, where a writer that may race another (a
cancel, a redelivery) checks `can_transition` first and leaves the record alone when the
job has moved on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from services.common.contract import (
    TERMINAL_STATUSES,
    GenerationRequest,
    JobRecord,
    JobStatus,
    status_name,
)

QUEUED = JobStatus.JOB_STATUS_QUEUED
RUNNING = JobStatus.JOB_STATUS_RUNNING
SUCCEEDED = JobStatus.JOB_STATUS_SUCCEEDED
FAILED = JobStatus.JOB_STATUS_FAILED
CANCELED = JobStatus.JOB_STATUS_CANCELED

# status -> the statuses a record in it may move to.
TRANSITIONS: dict[int, frozenset[int]] = {
    QUEUED: frozenset({RUNNING, FAILED, CANCELED}),
    RUNNING: frozenset({RUNNING, SUCCEEDED, FAILED, CANCELED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELED: frozenset(),
}


class IllegalTransition(ValueError):
    """A status change the record's current status does not allow."""

    def __init__(self, record: JobRecord, target: int) -> None:
        super().__init__(
            f"job {record.request.job_id} cannot go from {status_name(record.status)} "
            f"to {status_name(target)}"
        )


def can_transition(record: JobRecord, target: int) -> bool:
    """Whether `record` may move to status `target` now."""
    return target in TRANSITIONS.get(record.status, frozenset())


def is_terminal(record: JobRecord) -> bool:
    """Whether the job has ended (succeeded, failed or canceled)."""
    return record.status in TERMINAL_STATUSES


def _move(record: JobRecord, target: int) -> None:
    if not can_transition(record, target):
        raise IllegalTransition(record, target)
    record.status = target  # type: ignore[assignment]


def new_record(request: GenerationRequest, now: float | None = None) -> JobRecord:
    """The record of a new job for `request`: queued, created at `now`."""
    record = JobRecord(request=request, status=QUEUED)
    record.timings.created_at = time.time() if now is None else now
    return record


@dataclass(frozen=True)
class RunInfo:
    """What a worker records when it starts a job: who runs it, on which weights, with
    which prompts, and how many progress steps the whole job has."""

    worker: str
    model_profile: str
    model_revision: str
    prompt_used: str
    negative_prompt_used: str
    total_steps: int


def start(record: JobRecord, run: RunInfo, now: float | None = None) -> None:
    """queued (or running, redelivered) -> running: one more attempt, started at `now`,
    progress 0 of the job's total, no error left from an earlier attempt."""
    _move(record, RUNNING)
    record.timings.started_at = time.time() if now is None else now
    record.attempts += 1
    record.worker = run.worker
    record.model_profile = run.model_profile
    record.model_revision = run.model_revision
    record.prompt_used = run.prompt_used
    record.negative_prompt_used = run.negative_prompt_used
    record.progress.step = 0
    record.progress.total = run.total_steps
    record.error = ""


def report_progress(record: JobRecord, step: int, total: int) -> None:
    """running -> running: `step` of `total` denoising steps done."""
    if record.status != RUNNING:
        raise IllegalTransition(record, RUNNING)
    record.progress.step = step
    record.progress.total = total


@dataclass(frozen=True)
class Outcome:
    """What a succeeded job produced: its images (blob id and seed, in order, all of one
    size), where the time went, and what the task used besides the prompt."""

    images: Iterable[tuple[str, int]]
    width: int
    height: int
    total_steps: int
    encode_s: float
    denoise_s: float
    decode_s: float
    source_prompt_used: str = ""
    edit_method_used: str = ""
    restore_used: str = ""
    # Images in the denoising batch the job ran in (its own and other jobs').
    batch_size: int = 1


def succeed(record: JobRecord, outcome: Outcome, now: float | None = None) -> None:
    """running -> succeeded: the images, progress at its total, the stage timings and
    `finished_at`."""
    _move(record, SUCCEEDED)
    del record.images[:]
    for image_id, seed in outcome.images:
        record.images.add(image_id=image_id, seed=seed, width=outcome.width, height=outcome.height)
    record.progress.step = outcome.total_steps
    record.timings.encode_s = outcome.encode_s
    record.timings.denoise_s = outcome.denoise_s
    record.timings.decode_s = outcome.decode_s
    record.timings.finished_at = time.time() if now is None else now
    record.source_prompt_used = outcome.source_prompt_used
    record.edit_method_used = outcome.edit_method_used
    record.restore_used = outcome.restore_used
    record.batch_size = outcome.batch_size


def fail(record: JobRecord, error: str, now: float | None = None) -> None:
    """queued | running -> failed with `error`, finished at `now` (a job that could not be
    enqueued, or one that failed while running)."""
    _move(record, FAILED)
    record.error = error
    record.timings.finished_at = time.time() if now is None else now


def refuse(
    record: JobRecord, error: str, worker: str, model_profile: str, now: float | None = None
) -> None:
    """queued (or running, redelivered) -> failed for a job a worker refuses before running
    it (bad input, a task it does not serve): still one attempt by that worker, started
    and finished at `now`."""
    _move(record, FAILED)
    now = time.time() if now is None else now
    record.error = error
    record.attempts += 1
    record.worker = worker
    record.model_profile = model_profile
    record.timings.started_at = now
    record.timings.finished_at = now


def cancel(record: JobRecord, error: str, now: float | None = None) -> None:
    """queued | running -> canceled (a cancel request), with the reason as the error and
    `finished_at`. A running job's worker sees it at its next step and stops."""
    _move(record, CANCELED)
    record.error = error
    record.timings.finished_at = time.time() if now is None else now
