"""The worker's Celery application: configuration only (tasks.py registers the task).

The settings follow the rules for GPU work behind a Redis broker (docs/worker.md):
acknowledge a message only when its job has ended, take one message per task slot (one
job at a time, or one per thread of a batching worker: docs/batching.md), give a message
back when the worker dies mid-job, and keep Redis' visibility timeout longer than any job
so a running job is never handed to a second worker.
"""

from __future__ import annotations

from celery import Celery

from services.worker.settings import WorkerSettings


def create_app(settings: WorkerSettings) -> Celery:
    """A Celery app with the broker, result backend and queue of `settings`."""
    app = Celery(
        "llmga-worker",
        broker=settings.effective_broker_url,
        backend=settings.redis_url,
        set_as_current=False,  # no process-wide default app: each app is passed explicitly
    )
    app.conf.update(
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # A message whose worker died (SIGKILL, OOM, lost node) is given back to the
            # queue by the next sweep of a live worker once its visibility timeout has
            # passed. kombu sweeps every interval x throttle seconds (100 s by default);
            # sweep at least every tenth of the timeout, so redelivery is not much later.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
        },
        # Task results are small summaries (the job record is the real result); keep them
        # under the deployment's key prefix and only for a day.
        result_backend_transport_options={"global_keyprefix": f"{settings.key_prefix}:celery:"},
        result_expires=24 * 3600,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue_name,
        # Prefetch is concurrency x multiplier: one message per job of a full batch.
        worker_concurrency=settings.max_batch,
        broker_connection_retry_on_startup=True,
    )
    return app
