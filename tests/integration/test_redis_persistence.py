"""Redis restarted with AOF persistence (`appendfsync always`): a private redis-server is
killed with SIGKILL under a real gateway and worker; conversations, jobs and images come
back through the API, the gateway answers 503 (never 500) while Redis is down, and both
services recover without a restart of their own."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from deploy.local.stack import ManagedProcess
from tests.support.http_api import assert_error
from tests.support.processes import free_port
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import HttpService, Namespace, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# .ci/run installs it when missing (it also starts the shared test Redis with it).
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TINY = {"width": 64, "height": 64, "steps": 2, "seed": 3}


@dataclass
class PrivateRedis:
    """A redis-server of this module's own, persisting every write to its AOF before it
    answers (`appendfsync always`), so a SIGKILL loses nothing acknowledged."""

    port: int
    data_dir: Path
    log_dir: Path
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            REDIS_SERVER,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
            *("--dir", str(self.data_dir)),
        ]
        self.process = ManagedProcess("redis", argv, log_dir=self.log_dir).start()
        client = redis.Redis.from_url(self.url)
        self.process.wait_until(lambda: _answers(client), timeout_s=30)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, only what the AOF already holds survives."""
        assert self.process is not None and self.process.process is not None
        self.process.process.send_signal(signal.SIGKILL)
        self.process.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory, logs: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path_factory.mktemp("redis-aof"), logs)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def namespace(private_redis: PrivateRedis) -> Namespace:
    """The conftest's namespace, in the private Redis (which goes away with the module)."""
    unique = Namespace.unique("redis-persistence")
    return Namespace(unique.key_prefix, unique.queue_name, redis_url=private_redis.url)


@pytest.fixture(scope="module")
def gateway(
    namespace: Namespace, scripted: ScriptedMllm, worker: str, logs: Path
) -> Iterator[HttpService]:
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": scripted.base_url}
    with start_gateway(env, logs) as service:
        yield service


def _wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _eventually(
    request: Callable[[], httpx.Response], status: int, timeout_s: float = 30
) -> httpx.Response:
    """Repeat `request` until it answers `status` (a client reconnects on its next call)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = request()
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_state_survives_a_redis_kill_and_the_gateway_answers_503_meanwhile(
    gateway: HttpService, private_redis: PrivateRedis, mllm: ScriptedMllm
) -> None:
    api = httpx.Client(base_url=gateway.url, timeout=60)
    mllm.script("Sure. <gen_image>a husky astronaut</gen_image>")
    chat = api.post("/v1/chat", json={"message": "a husky astronaut", **TINY}).json()
    conversation_id, job_id = chat["conversation_id"], chat["jobs"][0]["id"]
    job = api.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
    assert job["status"] == "succeeded", job
    image_id = job["images"][0]["id"]
    png = api.get(f"/v1/images/{image_id}").content
    conversation = api.get(f"/v1/conversations/{conversation_id}").json()
    # The outage starts once the worker is idle: the job's message acknowledged, which
    # with task threads comes just after its record is final. (A broker lost while a
    # message is unacknowledged ends the worker process, a Celery/kombu limitation,
    # docs/worker.md: its supervisor restarts it and the message is delivered again.)
    broker = redis.Redis.from_url(private_redis.url)
    _wait_until(lambda: broker.hlen("unacked") == 0)
    broker.close()

    private_redis.kill()
    for method, path, body in [
        ("GET", f"/v1/jobs/{job_id}", None),
        ("GET", f"/v1/conversations/{conversation_id}", None),
        ("GET", f"/v1/images/{image_id}", None),
        ("POST", "/v1/images", {"prompt": "x", **TINY}),
    ]:
        response = api.request(method, path, json=body)
        assert_error(response, 503)
        assert int(response.headers["Retry-After"]) > 0
    assert api.get("/healthz").status_code == 200  # cheap: no dependency
    assert api.get("/readyz").status_code == 503

    private_redis.start()
    after = _eventually(lambda: api.get(f"/v1/jobs/{job_id}"), 200).json()
    assert after["status"] == "succeeded" and after["images"] == job["images"]
    assert api.get(f"/v1/images/{image_id}").content == png
    assert api.get(f"/v1/conversations/{conversation_id}").json() == conversation

    # The worker reconnected to the broker: a new job runs to the end.
    created = api.post("/v1/images", json={"prompt": "a lighthouse", **TINY})
    assert created.status_code == 202, created.text
    new_job = api.get(f"/v1/jobs/{created.json()['id']}", params={"wait": 60}).json()
    assert new_job["status"] == "succeeded", new_job
    api.close()
