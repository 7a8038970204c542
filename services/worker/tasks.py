"""The generation task: one job from the broker, recorded in Redis at every state change.

`GenerationRunner` holds what a worker process loads once (the models) and the stores it
writes to; `run(payload)` runs one job. `register_tasks` binds it to a Celery app under
`GENERATE_TASK_NAME`. Keeping the job logic out of Celery lets it be read on its own: the
task wrapper only passes the payload through.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from services.common import job_states
from services.common.blob_store import BlobStore, BlobStoreUnavailable
from services.common.contract import (
    GENERATE_TASK_NAME,
    TERMINAL_STATUSES,
    GenerationRequest,
    JobRecord,
    JobStatus,
    decode_request,
    status_name,
    task_name,
)
from services.common.job_store import JobStore
from services.common.logs import log_context
from services.common.tenant_slots import TenantSlots
from services.common.workers import WorkerRegistry
from services.worker.batching import BatchScheduler, JobNotStarted
from services.worker.job_preparation import PreparedJob, prepare_job
from services.worker.loading import LoadedModels
from services.worker.metrics import job_in_progress, observe_job
from services.worker.pipelines.common import GenerationResult, LatentsCallback, ResolvedParams
from services.worker.previews import PreviewWriter

logger = logging.getLogger(__name__)


class JobStopped(Exception):
    """Raised between two denoising steps to stop a job; `status` is the one to record."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class GenerationRunner:
    """Runs generation jobs on models loaded once, recording them in the job store."""

    models: LoadedModels
    jobs: JobStore
    blobs: BlobStore
    worker_name: str
    max_job_s: float
    # Inpaint/outpaint: match brightness and contrast at the seam (restorers.py).
    color_restore: bool = True
    # Previews while denoising (previews.py); None: none.
    previews: PreviewWriter | None = None
    # Denoises jobs together with other compatible jobs (batching.py); None: each job
    # runs alone, on the calling thread.
    batches: BatchScheduler | None = None
    # The per-tenant in-flight cap (services/common/tenant_slots.py); None: off.
    slots: TenantSlots | None = None

    def run(self, payload: str) -> dict[str, Any]:
        """Run the job in `payload` (`encode_request` text); returns a short summary.

        Everything logged meanwhile carries the job's request id and job id; the job's
        duration and final status go to the worker's metrics (metrics.py). Once the job
        is done with here (its record final, gone, or the job failed unexpectedly: its
        message is acknowledged either way) its tenant's slot is released, before the
        acknowledgement, so a crash in between releases it on redelivery."""
        request = decode_request(payload)
        with log_context(request_id=request.request_id, job_id=request.job_id):
            with job_in_progress():
                started = time.perf_counter()
                try:
                    summary = self._run(request)
                finally:
                    if self.slots is not None:
                        self.slots.release(request.tenant, request.job_id)
            # Jobs this call ended carry image_ids or an error; a missing record, a skipped
            # job or a redelivered finished one is not a job run here.
            if ("image_ids" in summary or "error" in summary) and summary["status"] in (
                _FINAL_NAMES
            ):
                observe_job(
                    task_name(request.task), summary["status"], time.perf_counter() - started
                )
            return summary

    def _run(self, request: GenerationRequest) -> dict[str, Any]:
        tenant, job_id = request.tenant, request.job_id
        record = self.jobs.get(tenant, job_id)
        if record is None:
            # The gateway writes the record before sending: it expired or was deleted.
            logger.warning("job %s/%s has no record; not running it", tenant, job_id)
            return {"job_id": job_id, "status": "missing"}
        if job_states.is_terminal(record):
            # A redelivered message (e.g. after a lost acknowledgement): already done.
            logger.info("job %s is already %s; not running it again", job_id, _name(record))
            return {"job_id": job_id, "status": _name(record)}

        try:
            job = prepare_job(request, self.models, self.blobs, self.color_restore)
        except (NotImplementedError, ValueError, BlobStoreUnavailable) as error:
            return self._finish_unrun(request, str(error))
        params = job.params

        def start() -> bool:
            if not self._mark_running(request, params, job.model_revision):
                return False
            logger.info(
                "job %s: %dx%d, %d steps, %d image(s), seed %d",
                job_id, params.width, params.height, params.steps, params.num_images,
                params.seed,
            )  # fmt: skip
            return True

        try:
            result = self._denoise(job, self._progress_reporter(request), start)
            image_ids = [
                self.blobs.put(tenant, _png(image), "image/png") for image in result.images
            ]
        except JobNotStarted:  # its record became terminal (or went) before it started
            return {"job_id": job_id, "status": "skipped"}
        except JobStopped as stop:
            return self._finish(request, stop.status, str(stop))
        except Exception as error:  # any pipeline failure is the job's, not the worker's
            logger.exception("job %s failed", job_id)
            return self._finish(request, JobStatus.JOB_STATUS_FAILED, _describe(error))
        return self._succeed(request, result, image_ids)

    def _denoise(
        self, job: PreparedJob, progress: JobProgress, start: Callable[[], bool]
    ) -> GenerationResult:
        """Run the job: in the next batch of compatible jobs, or alone. `start` records it
        running as it starts; when it cannot (canceled meanwhile), JobNotStarted."""
        if self.batches is not None:
            return self.batches.submit(job, progress, start)
        if not start():
            raise JobNotStarted
        return job.run(progress)

    # -- state changes (services/common/job_states.py) ----------------------------------

    def _mark_running(
        self, request: GenerationRequest, params: ResolvedParams, model_revision: str
    ) -> bool:
        """queued -> running; False when the record became terminal meanwhile (or is gone)."""
        run = job_states.RunInfo(
            worker=self.worker_name,
            model_profile=self.models.profile.name,
            model_revision=model_revision,
            prompt_used=params.prompt,
            negative_prompt_used=params.negative_prompt,
            total_steps=params.total_steps,
        )
        started = False

        def mutate(record: JobRecord) -> None:
            nonlocal started
            if job_states.can_transition(record, job_states.RUNNING):
                job_states.start(record, run)
                started = True

        self.jobs.update(request.tenant, request.job_id, mutate)
        return started

    def _progress_reporter(self, request: GenerationRequest) -> JobProgress:
        """A per-step callback: writes progress, and stops the job when it was canceled or
        has run longer than `max_job_s` (a job must end before the visibility timeout)."""
        deadline = time.monotonic() + self.max_job_s

        def report(step: int, total: int) -> None:
            canceled = False

            def mutate(record: JobRecord) -> None:
                nonlocal canceled
                if record.status == job_states.CANCELED:
                    canceled = True
                elif record.status == job_states.RUNNING:
                    job_states.report_progress(record, step, total)

            if self.jobs.update(request.tenant, request.job_id, mutate) is None:
                # The record was deleted (its conversation was): nobody wants the images.
                raise JobStopped(JobStatus.JOB_STATUS_CANCELED, "the job's record was deleted")
            if canceled:
                raise JobStopped(JobStatus.JOB_STATUS_CANCELED, "canceled")
            if time.monotonic() > deadline:
                raise JobStopped(
                    JobStatus.JOB_STATUS_FAILED,
                    f"stopped after {self.max_job_s:.0f}s (the worker's time limit per job)",
                )

        return JobProgress(report, self._preview_writer(request))

    def _preview_writer(self, request: GenerationRequest) -> LatentsCallback | None:
        """The `on_latents` of the job's progress: a preview every N steps of each image."""
        previews = self.previews
        if previews is None or previews.every <= 0:
            return None

        def on_latents(
            image_index: int, image_step: int, step: int, total: int, latents: Any, sdxl: bool
        ) -> None:
            if previews.wants(image_step):
                previews.write(
                    request.tenant, request.job_id, step, total, image_index, latents, sdxl
                )

        return on_latents

    def _succeed(
        self, request: GenerationRequest, result: GenerationResult, image_ids: list[str]
    ) -> dict[str, Any]:
        params = result.params
        outcome = job_states.Outcome(
            images=list(zip(image_ids, result.seeds, strict=True)),
            width=params.width,
            height=params.height,
            total_steps=params.total_steps,
            encode_s=result.encode_s,
            denoise_s=result.denoise_s,
            decode_s=result.decode_s,
            source_prompt_used=result.source_prompt_used,
            edit_method_used=result.edit_method_used,
            restore_used=result.restore_used,
            batch_size=result.batch_size,
        )

        def mutate(record: JobRecord) -> None:
            # Not when canceled while the images were stored.
            if job_states.can_transition(record, job_states.SUCCEEDED):
                job_states.succeed(record, outcome)

        record = self.jobs.update(request.tenant, request.job_id, mutate)
        logger.info(
            "job %s succeeded: %d token(s) in %d chunk(s), encode %.2fs, denoise %.2fs "
            "(batch of %d image(s)), decode %.2fs",
            request.job_id, result.prompt_tokens, result.chunks,
            result.encode_s, result.denoise_s, result.batch_size, result.decode_s,
        )  # fmt: skip
        return {"job_id": request.job_id, "status": _name(record), "image_ids": image_ids}

    def _finish(self, request: GenerationRequest, status: int, error: str) -> dict[str, Any]:
        """running -> failed | canceled, with the reason."""
        end = job_states.cancel if status == job_states.CANCELED else job_states.fail

        def mutate(record: JobRecord) -> None:
            if job_states.can_transition(record, status):
                end(record, error)

        record = self.jobs.update(request.tenant, request.job_id, mutate)
        logger.info("job %s ended %s: %s", request.job_id, _name(record), error)
        return {"job_id": request.job_id, "status": _name(record), "error": error}

    def _finish_unrun(self, request: GenerationRequest, error: str) -> dict[str, Any]:
        """queued -> failed for a job the worker refuses before running (bad input, a task
        not built yet): still one attempt by this worker."""

        def mutate(record: JobRecord) -> None:
            if job_states.can_transition(record, job_states.FAILED):
                job_states.refuse(record, error, self.worker_name, self.models.profile.name)

        record = self.jobs.update(request.tenant, request.job_id, mutate)
        logger.info("job %s failed before running: %s", request.job_id, error)
        return {"job_id": request.job_id, "status": _name(record), "error": error}


_FINAL_NAMES = frozenset(status_name(status) for status in TERMINAL_STATUSES)


@dataclass
class JobProgress:
    """The progress callback of one job (`ProgressCallback`), with the `on_latents` the
    pipelines' step reporter calls for previews (pipelines/common.py)."""

    report: Callable[[int, int], None]
    on_latents: LatentsCallback | None = None

    def __call__(self, step: int, total: int) -> None:
        self.report(step, total)


def _name(record: JobRecord | None) -> str:
    return "missing" if record is None else status_name(record.status)


def _describe(error: BaseException) -> str:
    """A job record's error text for an unexpected exception."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def register_tasks(app: Celery, runner: GenerationRunner) -> None:
    """Register the generation task on `app`, bound to `runner`."""

    @app.task(name=GENERATE_TASK_NAME)  # type: ignore[untyped-decorator]
    def generate(payload: str) -> dict[str, Any]:
        """The gateway's job: its one argument is `encode_request(GenerationRequest)`."""
        return runner.run(payload)


@dataclass
class Heartbeat:
    """Tells the registry this worker is alive and ready, every `interval_s`, from a daemon
    thread; `stop` ends it and removes the worker from the registry."""

    registry: WorkerRegistry
    worker_name: str
    info: dict[str, str]
    interval_s: float
    ttl_s: int
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        """Beat once now (so readiness is immediate), then every `interval_s`."""
        self._beat()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and leave the registry."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
        try:
            self.registry.remove(self.worker_name)
        except Exception:  # shutting down: Redis may already be gone
            logger.warning("could not remove %s from the worker registry", self.worker_name)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def _beat(self) -> None:
        try:
            self.registry.heartbeat(self.worker_name, self.info, self.ttl_s)
        except Exception:  # a Redis hiccup must not kill the thread: beat again next time
            logger.exception("heartbeat failed")
