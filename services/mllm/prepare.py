"""``python -m services.mllm.prepare``: convert and cache the configured model, then exit.

For the packaged Gemma GGUF this assembles the file and writes the safetensors checkpoint
under ``LLMGA_MLLM_CACHE_DIR``; later server starts load that checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import time

from services.mllm.model_loader import resolve_checkpoint
from services.mllm.settings import MllmSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = MllmSettings()
    started = time.perf_counter()
    path, converted = resolve_checkpoint(settings)
    state = "converted" if converted else "already prepared"
    print(f"{settings.model}: {state} at {path} ({time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    main()
