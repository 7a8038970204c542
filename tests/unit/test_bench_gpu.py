"""`make bench-gpu`'s CPU mode runs end to end (CI has no GPU): the tiny SD 1.5 and SDXL
models and the full-size SD 1.5 built from benchmarks/configs/sd15.json, each measured
against the stock diffusers call in the same run, with FLOPs counted and a JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_gpu import CPU_CASES

pytestmark = pytest.mark.timeout(300)


def test_cpu_mode_measures_every_case_against_stock(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_gpu", "--cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] and report["matmul_tflops"] > 0
    assert len(report["cases"]) == len(CPU_CASES)
    for case in CPU_CASES:
        rows = report["cases"][case.label]
        stock, *ours = rows
        assert (stock["path"], stock["batch"], stock["speedup_vs_stock"]) == ("stock", 1, 1.0)
        assert [row["batch"] for row in ours if row["path"] == "ours"] == list(case.batches)
        for row in rows:
            assert row["images_per_s"] > 0 and row["latency_s"] > 0
            assert row["tflop_per_image"] == stock["tflop_per_image"]
            assert row["peak_memory_gib"] is None  # measured on CUDA only
    (full_size,) = [label for label in report["cases"] if label.startswith("sd15")]
    (tiny,) = [label for label in report["cases"] if label.startswith("tiny ")]
    # The full-size UNet, VAE and text encoder really ran: orders of magnitude more work.
    assert report["cases"][full_size][0]["tflop_per_image"] > 0.05
    assert report["cases"][tiny][0]["tflop_per_image"] < 0.01
    assert "x stock" in done.stdout
