"""The gateway's OpenAPI document matches its committed copy, tests/fixtures/openapi.json
(tests/support/openapi_snapshot.py): no route, method or schema changes by accident."""

from __future__ import annotations

import copy

from tests.support.openapi_snapshot import (
    SNAPSHOT,
    UPDATE_COMMAND,
    committed_schema,
    current_schema,
    differences,
    render,
)


def test_openapi_matches_the_committed_copy() -> None:
    found = differences(committed_schema(), current_schema())
    assert not found, (
        f"the gateway's OpenAPI document differs from {SNAPSHOT.name}:\n  "
        + "\n  ".join(found)
        + f"\nIf the API change is intended, run `{UPDATE_COMMAND}` and commit the file."
    )


def test_committed_copy_is_rendered_as_update_writes_it() -> None:
    # A hand-edited copy would make the next --update a noisy diff.
    assert SNAPSHOT.read_text(encoding="utf-8") == render(committed_schema())


def test_differences_name_operations_and_schemas() -> None:
    schema = current_schema()
    changed = copy.deepcopy(schema)
    del changed["paths"]["/v1/images"]["post"]
    changed["paths"]["/v1/extra"] = {"get": {"responses": {}}}
    schemas = changed["components"]["schemas"]
    schemas["ChatRequest"]["properties"]["message"]["description"] = "edited"
    schemas["Extra"] = {"type": "object"}
    assert differences(schema, changed) == [
        "operation GET /v1/extra: new",
        "operation POST /v1/images: not in the code any more",
        "schema ChatRequest: changed",
        "schema Extra: new",
    ]
    changed = copy.deepcopy(schema)
    changed["info"]["version"] = "9"
    assert differences(schema, changed) == [
        "the documents differ outside operations and component schemas"
    ]
