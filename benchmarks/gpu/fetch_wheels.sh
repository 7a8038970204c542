#!/usr/bin/env bash
# Download (not install) the wheels `benchmarks/gpu/run.sh` installs on a GPU machine that
# has CUDA PyTorch, transformers and huggingface_hub but not the rest the benchmark imports
# (diffusers, pydantic for the worker's settings, protobuf for the job contract): the
# versions are the dev lock's, for that machine's Python (3.12, x86-64 manylinux). Run from
# the repo root on a machine that reaches the package index; the wheels land in .whl/
# (add `/.whl/` to .git/info/exclude) and travel with the working tree (about 10 MiB).
set -euo pipefail
PACKAGES=(diffusers pydantic pydantic-core pydantic-settings python-dotenv annotated-types
    typing-inspection typing-extensions protobuf)
PYTHON=${PYTHON:-python3}
specs=()
for name in "${PACKAGES[@]}"; do
    version=$(grep -i "^${name}==" deploy/lock/dev.txt | cut -d= -f3)
    [[ -n "$version" ]] || { echo "no $name in deploy/lock/dev.txt" >&2; exit 1; }
    specs+=("${name}==${version}")
done
WHEELS=${WHEELS:-.whl}
mkdir -p "$WHEELS"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$WHEELS" "${specs[@]}"
ls -la "$WHEELS"
