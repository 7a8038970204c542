"""The project's services as test subprocesses: gateway, worker and the local mllm, each
in a Redis namespace (key prefix + Celery queue) that no other test run uses."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from deploy.local.stack import ManagedProcess
from services.common.redis_keys import RedisKeys
from services.common.workers import WorkerRegistry
from tests.support.processes import REPO_ROOT, free_port, http_ok, python_module, running

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Namespace:
    """A Redis key prefix and Celery queue name no other test run uses (in the test Redis,
    or another one's `redis_url`)."""

    key_prefix: str
    queue_name: str
    redis_url: str = REDIS_URL

    @classmethod
    def unique(cls, label: str = "test") -> Namespace:
        token = uuid.uuid4().hex[:12]
        return cls(key_prefix=f"{label}-{token}", queue_name=f"{label}-{token}.generate")

    def env(self) -> dict[str, str]:
        """The LLMGA_* variables that put a service in this namespace."""
        return {
            "LLMGA_REDIS_URL": self.redis_url,
            "LLMGA_KEY_PREFIX": self.key_prefix,
            "LLMGA_QUEUE_NAME": self.queue_name,
        }

    def cleanup(self, client: redis.Redis) -> None:
        """Delete every key of the namespace and its queue (and kombu's bookkeeping)."""
        keys = list(client.scan_iter(match=f"{self.key_prefix}:*", count=1000))
        keys += [self.queue_name, *client.scan_iter(match=f"{self.queue_name}*", count=1000)]
        # kombu 5.7 keeps two binding sets per exchange (named like the queue).
        keys += [f"_kombu.binding.{self.queue_name}", f"_kombu.binding_permanent.{self.queue_name}"]
        client.delete(*keys)


def apikeys_cli(namespace: Namespace, *args: str) -> str:
    """Run `python -m services.gateway.http.apikeys ARGS` in the namespace's Redis; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway.http.apikeys", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **namespace.env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def create_api_key(namespace: Namespace, tenant: str, *options: str) -> str:
    """A key made by the real CLI (`python -m services.gateway.http.apikeys create --tenant T
    OPTIONS`) in the namespace's Redis: the one line it prints."""
    (key,) = apikeys_cli(namespace, "create", "--tenant", tenant, *options).split()
    assert key.startswith("llmga_")
    return key


@dataclass(frozen=True)
class HttpService:
    """A running HTTP service on 127.0.0.1."""

    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def start_gateway(env: Mapping[str, str], log_dir: Path) -> Iterator[HttpService]:
    """`python -m services.gateway` on a free port with `env` added to ours."""
    port = free_port()
    env = {"LLMGA_GATEWAY_HOST": "127.0.0.1", "LLMGA_GATEWAY_PORT": str(port), **env}
    ready = http_ok(f"http://127.0.0.1:{port}/healthz")
    with running("gateway", python_module("services.gateway"), env, ready, log_dir):
        yield HttpService(port)


def worker_name(namespace: Namespace, name: str) -> str:
    """The registry name of a test worker: unique per namespace."""
    return f"{namespace.key_prefix}-{name}"


@contextmanager
def start_worker_process(
    namespace: Namespace,
    models_dir: Path,
    log_dir: Path,
    name: str = "worker",
    env: Mapping[str, str] | None = None,
) -> Iterator[ManagedProcess]:
    """`python -m services.worker` on the tiny profile; ready once it heartbeats. Yields
    the process, for tests that signal it. `env` is added last (e.g. a metrics port: off by
    default, so that test workers do not compete for 9101)."""
    registered_as = worker_name(namespace, name)
    env = {
        **namespace.env(),
        "LLMGA_WORKER_METRICS_PORT": "0",
        "LLMGA_MODELS_DIR": str(models_dir),
        "LLMGA_WORKER_NAME": registered_as,
        "LLMGA_WORKER_HEARTBEAT_INTERVAL_S": "1",
        # One thread: on a small shared CPU, two OpenMP threads fighting other processes
        # are many times slower than one.
        "LLMGA_WORKER_TORCH_THREADS": "1",
        **(env or {}),
    }
    registry = WorkerRegistry(
        redis.Redis.from_url(namespace.redis_url), RedisKeys(namespace.key_prefix)
    )
    with running(
        name,
        python_module("services.worker"),
        env,
        lambda: registered_as in registry.live(30),
        log_dir,
        timeout_s=180,
    ) as process:
        yield process


@contextmanager
def start_worker(
    namespace: Namespace,
    models_dir: Path,
    log_dir: Path,
    name: str = "worker",
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """`start_worker_process`, yielding the worker's registry name."""
    with start_worker_process(namespace, models_dir, log_dir, name, env):
        yield worker_name(namespace, name)


@contextmanager
def start_local_mllm(log_dir: Path) -> Iterator[HttpService]:
    """The real local mllm engine (`python -m services.mllm`) on a free port. Its model
    cache is `LLMGA_MLLM_CACHE_DIR` as set for the test run (the Makefile sets it), so the
    GGUF is converted once, not once per test."""
    port = free_port()
    env = {"LLMGA_MLLM_HOST": "127.0.0.1", "LLMGA_MLLM_PORT": str(port), "HF_HUB_OFFLINE": "1"}
    ready = http_ok(f"http://127.0.0.1:{port}/health")
    with running("mllm", python_module("services.mllm"), env, ready, log_dir, timeout_s=600):
        yield HttpService(port)
