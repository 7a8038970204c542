"""Schemathesis against the real gateway's `/openapi.json` over real HTTP.

The gateway runs as a subprocess with the scripted mllm and real Redis, no worker. Every
operation gets a bounded, derandomized number of generated requests (valid and invalid);
no answer may be a 5xx other than those the API documents (503 from `/readyz`, which
reports "no live worker" here), and responses must match the schema and its media types.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance
from schemathesis.core.result import Ok

from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import REDIS_URL, HttpService, Namespace, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MAX_EXAMPLES = 20
# Documented 5xx answers that are not server errors in this setup.
ALLOWED_5XX = {
    ("GET", "/readyz"): {503},  # no worker runs in this test
    # OpenAI's Images API waits for its job: with no worker, 504 job_timeout (documented);
    # edits and variations ask the mllm first, whose default reply may hold no prompt (502).
    ("POST", "/v1/images/generations"): {504},
    ("POST", "/v1/images/edits"): {502, 504},
    ("POST", "/v1/images/variations"): {502, 504},
}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def gateway(logs: Path) -> Iterator[HttpService]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # no Redis is a failure, not a skip: CI starts one
    namespace = Namespace.unique("test-fuzz")
    with ScriptedMllm.start(logs) as mllm:
        env = {
            **namespace.env(),
            "LLMGA_MLLM_BASE_URL": mllm.base_url,
            # Generated `wait` values must not hold a request for a job no worker runs.
            "LLMGA_MAX_WAIT_S": "1",
            "LLMGA_OPENAI_IMAGES_WAIT_S": "1",
            "LLMGA_JOB_EVENTS_KEEPALIVE_S": "1",
        }
        try:
            with start_gateway(env, logs) as service:
                yield service
        finally:
            namespace.cleanup(client)
            client.close()


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, base_url: str) -> None:
    """Send MAX_EXAMPLES generated requests of `mode` to `operation`; fail on the first
    undocumented 5xx or non-conforming response (Hypothesis shrinks it first)."""
    allowed = ALLOWED_5XX.get((operation.method.upper(), operation.path), set())

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, timeout=30)
        assert response.status_code < 500 or response.status_code in allowed, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: "
            f"{response.text[:500]}\n{case.as_curl_command()}"
        )
        case.validate_response(
            response, checks=[response_schema_conformance, content_type_conformance]
        )

    run()


def test_no_server_errors_and_responses_match_the_schema(gateway: HttpService) -> None:
    # schemathesis' pytest integration (`from_fixture(...).parametrize()`) does not run
    # under pytest 9 (it reads `Function._nodeid`), so operations are driven directly
    # through their Hypothesis strategies.
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the gateway's OpenAPI is invalid: {result!r}"
        operations.append(result.ok())
    assert len(operations) >= 10, [op.label for op in operations]
    failures = []
    for operation in operations:
        # An event stream of an existing job stays open until the job ends (no worker
        # here); it is not a response schemathesis can validate.
        if operation.path.endswith("/events"):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, gateway.url)
            except Unsatisfiable:
                # Nothing of this operation can be made invalid (no parameters, or only
                # a free-form string path parameter): negative mode has no case to send.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as error:  # collect every operation's failure, then report
                failures.append(f"{operation.label} [{mode.value}]: {error}")
    assert not failures, "\n\n".join(failures)
