"""Batching across jobs: compatible jobs that arrive within a short window denoise
together, in one pipeline call (docs/batching.md).

The worker runs one Celery task per job on a pool of `max_batch` threads (so it holds up
to `max_batch` messages). Each task thread checks its job and hands it to the process's
one `BatchScheduler` (`submit`), then waits for its own outcome; the job is recorded
running when its batch starts (still queued while it waits: a cancel then skips it). The
thread records the outcome and returns, and Celery acknowledges the message. So every job
keeps its own message, acknowledgement, redelivery and record state machine exactly as
when jobs run one at a time; only the denoising is shared.

The scheduler's one thread owns the models: it takes the oldest waiting job, gathers the
jobs of the same batch key (task_table.py `BatchRule`) that are waiting or arrive within
`window_s`, up to `max_images` images, and denoises them together. A job of another key
waits for the next round, ahead of later arrivals; a job without a key (a task that runs
alone) is a batch of its own. A job whose progress callback raises (canceled, past its
time limit) leaves the batch at that step; the others go on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field

from services.worker.job_preparation import PreparedJob, run_together
from services.worker.pipelines.common import GenerationResult, ProgressCallback

logger = logging.getLogger(__name__)


class JobNotStarted(Exception):
    """A submitted job whose `start` said no (canceled while it waited): it never ran."""


@dataclass
class _Waiting:
    """A submitted job, waiting for its batch."""

    job: PreparedJob
    progress: ProgressCallback
    start: Callable[[], bool]
    key: Hashable | None
    outcome: Future[GenerationResult] = field(default_factory=Future)

    @property
    def images(self) -> int:
        return self.job.params.num_images


class BatchScheduler:
    """Denoises submitted jobs in batches of compatible jobs, on one thread of its own."""

    def __init__(self, window_s: float, max_images: int) -> None:
        if window_s < 0 or max_images < 1:
            raise ValueError("window_s must be >= 0 and max_images >= 1")
        self.window_s = window_s
        self.max_images = max_images
        self._arrivals: queue.Queue[_Waiting] = queue.Queue()
        self._held: deque[_Waiting] = deque()  # arrived, but another key's batch ran first
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)

    def start(self) -> None:
        """Start the denoising thread."""
        self._thread.start()

    def submit(
        self, job: PreparedJob, progress: ProgressCallback, start: Callable[[], bool]
    ) -> GenerationResult:
        """Denoise `job` in the next batch it fits; blocks until it has ended. `start` is
        called as its batch starts (records it running) and says whether it may run; when
        not, raises `JobNotStarted`. Returns its result, or raises what stopped or failed
        it (as `job.run(progress)` would)."""
        if not self._thread.is_alive():
            raise RuntimeError("the batch scheduler is not running")
        waiting = _Waiting(job, progress, start, job.batch_key)
        self._arrivals.put(waiting)
        return waiting.outcome.result()

    # -- the denoising thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._run(self._gather())

    def _gather(self) -> list[_Waiting]:
        """The next batch: the oldest waiting job and, when it has a key, the jobs of that
        key held from earlier rounds, then those arriving within the window, while the
        images fit."""
        first = self._held.popleft() if self._held else self._arrivals.get()
        batch = [first]
        if first.key is None:
            return batch
        images = first.images
        for waiting in list(self._held):
            if waiting.key == first.key and images + waiting.images <= self.max_images:
                self._held.remove(waiting)
                batch.append(waiting)
                images += waiting.images
        deadline = time.monotonic() + self.window_s
        while images < self.max_images:
            try:
                waiting = self._arrivals.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if waiting.key == first.key and images + waiting.images <= self.max_images:
                batch.append(waiting)
                images += waiting.images
            else:
                self._held.append(waiting)
        return batch

    def _run(self, gathered: list[_Waiting]) -> None:
        """Start the gathered jobs, denoise those that may run as one batch and hand every
        job its outcome. A failure of the batch as a whole (out of memory, a broken model)
        is every member's."""
        batch = []
        for waiting in gathered:
            try:
                started = waiting.start()
            except Exception as error:  # e.g. Redis unreachable: this job's failure
                waiting.outcome.set_exception(error)
                continue
            if started:
                batch.append(waiting)
            else:
                waiting.outcome.set_exception(JobNotStarted())
        if not batch:
            return
        images = sum(waiting.images for waiting in batch)
        logger.info("denoising %d job(s), %d image(s) together", len(batch), images)
        try:
            outcomes = run_together(
                [waiting.job for waiting in batch], [waiting.progress for waiting in batch]
            )
        except Exception as error:  # handed to the waiting jobs
            logger.exception("a batch of %d job(s) failed", len(batch))
            for waiting in batch:
                waiting.outcome.set_exception(error)
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                waiting.outcome.set_exception(outcome)
            else:
                waiting.outcome.set_result(outcome)
