"""The container images (deploy/docker/*.Dockerfile): hadolint-clean, and every image a
service runs from is non-root, health-checked, built on pinned bases and model-free.

Nothing here builds an image (no Docker engine in CI); docs/deploy.md says what was
checked instead."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.mllm.vllm_launch import PROFILES as VLLM_PROFILES
from tests.support.deploy import DOCKER_DIR, REPO_ROOT, venv_tool

DOCKERFILES = sorted(DOCKER_DIR.glob("*.Dockerfile"))

# The stages a service runs from, per file (`docker build --target ...`).
SERVICE_TARGETS = {
    "gateway.Dockerfile": ["gateway"],
    "worker.Dockerfile": ["gpu", "cpu"],
    "mllm.Dockerfile": ["vllm", "cpu"],
}


@dataclass
class Stage:
    """One `FROM ... AS name` stage: its base and instructions (keyword, arguments)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args.strip(), re.IGNORECASE)
            assert match, f"{path.name}: every stage is named: FROM {args}"
            current = Stage(match.group(2), match.group(1))
            stages[current.name] = current
        elif current is None:
            assert keyword == "ARG", f"{path.name}: only ARG before the first FROM"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            current.instructions.append((keyword, args.strip()))
    return global_args, stages


def resolve_base(stage: Stage, global_args: dict[str, str], stages: dict[str, Stage]) -> str:
    """The image a stage finally starts from, following `${ARG}`s and earlier stages."""
    base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], stage.base)
    return resolve_base(stages[base], global_args, stages) if base in stages else base


def test_every_dockerfile_has_its_targets() -> None:
    assert sorted(path.name for path in DOCKERFILES) == sorted(SERVICE_TARGETS)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    # .hadolint.yaml at the repository root: fail on every finding, trusted registries.
    result = subprocess.run(
        [str(venv_tool("hadolint")), "--no-color", str(dockerfile.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_still_fails_unpinned_installs(tmp_path: Path) -> None:
    """The committed config ignores nothing globally: an unpinned package, a `latest`
    base and an untrusted registry are reported."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text(
        "FROM quay.io/example/tools:1.0 AS tools\n"
        'FROM python:latest\nRUN pip install flask\nCMD ["flask"]\n'
    )
    result = subprocess.run(
        [str(venv_tool("hadolint")), "--no-color", str(bad)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    # latest tag, unpinned pip, pip cache, a registry not in trustedRegistries
    for rule in ("DL3007", "DL3013", "DL3042", "DL3026"):
        assert rule in result.stdout


def _service_stages() -> Sequence[object]:
    """(file name, stage, resolved base) of every stage a service runs from."""
    found = []
    for path in DOCKERFILES:
        global_args, stages = parse_dockerfile(path)
        for target in SERVICE_TARGETS[path.name]:
            stage = stages[target]
            found.append(
                pytest.param(
                    path.name,
                    stage,
                    resolve_base(stage, global_args, stages),
                    id=f"{path.stem}:{target}",
                )
            )
    return found


@pytest.mark.parametrize(("dockerfile", "stage", "base"), _service_stages())
def test_service_image_is_non_root_health_checked_and_pinned(
    dockerfile: str, stage: Stage, base: str
) -> None:
    users = stage.args_of("USER")
    assert users, f"{dockerfile}:{stage.name} sets no USER (runs as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid (Kubernetes runAsNonRoot)"
    assert stage.args_of("HEALTHCHECK"), f"{dockerfile}:{stage.name} has no HEALTHCHECK"
    assert stage.args_of("CMD") or stage.args_of("ENTRYPOINT")
    # A pinned base: a tag (not `latest`), optionally a digest.
    name, _, tag = base.split("@")[0].rpartition(":")
    assert name and tag and tag != "latest", f"{dockerfile}:{stage.name} base {base} unpinned"
    # Multi-stage: build tools and caches stay in a build stage, except for the vLLM
    # image, which only adds the launcher to vLLM's own.
    if stage.name != "vllm":
        assert any(args.startswith("--from=") for args in stage.args_of("COPY"))


@pytest.mark.parametrize(("dockerfile", "stage", "base"), _service_stages())
def test_models_are_volumes_not_layers(dockerfile: str, stage: Stage, base: str) -> None:
    """Images that load models declare /models a volume and point their caches into it;
    no image copies weights in."""
    copies = " ".join(stage.args_of("COPY"))
    assert not re.search(r"\.(safetensors|bin|gguf|ckpt|pt)\b", copies)
    if stage.name == "gateway":
        return
    assert any("/models" in args for args in stage.args_of("VOLUME"))
    env = " ".join(stage.args_of("ENV"))
    assert re.search(r"(LLMGA_MODELS_DIR|LLMGA_MLLM_CACHE_DIR|HF_HOME)=/models", env)


def test_images_install_the_right_torch() -> None:
    """The gateway image has no torch; the GPU worker gets the CUDA build on a CUDA base;
    CPU images the CPU build (never a CUDA wheel into a CPU image), before their lock."""
    _, gateway_stages = parse_dockerfile(DOCKER_DIR / "gateway.Dockerfile")
    gateway_runs = " ".join(" ".join(stage.args_of("RUN")) for stage in gateway_stages.values())
    assert "-r gateway.txt" in gateway_runs and "torch" not in gateway_runs
    global_args, stages = parse_dockerfile(DOCKER_DIR / "worker.Dockerfile")
    assert resolve_base(stages["gpu"], global_args, stages).startswith("nvidia/cuda:")
    assert "download.pytorch.org/whl/cu" in global_args["TORCH_CUDA_INDEX"]
    gpu_build = " ".join(stages["gpu-build"].args_of("RUN"))
    assert "${TORCH_CUDA_INDEX}" in gpu_build
    for path, build in (("worker.Dockerfile", "cpu-build"), ("mllm.Dockerfile", "cpu-build")):
        _, file_stages = parse_dockerfile(DOCKER_DIR / path)
        runs = " ".join(file_stages[build].args_of("RUN"))
        assert "download.pytorch.org/whl/cpu" in runs
        assert runs.index("whl/cpu") < runs.index("-r ")  # CPU torch before the lock


@pytest.mark.parametrize("service", ["gateway", "worker", "mllm"])
def test_images_install_their_service_lock_then_the_project_without_resolving(
    service: str,
) -> None:
    """Every image installs exactly the versions the tests ran with (deploy/lock/)."""
    _, stages = parse_dockerfile(DOCKER_DIR / f"{service}.Dockerfile")
    builds = [stage for name, stage in stages.items() if name.endswith("build")]
    assert builds
    for stage in builds:
        runs = " ".join(stage.args_of("RUN"))
        copies = " ".join(stage.args_of("COPY"))
        assert f"deploy/lock/{service}.txt" in copies and f"-r {service}.txt" in runs
        assert "--no-deps ." in runs and runs.index(f"-r {service}.txt") < runs.index("--no-deps")


def test_vllm_image_runs_a_known_launcher_profile() -> None:
    global_args, stages = parse_dockerfile(DOCKER_DIR / "mllm.Dockerfile")
    vllm = stages["vllm"]
    assert resolve_base(vllm, global_args, stages).startswith("vllm/vllm-openai:v")
    assert "services.mllm.vllm_launch" in vllm.args_of("ENTRYPOINT")[-1]
    cmd = vllm.args_of("CMD")[-1]
    profile = re.search(r'"--profile",\s*"([^"]+)"', cmd)
    assert profile and profile.group(1) in VLLM_PROFILES
    copied = " ".join(vllm.args_of("COPY"))
    assert "chat_templates" in copied and "vllm_launch.py" in copied


def test_dockerignore_admits_exactly_what_the_images_copy() -> None:
    """The build context is the repository root; .dockerignore excludes all but the
    sources the COPY instructions name (no .venv, .git, tests or local models)."""
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for path in DOCKERFILES:
        _, stages = parse_dockerfile(path)
        for stage in stages.values():
            for args in stage.args_of("COPY"):
                if args.startswith("--from="):
                    continue
                *sources, _dest = args.split()
                for source in sources:
                    assert any(source == ok or source.startswith(ok + "/") for ok in admitted), (
                        f"{path.name} copies {source}, excluded"
                    )
                    assert (REPO_ROOT / source).exists(), f"{path.name}: {source} missing"
