"""Kubernetes manifests (deploy/k8s): every overlay renders with `kubectl kustomize`, every
rendered document is valid (built-in kinds against the Kubernetes schemas that
`kubernetes-validate` ships, KEDA and Prometheus Operator kinds against their vendored
CRD schemas, both rejecting unknown fields), and the properties that keep jobs and data
safe hold: grace periods, probes, one GPU per pod, network isolation, non-root pods,
queue-driven autoscaling."""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.gateway.metrics import GatewayMetrics
from services.gateway.settings import GatewaySettings
from services.mllm.vllm_launch import PROFILES as VLLM_PROFILES
from services.worker.settings import WorkerSettings
from tests.support.deploy import K8S_DIR, REPO_ROOT, SCHEMAS_DIR, venv_tool

OVERLAYS = {"cpu-dev": "llmga-dev", "gpu": "llmga"}  # overlay -> namespace
KUBERNETES_VERSION = "1.33"
CRD_FILES = (
    "keda.sh_scaledobjects.yaml",
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_podmonitors.yaml",
)

Manifest = dict[str, Any]


def render(overlay: str) -> list[Manifest]:
    """`kubectl kustomize deploy/k8s/overlays/<overlay>`, parsed."""
    result = subprocess.run(
        [str(venv_tool("kubectl")), "kustomize", str(K8S_DIR / "overlays" / overlay)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def strict(schema: Any) -> Any:
    """A CRD's openAPIV3Schema that rejects unknown fields, as the API server's strict
    field validation does (CRD schemas leave `additionalProperties` open and rely on
    pruning)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def load_crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict schema, for every served version of the vendored CRDs."""
    schemas = {}
    for name in CRD_FILES:
        crd = yaml.safe_load((SCHEMAS_DIR / name).read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


CRD_SCHEMAS = load_crd_schemas()


def validate(doc: Manifest) -> None:
    """Raise unless `doc` is valid for its kind (built-in or vendored CRD)."""
    schema = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if schema is not None:
        jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def docs(overlay: str) -> list[Manifest]:
    return render(overlay)


def find(docs: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def config_env(docs: list[Manifest]) -> dict[str, str]:
    """The settings ConfigMap's data (its name carries a content hash)."""
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("llmga-config")
    ]
    assert len(maps) == 1
    return dict(maps[0]["data"])


def container(workload: Manifest) -> Manifest:
    """The container named like its Deployment or StatefulSet (each has one)."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == workload["metadata"]["name"])


def probe_budget_s(probe: Manifest) -> int:
    """How long a probe tolerates failure before it acts (period x threshold)."""
    return int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))


# --- rendering and schema validation ----------------------------------------------------


def test_every_document_is_valid(docs: list[Manifest], overlay: str) -> None:
    assert docs
    for doc in docs:
        try:
            validate(doc)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as error:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {error}")
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == OVERLAYS[overlay]


def test_validation_rejects_a_misspelt_field(docs: list[Manifest]) -> None:
    """Both validators reject an unknown field, nested ones too: a typo cannot pass."""
    for kind in ("Deployment", "ScaledObject", "PodMonitor"):
        doc = copy.deepcopy(find(docs, kind, "worker"))
        doc["spec"]["minReplicaCont"] = 1
        with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
            validate(doc)
    scaled = copy.deepcopy(find(docs, "ScaledObject", "worker"))
    scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behaviour"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


def test_custom_kinds_are_checked_against_vendored_crds(docs: list[Manifest]) -> None:
    """The KEDA and Prometheus Operator kinds go through their CRD schemas; any other kind
    must be one kubernetes-validate knows (test_every_document_is_valid fails otherwise)."""
    custom = {
        (d["apiVersion"], d["kind"]) for d in docs if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS
    }
    assert custom == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
    }


# --- settings ---------------------------------------------------------------------------


def test_settings_configmap_is_accepted_by_the_services(
    docs: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker and gateway read the ConfigMap without error (the worker checks that
    the visibility timeout outlasts the longest job)."""
    for key, value in config_env(docs).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LLMGA_REDIS_URL", "redis://:secret@redis:6379/0")
    worker = WorkerSettings()
    gateway = GatewaySettings()
    assert worker.visibility_timeout_s > worker.max_job_s
    assert gateway.mllm_base_url == "http://mllm:8001/v1"


def test_secret_references_resolve(docs: list[Manifest]) -> None:
    secret = find(docs, "Secret", "llmga-secrets")
    keys = set(secret["stringData"])
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "llmga-secrets" and ref["key"] in keys, env


# --- workers: jobs survive stops, scaling, GPUs -------------------------------------------


def test_worker_stops_only_after_its_longest_job(docs: list[Manifest]) -> None:
    worker = find(docs, "Deployment", "worker")
    spec = worker["spec"]["template"]["spec"]
    max_job_s = float(config_env(docs)["LLMGA_WORKER_MAX_JOB_S"])
    assert spec["terminationGracePeriodSeconds"] > max_job_s
    # preStop: SIGTERM (Celery warm shutdown: stop consuming, finish the job), then wait.
    command = " ".join(container(worker)["lifecycle"]["preStop"]["exec"]["command"])
    assert "kill -TERM 1" in command and "while kill -0 1" in command
    # A rollout starts the new worker before stopping an old one.
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_workers_scale_on_queue_depth_with_running_jobs(docs: list[Manifest], overlay: str) -> None:
    scaled = find(docs, "ScaledObject", "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "worker"
    find(docs, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    assert scaled["spec"]["minReplicaCount"] >= 1
    assert scaled["spec"]["maxReplicaCount"] >= scaled["spec"]["minReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    # The gateway's gauge: waiting + delivered-but-unacknowledged (running) jobs.
    gauge = GatewayMetrics().queue_depth
    assert "not acknowledged" in gauge._documentation
    query = trigger["metadata"]["query"]
    assert query == f'max(llmga_gateway_queue_depth{{namespace="{OVERLAYS[overlay]}"}})'
    assert float(trigger["metadata"]["threshold"]) == 1  # one job per worker


def test_gpu_pods_get_exactly_one_gpu(docs: list[Manifest], overlay: str) -> None:
    gpus = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            limits = c.get("resources", {}).get("limits", {})
            gpus[doc["metadata"]["name"]] = limits.get("nvidia.com/gpu")
    if overlay == "gpu":
        assert gpus["worker"] == 1 and gpus["mllm"] == 1
        assert gpus["gateway"] is None and gpus["redis"] is None
        assert config_env(docs)["LLMGA_WORKER_DEVICE"] == "cuda"
    else:
        assert not any(gpus.values())
        assert config_env(docs)["LLMGA_WORKER_PROFILE"] == "tiny"


def test_mllm_probes_and_launcher(docs: list[Manifest], overlay: str) -> None:
    mllm = container(find(docs, "Deployment", "mllm"))
    assert mllm["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    assert mllm["livenessProbe"]["httpGet"]["path"] == "/health"
    # Generous: model loading must not be killed by the liveness probe.
    assert probe_budget_s(mllm["startupProbe"]) >= (1800 if overlay == "gpu" else 1200)
    if overlay == "gpu":
        assert mllm["args"][mllm["args"].index("--profile") + 1] in VLLM_PROFILES
        assert mllm["image"].startswith("llmga-mllm:") and mllm["image"].endswith("vllm")


def test_every_service_pod_has_probes(docs: list[Manifest]) -> None:
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in c, f"{doc['metadata']['name']}: no {probe}"


# --- gateway, Redis, disruption budgets ---------------------------------------------------


def test_gateway_autoscales_on_cpu(docs: list[Manifest]) -> None:
    hpa = find(docs, "HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert container(find(docs, "Deployment", "gateway"))["resources"]["requests"]["cpu"]
    # uvicorn drains in-flight requests for LLMGA_SHUTDOWN_TIMEOUT_S before exiting.
    grace = find(docs, "Deployment", "gateway")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    assert grace > int(config_env(docs)["LLMGA_SHUTDOWN_TIMEOUT_S"])


def test_redis_keeps_its_data(docs: list[Manifest]) -> None:
    redis = find(docs, "StatefulSet", "redis")
    args = container(redis)["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--requirepass" in args
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container(redis)["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"


def test_disruption_budgets_cover_the_services(docs: list[Manifest]) -> None:
    for name in ("gateway", "mllm", "worker"):
        pdb = find(docs, "PodDisruptionBudget", name)
        labels = find(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert find(docs, "PodDisruptionBudget", "gateway")["spec"]["minAvailable"] >= 1


# --- security ------------------------------------------------------------------------------


def test_every_pod_runs_as_non_root(docs: list[Manifest]) -> None:
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for c in pod["containers"]:
            context = c["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]


@dataclass(frozen=True)
class Peer:
    """A connection's source: a pod (labels, namespace) or a client outside the cluster."""

    labels: dict[str, str] | None
    namespace: str = ""


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "the evaluator knows matchLabels only"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(rule_peer: dict[str, Any], source: Peer, policy_namespace: str) -> bool:
    assert "ipBlock" not in rule_peer
    if source.labels is None:  # outside the cluster: only a rule without `from` admits it
        return False
    namespace_selector = rule_peer.get("namespaceSelector")
    if namespace_selector is None:
        in_namespace = source.namespace == policy_namespace
    else:
        in_namespace = _selects(
            namespace_selector, {"kubernetes.io/metadata.name": source.namespace}
        )
    pod_selector = rule_peer.get("podSelector")
    return in_namespace and (pod_selector is None or _selects(pod_selector, source.labels))


def ingress_allowed(
    policies: list[Manifest], target: dict[str, str], port: int, source: Peer
) -> bool:
    """Kubernetes NetworkPolicy semantics for ingress to a pod with labels `target`: a pod
    no policy selects admits everything; otherwise some selecting policy must have a rule
    whose `from` (absent: anyone) matches the source and whose ports (absent: all) hold
    the port."""
    selecting = [p for p in policies if _selects(p["spec"]["podSelector"], target)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = [entry["port"] for entry in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get("from")
            if peers is None or any(
                _peer_matches(peer, source, policy["metadata"]["namespace"]) for peer in peers
            ):
                return True
    return False


def test_network_policies_isolate_everything_but_the_gateway(
    docs: list[Manifest], overlay: str
) -> None:
    namespace = OVERLAYS[overlay]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]

    def pod(component: str) -> dict[str, str]:
        return find(docs, "Deployment" if component != "redis" else "StatefulSet", component)[
            "spec"
        ]["template"]["metadata"]["labels"]

    peers = {
        "outside": Peer(None),
        "other-namespace": Peer({"app": "anything"}, "default"),
        "prometheus": Peer({"app.kubernetes.io/name": "prometheus"}, "monitoring"),
        **{c: Peer(pod(c), namespace) for c in ("gateway", "worker", "mllm")},
    }
    expected = [
        # (source, target, port, allowed)
        ("outside", "gateway", 8000, True),
        ("outside", "mllm", 8001, False),
        ("outside", "worker", 9101, False),
        ("outside", "redis", 6379, False),
        ("other-namespace", "mllm", 8001, False),
        ("other-namespace", "redis", 6379, False),
        ("gateway", "mllm", 8001, True),
        ("gateway", "redis", 6379, True),
        ("worker", "redis", 6379, True),
        ("worker", "mllm", 8001, False),
        ("mllm", "redis", 6379, False),
        ("prometheus", "worker", 9101, True),
        ("prometheus", "mllm", 8001, True),
        ("prometheus", "redis", 6379, False),
    ]
    wrong = [
        (source, target, port, allowed)
        for source, target, port, allowed in expected
        if ingress_allowed(policies, pod(target), port, peers[source]) != allowed
    ]
    assert wrong == []


def test_monitors_scrape_ports_that_exist(docs: list[Manifest]) -> None:
    for name in ("gateway", "mllm"):
        monitor = find(docs, "ServiceMonitor", name)
        service = find(docs, "Service", name)
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    pod_monitor = find(docs, "PodMonitor", "worker")
    worker = container(find(docs, "Deployment", "worker"))
    assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} <= {
        p["name"] for p in worker["ports"]
    }


def test_managed_redis_overlay_replaces_the_bundled_redis() -> None:
    """gpu-managed-redis: no Redis workload, Service or policy; gateway and workers get a
    TLS URL that uses the Secret's password (defined before the URL refers to it)."""
    docs = render("gpu-managed-redis")
    for doc in docs:
        validate(doc)
        assert "redis" not in doc["metadata"]["name"], doc["kind"]
    for name in ("gateway", "worker"):
        env = container(find(docs, "Deployment", name))["env"]
        names = [entry["name"] for entry in env]
        url = next(entry["value"] for entry in env if entry["name"] == "LLMGA_REDIS_URL")
        assert url.startswith("rediss://:$(REDIS_PASSWORD)@")
        assert names.index("REDIS_PASSWORD") < names.index("LLMGA_REDIS_URL")
