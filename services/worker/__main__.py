"""`python -m services.worker`: load the profile's models, then consume generation jobs.

One process per GPU (CUDA cannot fork). With `LLMGA_WORKER_MAX_BATCH` > 1 it runs a pool
of that many task threads, one job each, whose denoising one scheduler thread batches
(batching.py); with 1, `--pool=solo`: one job at a time on the main thread. The models
are loaded before the worker starts consuming, and the worker heartbeats into the registry
only once they are loaded, so readiness means "can run a job now".
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import redis
import torch
from celery.signals import setup_logging
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import utils as hub_utils
from transformers.utils import logging as transformers_logging

from services.common.blob_stores import open_blob_store
from services.common.job_store import JobStore
from services.common.logs import configure_logging
from services.common.redis_keys import RedisKeys
from services.common.tenant_slots import TenantSlots
from services.common.workers import WorkerRegistry
from services.worker import metrics
from services.worker.batching import BatchScheduler
from services.worker.celery_app import create_app
from services.worker.diffrir.tiling import Tiling
from services.worker.loading import load_models, resolve_device, resolve_dtype
from services.worker.optimisations import Optimisations, warm_up
from services.worker.previews import PreviewWriter
from services.worker.profiles import ModelProfile, get_profile, local_sources
from services.worker.settings import WorkerSettings
from services.worker.task_table import TASKS, models_needed
from services.worker.tasks import GenerationRunner, Heartbeat, register_tasks

logger = logging.getLogger("services.worker")


def main(argv: list[str] | None = None) -> int:
    """Start one worker process with the settings from the environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)  # no options: configuration is the environment (docs/worker.md)
    settings = WorkerSettings()
    configure_logging("worker", settings.log_format, settings.loglevel)
    # A receiver of this signal stops Celery from replacing our handler with its own.
    setup_logging.connect(_keep_logging_config, weak=False)
    json_logs = settings.log_format == "json"
    if json_logs:  # one JSON object per line: no progress bars, no Celery banner
        _disable_progress_bars()
    # Up before the models load, so a scrape can tell "loading" from "down".
    metrics.serve(settings.metrics_port)
    profile = get_profile(settings.profile)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)

    # Step 1: make sure the models exist (tiny ones are built here; hub ones are fetched
    # by from_pretrained on first use) and load them once.
    build_local_models(profile, settings.models_dir)
    device = resolve_device(settings.device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        metrics.register_gpu_memory(
            index,
            allocated=lambda: float(torch.cuda.memory_allocated(index)),
            reserved=lambda: float(torch.cuda.memory_reserved(index)),
        )
    optimisations = Optimisations.from_settings(settings, device)
    logger.info("pipeline optimisations: %s", optimisations.describe())
    models = load_models(
        profile,
        settings.models_dir,
        device,
        resolve_dtype(settings.dtype, device),
        revision_override=settings.model_revision,
        components=models_needed(TASKS),  # every task of the table the profile can serve
        diffrir_weights=settings.diffrir_weights,
        diffrir_tiling=Tiling(settings.diffrir_tile, settings.diffrir_tile_overlap),
        optimisations=optimisations,
        beyond_clip_weights=settings.beyond_clip_weights,
    )
    if optimisations.compile_unet:
        # Compile now, on the profile's default size, so readiness means "fast now".
        warm_up(models.text_to_image, profile.width, profile.height, profile.guidance_scale)

    # Step 2: the stores jobs are recorded in, and the task bound to them.
    client = redis.Redis.from_url(settings.redis_url, decode_responses=False)
    keys = RedisKeys(settings.key_prefix)
    broker = (
        client
        if settings.effective_broker_url == settings.redis_url
        else redis.Redis.from_url(settings.effective_broker_url, decode_responses=False)
    )
    runner = GenerationRunner(
        models=models,
        jobs=JobStore(client, keys, settings.job_ttl_s),
        blobs=open_blob_store(settings, client, keys),
        worker_name=settings.worker_name,
        max_job_s=settings.max_job_s,
        color_restore=settings.color_restore,
        previews=PreviewWriter(
            client,
            keys,
            # In the images' store, so the gateway serves previews as it serves images.
            open_blob_store(settings, client, keys, ttl_s=settings.preview_ttl_s),
            settings.preview_every,
            settings.preview_ttl_s,
        ),
        slots=TenantSlots(
            broker, keys, settings.queue_name, settings.tenant_max_in_flight, settings.job_ttl_s
        )
        if settings.tenant_max_in_flight
        else None,
    )
    if settings.max_batch > 1:
        runner.batches = BatchScheduler(settings.batch_window_s(device.type), settings.max_batch)
        runner.batches.start()
    app = create_app(settings)
    register_tasks(app, runner)

    # Step 3: report readiness and consume until shut down (SIGTERM: finish the job first).
    heartbeat = Heartbeat(
        WorkerRegistry(client, keys),
        settings.worker_name,
        {"profile": profile.name, "device": str(device), "revision": models.revision},
        settings.heartbeat_interval_s,
        settings.heartbeat_ttl_s,
    )
    heartbeat.start()
    logger.info("worker %s ready: profile %s on %s", settings.worker_name, profile.name, device)
    try:
        app.worker_main(
            [
                *(["--quiet"] if json_logs else []),  # a celery option, before the command
                "worker",
                *pool_options(settings.max_batch),
                f"--queues={settings.queue_name}",
                f"--hostname={settings.worker_name}@%h",
                f"--loglevel={settings.loglevel}",
                # Gossip and mingle coordinate workers over broadcast messages; jobs are
                # coordinated through their records instead, and startup is faster without.
                "--without-gossip",
                "--without-mingle",
            ]
        )
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        heartbeat.stop()
    return 0


def pool_options(max_batch: int) -> list[str]:
    """Celery's pool: one thread per job of a full batch (each waits for its batch while
    the scheduler thread denoises), or the solo pool for one job at a time."""
    if max_batch == 1:
        return ["--pool=solo", "--concurrency=1"]
    return ["--pool=threads", f"--concurrency={max_batch}"]


def build_local_models(profile: ModelProfile, models_dir: Path) -> None:
    """Build the profile's local (tiny) models that are not built yet. The builder is
    imported only here, when the profile names one: a worker serving hub checkpoints never
    loads it (tests/unit/test_worker_runtime_imports.py)."""
    if not local_sources(profile):
        return
    from services.worker.testing.tiny_models import build_profile_models

    build_profile_models(profile, models_dir)


def _disable_progress_bars() -> None:
    """Hub downloads, model building and loading draw tqdm bars on stderr."""
    hub_utils.disable_progress_bars()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _keep_logging_config(**_: object) -> None:
    """Celery's `setup_logging` receiver: logging is already configured."""


if __name__ == "__main__":
    sys.exit(main())
