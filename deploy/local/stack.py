"""Run the whole stack locally as plain processes: Redis (if none answers), mllm, worker,
gateway. `make run` calls this; the end-to-end tests start services with the same helper.

Each service is started with `python -m services.<name>` and waited for on its HTTP
readiness URL, so a failure to start is reported with the service's own log tail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ManagedProcess:
    """A child process with its log file, started and stopped as a unit."""

    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path = ROOT / ".run"
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches only the launcher
        )
        return self

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_until(self, is_ready: Callable[[], bool], timeout_s: float) -> None:
        """Poll `is_ready` until it is true; raise with the log tail if the process dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if is_ready():
                return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness check: GET `url` answers 2xx."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return check


def redis_answers(redis_url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(redis_url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:`port` (readiness checks would
    otherwise be answered by that other process)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def python_module(name: str, module: str, env: Mapping[str, str]) -> ManagedProcess:
    return ManagedProcess(name, [sys.executable, "-m", module], env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway-port", type=int, default=8000)
    parser.add_argument("--mllm-port", type=int, default=8001)
    args = parser.parse_args()
    # SIGTERM (a process manager, `kill`) stops the stack like Ctrl-C does: the `finally`
    # below must run, or the services would be left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    redis_url = os.environ.get("LLMGA_REDIS_URL", "redis://127.0.0.1:6379/0")
    env = {
        "LLMGA_REDIS_URL": redis_url,
        "LLMGA_MLLM_PORT": str(args.mllm_port),
        "LLMGA_MLLM_BASE_URL": f"http://127.0.0.1:{args.mllm_port}/v1",
        "LLMGA_GATEWAY_HOST": "127.0.0.1",
        "LLMGA_GATEWAY_PORT": str(args.gateway_port),
        # The worker and the mllm share a small CPU: one torch thread for the worker keeps
        # them from fighting over cores (override by exporting the variable).
        "LLMGA_WORKER_TORCH_THREADS": os.environ.get("LLMGA_WORKER_TORCH_THREADS", "1"),
        # The toy world's trained models (committed weights, docs/toy-world.md): they draw
        # the asked colours at the asked places, where the tiny profile's random weights
        # draw noise. The tests keep the worker's own default, `tiny`.
        "LLMGA_WORKER_PROFILE": os.environ.get("LLMGA_WORKER_PROFILE", "toy"),
        # The local assistant is a small model that writes generation blocks too eagerly
        # ("write me a haiku" drawn as an image): the router's guard keeps chat turns chat.
        "LLMGA_ROUTER_GUARD": os.environ.get("LLMGA_ROUTER_GUARD", "true"),
    }
    busy = [port for port in (args.gateway_port, args.mllm_port) if port_in_use(port)]
    if busy:
        print(
            f"port(s) {busy} already in use (another stack still running?); stop it or pass "
            "--gateway-port/--mllm-port",
            file=sys.stderr,
        )
        return 1
    processes: list[ManagedProcess] = []
    try:
        if not redis_answers(redis_url):
            server = shutil.which("redis-server")
            if server is None:
                print(f"No Redis at {redis_url} and no redis-server to start.", file=sys.stderr)
                return 1
            port = str(urlparse(redis_url).port or 6379)
            redis_proc = ManagedProcess(
                "redis", [server, "--port", port, "--bind", "127.0.0.1", "--save", ""]
            ).start()
            processes.append(redis_proc)
            redis_proc.wait_until(lambda: redis_answers(redis_url), 20)

        mllm = python_module("mllm", "services.mllm", env).start()
        worker = python_module("worker", "services.worker", env).start()
        gateway = python_module("gateway", "services.gateway", env).start()
        processes += [mllm, worker, gateway]
        print("starting mllm, worker and gateway; logs in .run/", flush=True)
        gateway.wait_until(http_ok(f"http://127.0.0.1:{args.gateway_port}/readyz"), 300)
        print(
            f"ready: gateway on http://127.0.0.1:{args.gateway_port} (Ctrl-C stops everything)",
            flush=True,
        )
        while all(p.process is not None and p.process.poll() is None for p in processes):
            time.sleep(1)
        dead = [p for p in processes if p.process is not None and p.process.poll() is not None]
        for p in dead:
            print(f"{p.name} exited:\n{p.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError) as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        for p in reversed(processes):
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
