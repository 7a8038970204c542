"""The worker's runtime modules do not import the tiny-model builder (a BPE trainer and
random model builders, for tests, benchmarks and `make models` only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
import services.worker.__main__
import services.worker.celery_app
import services.worker.job_preparation
import services.worker.loading
import services.worker.profiles
import services.worker.task_table
import services.worker.tasks
print(json.dumps(sorted(sys.modules)))
"""

BUILDER = "services.worker.testing"


def test_runtime_modules_do_not_import_the_tiny_model_builder() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "services.worker.tasks" in modules and "services.worker.loading" in modules
    assert [name for name in modules if name == BUILDER or name.startswith(BUILDER + ".")] == []
