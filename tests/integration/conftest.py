"""Fixtures shared by the integration tests: real services as subprocesses.

Module-scoped fixtures give each test module its own Redis namespace, worker and gateway;
a module that needs other settings overrides the fixture by defining its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import (
    REDIS_URL,
    HttpService,
    Namespace,
    start_gateway,
    start_local_mllm,
    start_worker,
)


@pytest.fixture(scope="session")
def local_mllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpService]:
    """The real local mllm engine, started once per test session (loading it takes ~10 s;
    the first run on a machine also converts the GGUF, ~90 s)."""
    with start_local_mllm(tmp_path_factory.mktemp("mllm-logs")) as service:
        yield service


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    """A bytes client of the test Redis."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=False)
    client.ping()  # no Redis is a failure, not a skip: CI starts one
    yield client
    client.close()


@pytest.fixture(scope="module")
def namespace(request: pytest.FixtureRequest, redis_client: redis.Redis) -> Iterator[Namespace]:
    """A Redis key prefix and queue of the module's own, deleted afterwards."""
    label = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    ns = Namespace.unique(label)
    yield ns
    ns.cleanup(redis_client)


@pytest.fixture
def jobs(redis_client: redis.Redis, namespace: Namespace) -> JobStore:
    """The job records of the module's namespace, as the worker writes them."""
    return JobStore(redis_client, RedisKeys(namespace.key_prefix), ttl_s=60)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's service processes write their logs."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def worker(
    namespace: Namespace, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real worker process on the tiny models; yields its registry name."""
    with start_worker(namespace, tmp_path_factory.mktemp("models"), logs) as name:
        yield name


@pytest.fixture(scope="module")
def scripted(logs: Path) -> Iterator[ScriptedMllm]:
    """The scripted OpenAI-compatible server, for exact mllm replies."""
    with ScriptedMllm.start(logs) as server:
        yield server


@pytest.fixture
def mllm(scripted: ScriptedMllm) -> ScriptedMllm:
    """The scripted mllm with an empty script and no recorded requests."""
    scripted.reset()
    return scripted


@pytest.fixture(scope="module")
def api(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[httpx.Client]:
    """An HTTP client of a real gateway talking to the scripted mllm."""
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": scripted.base_url}
    with start_gateway(env, logs) as gateway, httpx.Client(base_url=gateway.url) as client:
        yield client


@pytest.fixture(scope="module")
def auth_gateway(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[HttpService]:
    """A real gateway on the scripted mllm that requires an API key on every route."""
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_AUTH_REQUIRED": "true",
    }
    with start_gateway(env, logs) as service:
        yield service
