"""Run the real gateway as a subprocess (`python -m services.gateway`) for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from tests.support.scripted_mllm import REPO_ROOT, free_port, stop_process, wait_http_ok


@dataclass(frozen=True)
class Namespace:
    """A Redis key prefix and Celery queue name no other test run uses."""

    key_prefix: str
    queue_name: str

    @classmethod
    def unique(cls, label: str = "test") -> Namespace:
        token = uuid.uuid4().hex[:12]
        return cls(key_prefix=f"{label}-{token}", queue_name=f"{label}-{token}.generate")

    def env(self) -> dict[str, str]:
        """The LLMGA_* variables that put a service in this namespace."""
        return {"LLMGA_KEY_PREFIX": self.key_prefix, "LLMGA_QUEUE_NAME": self.queue_name}

    def cleanup(self, client: redis.Redis) -> None:
        """Delete every key of the namespace and its queue (and kombu's bookkeeping)."""
        keys = list(client.scan_iter(match=f"{self.key_prefix}:*", count=1000))
        keys += [self.queue_name, *client.scan_iter(match=f"{self.queue_name}*", count=1000)]
        if keys:
            client.delete(*keys)


@dataclass
class GatewayProcess:
    """A running gateway subprocess."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def start_gateway(env: dict[str, str], port: int | None = None) -> Iterator[GatewayProcess]:
    """Start `python -m services.gateway` with `env` added to ours; stop it on exit."""
    port = port or free_port()
    full_env = {
        **os.environ,
        "LLMGA_GATEWAY_HOST": "127.0.0.1",
        "LLMGA_GATEWAY_PORT": str(port),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"], cwd=REPO_ROOT, env=full_env
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", process=process)
        yield GatewayProcess(port=port, process=process)
    finally:
        stop_process(process)
