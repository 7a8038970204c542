"""The gateway's OpenAPI document and its committed copy, tests/fixtures/openapi.json,
which tests/unit/test_openapi_snapshot.py compares it with: an API change shows up in
review as a change of that file.

After an intended API change, rewrite the copy and commit it with the change:

    python -m tests.support.openapi_snapshot --update
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any
from unittest import mock

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.support.processes import REPO_ROOT

SNAPSHOT = REPO_ROOT / "tests" / "fixtures" / "openapi.json"
UPDATE_COMMAND = "python -m tests.support.openapi_snapshot --update"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def current_schema() -> dict[str, Any]:
    """The OpenAPI document of the app as the code builds it now, as JSON data. The
    settings are the defaults whatever LLMGA_* variables the caller has; nothing connects
    (clients are opened in the lifespan, which does not run)."""
    defaults_only = {k: v for k, v in os.environ.items() if not k.startswith("LLMGA_")}
    with mock.patch.dict(os.environ, defaults_only, clear=True):
        app = create_app(GatewaySettings())
    # Through JSON: tuples become lists, as in the committed copy.
    schema: dict[str, Any] = json.loads(json.dumps(app.openapi()))
    return schema


def render(schema: dict[str, Any]) -> str:
    """The file's text: sorted keys and indented, so that diffs are readable."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def committed_schema() -> dict[str, Any]:
    """The committed copy."""
    schema: dict[str, Any] = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    return schema


def _operations(schema: dict[str, Any]) -> dict[str, Any]:
    """'POST /v1/images' -> its operation object, for every path and method."""
    return {
        f"{method.upper()} {path}": item[method]
        for path, item in schema.get("paths", {}).items()
        for method in METHODS
        if method in item
    }


def _compare(kind: str, expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    lines = [f"{kind} {name}: not in the code any more" for name in expected.keys() - actual]
    lines += [f"{kind} {name}: new" for name in actual.keys() - expected]
    lines += [
        f"{kind} {name}: changed"
        for name in expected.keys() & actual.keys()
        if expected[name] != actual[name]
    ]
    return sorted(lines)


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """What differs between two OpenAPI documents: operations (path and method) and
    component schemas gone, new or changed; then any other difference (info, parameters
    shared by a path)."""
    lines = _compare("operation", _operations(expected), _operations(actual))
    schemas = [doc.get("components", {}).get("schemas", {}) for doc in (expected, actual)]
    lines += _compare("schema", *schemas)
    if not lines and expected != actual:
        lines.append("the documents differ outside operations and component schemas")
    return lines


def main() -> None:
    """`--update`: write the current document to the committed copy; without it, exit 1
    listing the differences if they differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--update", action="store_true", help=f"rewrite {SNAPSHOT.name}")
    args = parser.parse_args()
    schema = current_schema()
    if args.update:
        SNAPSHOT.write_text(render(schema), encoding="utf-8")
        print(f"wrote {SNAPSHOT.relative_to(REPO_ROOT)}; review the diff and commit it")
        return
    found = differences(committed_schema(), schema)
    print("\n".join(found) or "the committed copy matches the code")
    raise SystemExit(1 if found else 0)


if __name__ == "__main__":
    main()
