"""docker-compose.yml and the Prometheus configuration it mounts: valid against the
Compose specification (vendored schema, no network) and right where it matters: health
checks, one GPU per worker, the one-GPU layout (vLLM and a worker sharing GPU 0),
grace periods longer than a job, Redis persistence, profiles, scrape targets and alert
rules on metrics that exist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml

from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from services.mllm import vllm_launch
from services.mllm.vllm_launch import PROFILES as VLLM_PROFILES
from services.worker import metrics as worker_metrics
from services.worker.settings import WorkerSettings
from tests.support.deploy import COMPOSE_FILE, PROMETHEUS_DIR, REPO_ROOT, SCHEMAS_DIR

_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}


def interpolate(value: Any) -> Any:
    """The file as Compose reads it with no variable set: `${VAR:-default}` -> default."""
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: match.group(2) or "", value)
    return value


def duration_s(text: str) -> float:
    """A Compose duration (`35m`, `1h30m`, `160s`) in seconds."""
    parts = _DURATION.findall(text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text}"
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def in_profile(services: dict[str, dict[str, Any]], *profiles: str) -> dict[str, dict[str, Any]]:
    """The services `docker compose --profile <p1> --profile <p2> … up` starts."""
    return {
        name: service
        for name, service in services.items()
        if not service.get("profiles") or set(profiles) & set(service["profiles"])
    }


def gpu_devices(service: dict[str, Any]) -> list[str]:
    """The GPU device ids a service reserves."""
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return [
        device_id
        for device in devices.get("devices", [])
        if "gpu" in device.get("capabilities", [])
        for device_id in device.get("device_ids", [])
    ]


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads((SCHEMAS_DIR / "compose-spec.json").read_text())
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft7Validator(schema).iter_errors(raw)
    ]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_key() -> None:
    schema = json.loads((SCHEMAS_DIR / "compose-spec.json").read_text())
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    raw["services"]["redis"]["healtcheck"] = raw["services"]["redis"].pop("healthcheck")
    assert not jsonschema.Draft7Validator(schema).is_valid(raw)


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD", f"{name}: no exec-form healthcheck"


def test_profiles_run_whole_stacks(services: dict[str, dict[str, Any]]) -> None:
    """Each profile starts Redis, a gateway, an mllm, a worker and Prometheus; `gpu-multi`
    adds a worker to `gpu`; the CPU profile reserves no GPU and runs the tiny models with
    the local engine."""
    gpu, cpu = in_profile(services, "gpu"), in_profile(services, "cpu")
    assert {"redis", "gateway", "mllm", "worker-0", "prometheus"} <= set(gpu)
    assert "worker-1" not in gpu
    assert set(in_profile(services, "gpu", "gpu-multi")) == set(gpu) | {"worker-1"}
    assert {"redis", "gateway", "mllm-cpu", "worker-cpu", "prometheus"} <= set(cpu)
    assert not set(gpu) & {"mllm-cpu", "worker-cpu"}
    assert not any(gpu_devices(service) for service in cpu.values())
    assert cpu["worker-cpu"]["environment"]["LLMGA_WORKER_PROFILE"] == "tiny"
    assert cpu["mllm-cpu"]["build"]["target"] == "cpu"
    # The gateway and Prometheus reach the CPU services by the GPU services' names.
    assert "mllm" in cpu["mllm-cpu"]["networks"]["default"]["aliases"]
    assert "worker-0" in cpu["worker-cpu"]["networks"]["default"]["aliases"]
    assert cpu["gateway"]["environment"]["LLMGA_MLLM_BASE_URL"] == "http://mllm:8001/v1"


def test_gpu_workers_reserve_one_gpu_each(services: dict[str, dict[str, Any]]) -> None:
    gpu = in_profile(services, "gpu", "gpu-multi")
    workers = {name: gpu_devices(s) for name, s in gpu.items() if name.startswith("worker-")}
    assert len(workers) >= 2
    assert all(len(devices) == 1 for devices in workers.values()), workers
    assert len(gpu_devices(gpu["mllm"])) == 1
    # One worker per GPU: two workers never share one (docs/deploy.md, Sizing).
    every = [device for devices in workers.values() for device in devices]
    assert len(every) == len(set(every)), every


def test_one_gpu_box_runs_the_gpu_profile_on_gpu_0(services: dict[str, dict[str, Any]]) -> None:
    """`--profile gpu` needs one GPU: the mllm and worker-0 reserve device 0 and nothing
    else does; the worker loads its models only once vLLM has sized its memory."""
    gpu = in_profile(services, "gpu")
    reserved = {name: gpu_devices(service) for name, service in gpu.items()}
    assert {name: devices for name, devices in reserved.items() if devices} == {
        "mllm": ["0"],
        "worker-0": ["0"],
    }
    assert gpu["worker-0"]["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "mllm": {"condition": "service_healthy"},
    }


# Sizing of the one-GPU layout (docs/deploy.md, "Sizing"; estimates, in GiB): the card it
# is sized for, LLaVA-7B in fp16 (Vicuna-7B + CLIP ViT-L/336 + projector), vLLM's
# activations, its KV cache per token (2 x 32 layers x 4096 x 2 bytes), what vLLM holds
# beyond its fraction (CUDA context, CUDA graphs), and an sd15 worker at its peak.
_CARD_GIB = 24.0
_LLAVA_7B_WEIGHTS_GIB = 13.2
_VLLM_ACTIVATIONS_GIB = 0.7
_LLAVA_7B_KV_GIB_PER_TOKEN = 2 * 32 * 4096 * 2 / 2**30
_VLLM_OUTSIDE_FRACTION_GIB = 1.0
_SD15_WORKER_GIB = 6.5


def _launched_utilization(
    service: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> float:
    """The `--gpu-memory-utilization` the launcher gives vLLM in this service's container."""
    for key, value in service.get("environment", {}).items():
        monkeypatch.setenv(key, str(value))
    vllm_launch.main([*service["command"], "--print"])
    printed = capsys.readouterr().out.split()
    return float(printed[printed.index("--gpu-memory-utilization") + 1])


def test_vllm_fraction_leaves_room_for_the_worker_on_a_24_gib_gpu(
    services: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """vLLM's share holds LLaVA-7B with a KV cache for one full-length sequence (it will
    not start otherwise), and what it leaves holds an sd15 worker."""
    mllm = services["mllm"]
    utilization = _launched_utilization(mllm, monkeypatch, capsys)
    profile = VLLM_PROFILES[mllm["command"][mllm["command"].index("--profile") + 1]]
    assert utilization < profile.gpu_memory_utilization  # lowered for the shared GPU
    vllm_gib = utilization * _CARD_GIB
    vllm_needs_gib = (
        _LLAVA_7B_WEIGHTS_GIB
        + _VLLM_ACTIVATIONS_GIB
        + profile.max_model_len * _LLAVA_7B_KV_GIB_PER_TOKEN
    )
    assert vllm_gib >= vllm_needs_gib
    assert _CARD_GIB - vllm_gib - _VLLM_OUTSIDE_FRACTION_GIB >= _SD15_WORKER_GIB


def test_gpu_layout_is_set_by_environment_variables(
    services: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Devices and vLLM's share come from `${VAR:-default}`s (docs/deploy.md), and the mllm
    on a GPU of its own (`LLMGA_MLLM_GPU_MEMORY_UTILIZATION=0.90`) gets that share."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert gpu_devices(raw["mllm"]) == ["${LLMGA_MLLM_GPU:-0}"]
    assert gpu_devices(raw["worker-0"]) == ["${LLMGA_WORKER_0_GPU:-0}"]
    assert gpu_devices(raw["worker-1"]) == ["${LLMGA_WORKER_1_GPU:-1}"]
    assert raw["mllm"]["environment"]["LLMGA_MLLM_GPU_MEMORY_UTILIZATION"] == (
        "${LLMGA_MLLM_GPU_MEMORY_UTILIZATION:-0.68}"
    )
    dedicated = {**services["mllm"], "environment": {"LLMGA_MLLM_GPU_MEMORY_UTILIZATION": "0.90"}}
    assert _launched_utilization(dedicated, monkeypatch, capsys) == 0.90


def test_workers_outlast_their_longest_job(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker compose stop` must let a running job finish: the stop grace period exceeds
    LLMGA_WORKER_MAX_JOB_S as the worker reads it from that environment (its settings
    also check that the visibility timeout exceeds the longest job)."""
    workers = {name: s for name, s in services.items() if name.startswith("worker")}
    assert workers
    for name, service in workers.items():
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = WorkerSettings()
        assert settings.max_job_s == float(service["environment"]["LLMGA_WORKER_MAX_JOB_S"])
        assert duration_s(service["stop_grace_period"]) > settings.max_job_s, name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_gateway_accepts_its_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in services["gateway"]["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = GatewaySettings()
    assert settings.redis_url == "redis://redis:6379/0"
    # Longer than the gateway's own drain of in-flight requests.
    assert duration_s(services["gateway"]["stop_grace_period"]) > settings.shutdown_timeout_s


def test_redis_persists_with_aof(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "ports" not in redis  # reachable inside the compose network only


def test_build_targets_and_launcher_profile_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        dockerfile = (REPO_ROOT / build["dockerfile"]).read_text()
        target = build.get("target")
        if target:
            assert re.search(rf"^FROM \S+ AS {re.escape(target)}$", dockerfile, re.M), name
    command = services["mllm"]["command"]
    assert command[command.index("--profile") + 1] in VLLM_PROFILES


def _rule_expressions() -> Iterator[tuple[str, str]]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def _exported_metric_names() -> set[str]:
    """Every series name the gateway and the worker export (counters with `_total`,
    histograms with `_bucket`, `_count`, `_sum`)."""
    registries = [GatewayMetrics().registry, worker_metrics.REGISTRY]
    names = set()
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
            names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
    # Registered only on CUDA workers (services/worker/metrics.py register_gpu_memory).
    names.update(
        {"llmga_worker_gpu_memory_allocated_bytes", "llmga_worker_gpu_memory_reserved_bytes"}
    )
    return names


def test_alert_rules_use_metrics_that_exist() -> None:
    exported = _exported_metric_names()
    rules = dict(_rule_expressions())
    assert {"LLMGANoWorker", "LLMGAQueueStuck", "LLMGAMllmErrors", "LLMGAGateway5xx"} <= set(rules)
    for alert, expr in rules.items():
        used = set(re.findall(r"\bllmga_[a-z0-9_]+", expr))
        assert used <= exported, f"{alert} uses unknown metrics {used - exported}"


def test_prometheus_scrapes_every_service(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }
    names = set(services) | {
        alias
        for service in services.values()
        for network in (service.get("networks") or {}).values()
        for alias in (network or {}).get("aliases", [])
    }
    assert targets["gateway"] == ["gateway:8000"]
    assert {"worker-0:9101", "worker-1:9101"} <= set(targets["worker"])
    assert targets["mllm"] == ["mllm:8001"]
    for job, hosts in targets.items():
        for host in hosts:
            assert host.split(":")[0] in names | {"127.0.0.1"}, f"{job}: {host} is no service"
    mount = next(v for v in services["prometheus"]["volumes"] if "/etc/prometheus" in v)
    assert mount.startswith("./deploy/prometheus:")
