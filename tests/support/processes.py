"""Start the project's real services as subprocesses for tests, with the same
`ManagedProcess` that `make run` uses (deploy/local/stack.py)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from deploy.local.stack import ManagedProcess, http_ok

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    name: str,
    argv: list[str],
    env: Mapping[str, str],
    ready: Callable[[], bool],
    log_dir: Path,
    timeout_s: float = 60.0,
) -> Iterator[ManagedProcess]:
    """Run `argv` until the block ends; fail with its log tail if it is not ready in time."""
    process = ManagedProcess(name, argv, env=env, log_dir=log_dir).start()
    try:
        process.wait_until(ready, timeout_s)
        yield process
    finally:
        process.stop()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


__all__ = ["REPO_ROOT", "free_port", "http_ok", "python_module", "running"]
