"""From a `GenerationRequest` to a job ready to run: its task looked up in the task table
(task_table.py), the task's pipelines checked as loaded, its input images fetched from the
blob store, its parameters checked, and its runner bound to them.

`prepare_job` raises ValueError (bad input, a missing image) or NotImplementedError (a task
this worker does not run, or one whose pipeline its profile lacks) before anything runs, so
the job fails with that message.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from services.common.blob_store import BlobStore
from services.common.contract import GenerationRequest, task_name
from services.worker.loading import MISSING_COMPONENT, LoadedModels
from services.worker.pipelines.common import GenerationResult, ProgressCallback, ResolvedParams
from services.worker.task_table import BatchOutcomes, BatchRule, TaskContext, task_entry


@dataclass(frozen=True)
class PreparedJob:
    """A checked job: what it will run and on which weights (recorded when it starts), and
    how to run it: alone (`run`) or with other jobs of its `batch_key` (`run_together`)."""

    params: ResolvedParams
    run: Callable[[ProgressCallback | None], GenerationResult]
    model_revision: str
    context: TaskContext
    # Its task's batch rule (task_table.py); None: the task's jobs run alone.
    batch: BatchRule[Any] | None = None

    @property
    def batch_key(self) -> Hashable | None:
        """Jobs with equal keys may denoise together; None: this job runs alone."""
        if self.batch is None:
            return None
        return self.batch.key(self.context, self.params)


def run_together(
    jobs: Sequence[PreparedJob], progress: Sequence[ProgressCallback | None]
) -> BatchOutcomes:
    """Denoise `jobs` (of one `batch_key`) together, job i reporting to `progress[i]`: each
    job's result, or the exception that stopped it alone, in order."""
    rule = jobs[0].batch
    if rule is None:  # a task whose jobs run alone: one job
        ((job, on_progress),) = zip(jobs, progress, strict=True)
        try:
            return [job.run(on_progress)]
        except Exception as error:  # the job's own failure, reported as its outcome
            return [error]
    pairs = zip(jobs, progress, strict=True)
    return rule.run([(job.context, job.params, on_progress) for job, on_progress in pairs])


def prepare_job(
    request: GenerationRequest,
    models: LoadedModels,
    blobs: BlobStore,
    restore_colors: bool = True,
) -> PreparedJob:
    """Check `request` and bind it to the runner of its task. `restore_colors`: the
    colour fallback restores inpaint/outpaint results when no DiffRIR is loaded."""
    entry = task_entry(request.task)
    for component in sorted(entry.models):
        if not models.has(component):
            raise NotImplementedError(
                f"task {task_name(request.task)} is not available: profile "
                f"{models.profile.name} has no {MISSING_COMPONENT[component]}"
            )
    context = TaskContext(request, models, blobs, restore_colors)
    params = entry.resolve(context)
    return PreparedJob(
        params=params,
        run=partial(entry.run, context, params),
        model_revision=entry.revision(models, request),
        context=context,
        batch=entry.batch,
    )
