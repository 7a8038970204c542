"""The tiny SD 1.5 build in the models directory the worker reads, shared by unit tests."""

from __future__ import annotations

from pathlib import Path

from services.worker.profiles import TINY_SD15_DIRNAME
from services.worker.settings import WorkerSettings
from services.worker.testing.tiny_models import build_tiny


def tiny_sd15_models_dir() -> Path:
    """`LLMGA_MODELS_DIR` (the worker's default when unset) with the tiny SD 1.5 built in
    it: a no-op when `make models` or an earlier test built it."""
    models_dir = WorkerSettings().models_dir
    build_tiny(TINY_SD15_DIRNAME, models_dir)
    return models_dir
