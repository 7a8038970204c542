"""The gateway's OpenAPI document is fit for client generators: every operation has a
stable camelCase operationId, protected operations declare the answers every request may
get (401, 429, 503 and their headers), job creation its 202 and `Location`, request
bodies an example that the request schema accepts, and image downloads a binary body."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from services.gateway.app import camel_case_operation_id
from services.gateway.chat.protocol import ChatRequest
from services.gateway.images.protocol import ImagesRequest, UploadRequest
from services.gateway.openai_chat.protocol import ChatCompletionRequest
from tests.support.openapi_snapshot import METHODS, current_schema

OPERATION_ID = re.compile(r"^[a-z][A-Za-z]+$")

# The ids generated clients turn into method names: changing one breaks their callers.
EXPECTED_IDS = {
    "POST /v1/chat": "createChatTurn",
    "POST /v1/chat/completions": "createChatCompletion",
    "GET /v1/models": "listModels",
    "POST /v1/images": "createImageJob",
    "GET /v1/images/{image_id}": "getImage",
    "DELETE /v1/images/{image_id}": "deleteImage",
    "POST /v1/uploads": "createUpload",
    "GET /v1/jobs": "listJobs",
    "GET /v1/jobs/{job_id}": "getJob",
    "POST /v1/jobs/{job_id}/cancel": "cancelJob",
    "DELETE /v1/jobs/{job_id}": "deleteJob",
    "GET /v1/jobs/{job_id}/events": "getJobEvents",
    "GET /v1/conversations": "listConversations",
    "GET /v1/conversations/{conversation_id}": "getConversation",
    "DELETE /v1/conversations/{conversation_id}": "deleteConversation",
    "GET /healthz": "getHealth",
    "GET /readyz": "getReadiness",
    "GET /metrics": "getMetrics",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return current_schema()


def operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": item[method]
        for path, item in spec["paths"].items()
        for method in METHODS
        if method in item
    }


def is_protected(spec: dict[str, Any], operation: dict[str, Any]) -> bool:
    """An operation that may need the API key (a signed URL may stand in for it)."""
    return bool(operation.get("security", spec.get("security")))


def test_every_operation_has_a_unique_camel_case_operation_id(spec: dict[str, Any]) -> None:
    ids: dict[str, str] = {name: op.get("operationId", "") for name, op in operations(spec).items()}
    bad = {name: id_ for name, id_ in ids.items() if not OPERATION_ID.match(id_)}
    assert not bad, bad
    seen: dict[str, str] = {}
    for name, id_ in ids.items():
        assert id_ not in seen, f"{name} and {seen[id_]} share the operationId {id_}"
        seen[id_] = name
    assert {name: ids.get(name) for name in EXPECTED_IDS} == EXPECTED_IDS


def test_routes_without_an_id_get_their_function_name_in_camel_case() -> None:
    def read_job_events() -> None: ...

    route = APIRoute("/x", read_job_events)
    assert camel_case_operation_id(route) == "readJobEvents"


def test_protected_operations_declare_401_429_and_503_with_their_headers(
    spec: dict[str, Any],
) -> None:
    protected = {name: op for name, op in operations(spec).items() if is_protected(spec, op)}
    assert len(protected) >= 15, sorted(protected)
    for name, operation in protected.items():
        responses = operation["responses"]
        for status, header in (("401", "WWW-Authenticate"), ("429", "Retry-After")):
            assert status in responses, f"{name} does not declare {status}"
            assert header in responses[status].get("headers", {}), f"{name} {status}: {header}"
        if "503" in responses:
            assert "Retry-After" in responses["503"].get("headers", {}), name
    public = {name for name, op in operations(spec).items() if not is_protected(spec, op)}
    assert public == {"GET /healthz", "GET /readyz", "GET /metrics"}


def test_operations_with_a_body_declare_400_413_and_422(spec: dict[str, Any]) -> None:
    with_body = {name: op for name, op in operations(spec).items() if "requestBody" in op}
    assert set(with_body) >= {"POST /v1/chat", "POST /v1/images", "POST /v1/uploads"}
    for name, operation in with_body.items():
        assert {"400", "413", "422"} <= set(operation["responses"]), name


def test_error_responses_have_a_json_body(spec: dict[str, Any]) -> None:
    for name, operation in operations(spec).items():
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and name != "GET /readyz":
                schema = response["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith("ErrorResponse"), (name, status)


def test_job_creation_answers_202_with_location(spec: dict[str, Any]) -> None:
    creating = {
        name: op["responses"]["202"]
        for name, op in operations(spec).items()
        if "202" in op["responses"]
    }
    assert "POST /v1/images" in creating
    for name, response in creating.items():
        assert "Location" in response["headers"], name
        assert "application/json" in response["content"], name


@pytest.mark.parametrize(
    ("model", "operation"),
    [
        (ChatRequest, "POST /v1/chat"),
        (ImagesRequest, "POST /v1/images"),
        (UploadRequest, "POST /v1/uploads"),
        (ChatCompletionRequest, "POST /v1/chat/completions"),
    ],
)
def test_request_bodies_carry_a_valid_example(
    spec: dict[str, Any], model: type[BaseModel], operation: str
) -> None:
    content = operations(spec)[operation]["requestBody"]["content"]["application/json"]
    schema = content["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    examples = schema.get("examples")
    assert examples, f"{operation}: no example"
    for example in examples:
        model.model_validate(example)  # the example is a request the API accepts


def test_image_download_is_binary(spec: dict[str, Any]) -> None:
    content = operations(spec)["GET /v1/images/{image_id}"]["responses"]["200"]["content"]
    assert set(content) == {"image/png", "image/jpeg", "image/webp"}
    for media in content.values():
        assert media["schema"] == {"type": "string", "format": "binary"}
