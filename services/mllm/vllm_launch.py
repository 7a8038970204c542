"""vLLM launch configurations of the production mllm service, one per MLLM profile.

vLLM loads the Hugging Face ``llava`` format (``LlavaForConditionalGeneration``); the LLMGA
checkpoints are published in the original LLaVA format, so each profile names the
converted checkpoint directory (a deployment step) and the original repository it came
from. ``python -m services.mllm.vllm_launch --profile llmga-vicuna-7b --print`` prints the
command; without ``--print`` it replaces the process with ``vllm serve``.
``--gpu-memory-utilization`` (or ``LLMGA_MLLM_GPU_MEMORY_UTILIZATION``) lowers vLLM's share
of its GPU when a diffusion worker shares it (docs/deploy.md, "One GPU box").
Convert checkpoints with ``python -m services.mllm.convert_checkpoint`` (docs/mllm.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from services.mllm.settings import MllmSettings

CHAT_TEMPLATES_DIR = Path(__file__).parent / "chat_templates"
#: Where converted (HF ``llava`` format) checkpoints live unless a profile says otherwise.
DEFAULT_CONVERTED_ROOT = Path(os.environ.get("LLMGA_MLLM_CONVERTED_ROOT", "/models/llava-hf"))

ChatTemplate = Literal["llava_v1", "llava_llama_2"]


@dataclass(frozen=True)
class VllmProfile:
    """Everything ``vllm serve`` needs to serve one LLMGA MLLM checkpoint."""

    name: str
    source_checkpoint: str  # original LLaVA-format Hugging Face id
    chat_template: ChatTemplate
    converted_dir_name: str
    max_model_len: int = 4096
    dtype: str = "float16"
    gpu_memory_utilization: float = 0.90
    limit_images_per_prompt: int = 1
    temperature: float = 0.2  # LLMGA reference decoding
    max_new_tokens: int = 512
    extra_args: tuple[str, ...] = field(default=())

    @property
    def chat_template_path(self) -> Path:
        return CHAT_TEMPLATES_DIR / f"{self.chat_template}.jinja"

    def model_path(self, converted_root: Path = DEFAULT_CONVERTED_ROOT) -> Path:
        return converted_root / self.converted_dir_name


PROFILES: dict[str, VllmProfile] = {
    profile.name: profile
    for profile in (
        VllmProfile(
            name="llmga-vicuna-7b",
            source_checkpoint="binxia/llmga-vicuna-7b-v1.5-full-finetune",
            chat_template="llava_v1",
            converted_dir_name="llmga-vicuna-7b-v1.5-full-finetune-hf",
        ),
        VllmProfile(
            name="llmga-llama2-7b",
            source_checkpoint="binxia/llmga-llama-2-7b-chat-full-finetune",
            chat_template="llava_llama_2",
            converted_dir_name="llmga-llama-2-7b-chat-full-finetune-hf",
        ),
    )
}


def checked_gpu_memory_utilization(value: float) -> float:
    """``value`` if it is a share of GPU memory vLLM accepts, in (0, 1]; else ValueError."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"GPU memory utilization must be in (0, 1], got {value}")
    return value


def _gpu_memory_utilization_arg(text: str) -> float:
    try:
        return checked_gpu_memory_utilization(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number in (0, 1] (a share of the GPU's memory), got {text!r}"
        ) from None


def build_vllm_args(
    profile: VllmProfile,
    *,
    host: str = "0.0.0.0",
    port: int = 8001,
    served_model_name: str | None = None,
    converted_root: Path = DEFAULT_CONVERTED_ROOT,
    gpu_memory_utilization: float | None = None,
) -> list[str]:
    """The ``vllm serve`` argument list (argv, starting with ``vllm``) for ``profile``.

    ``gpu_memory_utilization`` (in (0, 1]) replaces the profile's share of GPU memory,
    e.g. when a diffusion worker shares vLLM's GPU; None keeps the profile's.
    """
    utilization = checked_gpu_memory_utilization(
        profile.gpu_memory_utilization if gpu_memory_utilization is None else gpu_memory_utilization
    )
    generation = {"temperature": profile.temperature, "max_new_tokens": profile.max_new_tokens}
    return [
        "vllm",
        "serve",
        "--model",
        str(profile.model_path(converted_root)),
        "--served-model-name",
        served_model_name or profile.name,
        "--chat-template",
        str(profile.chat_template_path),
        # The templates walk the OpenAI content parts themselves (image placeholders).
        "--chat-template-content-format",
        "openai",
        "--max-model-len",
        str(profile.max_model_len),
        "--dtype",
        profile.dtype,
        "--gpu-memory-utilization",
        str(utilization),
        "--host",
        host,
        "--port",
        str(port),
        "--limit-mm-per-prompt",
        json.dumps({"image": profile.limit_images_per_prompt}),
        "--generation-config",
        "vllm",
        "--override-generation-config",
        json.dumps(generation),
        *profile.extra_args,
    ]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line (defaults from ``LLMGA_MLLM_*``) and exec or print ``vllm serve``."""
    parser = argparse.ArgumentParser(description="Launch vLLM for an LLMGA MLLM profile.")
    try:
        settings = MllmSettings()
    except ValidationError as error:
        parser.error(f"invalid LLMGA_MLLM_* environment: {error}")
    parser.add_argument("--profile", required=True, choices=sorted(PROFILES))
    parser.add_argument("--print", action="store_true", help="print the command, do not run it")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--converted-root", type=Path, default=DEFAULT_CONVERTED_ROOT)
    parser.add_argument(
        "--gpu-memory-utilization",
        type=_gpu_memory_utilization_arg,
        default=settings.gpu_memory_utilization,
        help="share of the GPU's memory vLLM may take, in (0, 1]; default: "
        "LLMGA_MLLM_GPU_MEMORY_UTILIZATION, else the profile's value",
    )
    args = parser.parse_args(argv)
    argv_out = build_vllm_args(
        PROFILES[args.profile],
        host=args.host,
        port=args.port,
        served_model_name=args.served_model_name,
        converted_root=args.converted_root,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    if args.print:
        print(shlex.join(argv_out))
        return
    os.execvp(argv_out[0], argv_out)


if __name__ == "__main__":
    main()
