#!/usr/bin/env bash
# The whole GPU benchmark in one command, for a CUDA machine (H100/H200) with PyTorch:
# installs the carried wheels (fetch_wheels.sh) into /tmp/site, then runs
# `python -m benchmarks.bench_gpu` (SD 1.5 512² x 25 steps and SDXL 1024² x 20 steps at
# batch 1-16 against stock diffusers, the settings sweep and torch.compile on SD 1.5).
# Output: the table on stdout, the JSON report and the log in $OUT (default ./bench-gpu-out).
# Time plan (about 7 minutes on one H200; benchmarks/README.md): the sweep and compile rows
# are skipped once 330 s have passed, so the run ends well inside 8 minutes.
set -euo pipefail
OUT=${OUT:-bench-gpu-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m benchmarks.bench_gpu --json "$OUT/bench_gpu.json" "$@" 2>&1 | tee "$OUT/bench_gpu.log"
