"""The vLLM launch arguments of each MLLM profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.mllm import vllm_launch
from services.mllm.vllm_launch import PROFILES, build_vllm_args


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize(
    ("profile", "template", "source"),
    [
        ("llmga-vicuna-7b", "llava_v1", "binxia/llmga-vicuna-7b-v1.5-full-finetune"),
        ("llmga-llama2-7b", "llava_llama_2", "binxia/llmga-llama-2-7b-chat-full-finetune"),
    ],
)
def test_profile_args(profile: str, template: str, source: str, tmp_path: Path) -> None:
    spec = PROFILES[profile]
    assert spec.source_checkpoint == source
    args = build_vllm_args(spec, host="0.0.0.0", port=9000, converted_root=tmp_path)
    assert args[:2] == ["vllm", "serve"]
    assert _option(args, "--model") == str(tmp_path / spec.converted_dir_name)
    assert _option(args, "--served-model-name") == profile
    template_path = Path(_option(args, "--chat-template"))
    assert template_path.name == f"{template}.jinja"
    assert template_path.is_file()
    assert _option(args, "--chat-template-content-format") == "openai"
    assert _option(args, "--max-model-len") == "4096"
    assert _option(args, "--dtype") == "float16"
    assert 0 < float(_option(args, "--gpu-memory-utilization")) <= 1
    assert _option(args, "--host") == "0.0.0.0"
    assert _option(args, "--port") == "9000"
    assert json.loads(_option(args, "--limit-mm-per-prompt")) == {"image": 1}
    assert json.loads(_option(args, "--override-generation-config")) == {
        "temperature": 0.2,
        "max_new_tokens": 512,
    }
    # every option takes exactly one value
    options = [arg for arg in args[2:] if arg.startswith("--")]
    assert len(args[2:]) == 2 * len(options)


def test_served_model_name_override() -> None:
    args = build_vllm_args(PROFILES["llmga-vicuna-7b"], served_model_name="llmga")
    assert _option(args, "--served-model-name") == "llmga"


def test_cli_prints_command(capsys: pytest.CaptureFixture[str]) -> None:
    vllm_launch.main(["--profile", "llmga-llama2-7b", "--print", "--port", "8123"])
    printed = capsys.readouterr().out
    assert printed.startswith("vllm serve --model ")
    assert "--port 8123" in printed
    assert "llava_llama_2.jinja" in printed
    assert "--limit-mm-per-prompt '{\"image\": 1}'" in printed


def test_gpu_memory_utilization_defaults_to_the_profile_and_can_be_lowered() -> None:
    profile = PROFILES["llmga-vicuna-7b"]
    default = build_vllm_args(profile)
    assert float(_option(default, "--gpu-memory-utilization")) == profile.gpu_memory_utilization
    shared = build_vllm_args(profile, gpu_memory_utilization=0.68)
    assert _option(shared, "--gpu-memory-utilization") == "0.68"
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        build_vllm_args(profile, gpu_memory_utilization=1.5)


def test_cli_gpu_memory_utilization_from_flag_then_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def printed_utilization(*extra: str) -> str:
        vllm_launch.main(["--profile", "llmga-vicuna-7b", "--print", *extra])
        printed = capsys.readouterr().out.split()
        return printed[printed.index("--gpu-memory-utilization") + 1]

    monkeypatch.delenv("LLMGA_MLLM_GPU_MEMORY_UTILIZATION", raising=False)
    assert printed_utilization() == "0.9"
    monkeypatch.setenv("LLMGA_MLLM_GPU_MEMORY_UTILIZATION", "0.7")
    assert printed_utilization() == "0.7"
    assert printed_utilization("--gpu-memory-utilization", "0.5") == "0.5"  # flag wins


@pytest.mark.parametrize("value", ["0", "1.01", "-0.2", "lots"])
def test_cli_rejects_a_utilization_outside_0_1(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        vllm_launch.main(["--profile", "llmga-vicuna-7b", "--gpu-memory-utilization", value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --gpu-memory-utilization: must be a number in (0, 1]" in error
    assert repr(value) in error


def test_cli_rejects_a_utilization_outside_0_1_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMGA_MLLM_GPU_MEMORY_UTILIZATION", "1.2")
    with pytest.raises(SystemExit) as exit_info:
        vllm_launch.main(["--profile", "llmga-vicuna-7b", "--print"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "invalid LLMGA_MLLM_* environment" in error
    assert "gpu_memory_utilization" in error
