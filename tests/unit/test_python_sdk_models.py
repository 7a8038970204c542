"""The Python SDK's models (clients/python, `llmga_client.models`) against the gateway's
committed OpenAPI document (tests/fixtures/openapi.json): every SDK model has its schema's
fields, with the same types, defaults and required fields, and every schema of the native
routes has an SDK model. Value limits (minimum, maxLength, ...) are the gateway's to check
and are not compared. A change of the API that the SDK misses fails here."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
from llmga_client import models
from llmga_client.params import ChatFields, ImagesFields
from pydantic import BaseModel

SPEC = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "openapi.json").read_text(encoding="utf-8")
)
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
# What the comparison reads of a schema: its shape, not its documentation or value limits.
SHAPE_KEYS = {"type", "anyOf", "enum", "const", "items", "$ref", "default"}
NATIVE_OPERATIONS = {
    "createChatTurn",
    "createImageJob",
    "createUpload",
    "getJob",
    "listJobs",
    "cancelJob",
    "getConversation",
    "listConversations",
}


def shape(schema: Any) -> Any:
    """A schema reduced to its shape; `$ref`s as the bare schema name."""
    if isinstance(schema, list):
        return [shape(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    reduced = {}
    for key, value in schema.items():
        if key == "$ref":
            reduced[key] = value.rsplit("/", 1)[-1]
        elif key == "default" and value is None:
            continue  # the gateway's document leaves out `default: null`
        elif key in SHAPE_KEYS:
            reduced[key] = shape(value)
    return reduced


def sdk_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def referenced(schema: Any) -> set[str]:
    """Names of the schemas `schema` refers to, transitively."""
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if name not in found:
                    found.add(name)
                    pending.append(SCHEMAS[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


@pytest.mark.parametrize("model", models.SCHEMA_MODELS, ids=lambda m: m.__name__)
def test_sdk_model_matches_its_openapi_schema(model: type[BaseModel]) -> None:
    spec = SCHEMAS[model.__name__]
    ours = sdk_schema(model)
    assert set(ours["properties"]) == set(spec["properties"]), model.__name__
    assert set(ours.get("required", [])) == set(spec.get("required", [])), model.__name__
    for name, prop in spec["properties"].items():
        assert shape(ours["properties"][name]) == shape(prop), f"{model.__name__}.{name}"


def test_every_schema_of_the_native_routes_has_an_sdk_model() -> None:
    used: set[str] = set()
    for path in SPEC["paths"].values():
        for operation in path.values():
            if operation.get("operationId") in NATIVE_OPERATIONS:
                used |= referenced(operation)
    assert used, "no native operation found in the document"
    assert used <= {model.__name__ for model in models.SCHEMA_MODELS}


@pytest.mark.parametrize(
    ("fields", "model"),
    [(ImagesFields, models.ImagesRequest), (ChatFields, models.ChatRequest)],
    ids=["images", "chat"],
)
def test_keyword_arguments_are_the_request_models_fields(
    fields: type, model: type[BaseModel]
) -> None:
    """`images.create(**fields)` and `chat(**fields)` take exactly the body's fields (the
    client's own options aside), typed as the model types them, required as it requires."""
    hints = typing.get_type_hints(fields)
    excluded = {"stream"}  # chat(): False; chat_stream(): True
    assert set(hints) == set(model.model_fields) - excluded
    for name, annotation in hints.items():
        assert annotation == model.model_fields[name].annotation, name
    required: frozenset[str] = getattr(fields, "__required_keys__", frozenset())
    assert required == {n for n, f in model.model_fields.items() if f.is_required()}
