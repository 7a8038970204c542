"""A Python client generated from the real gateway's `/openapi.json` by
openapi-python-client works against that gateway: the document is fit for client
generators (operationIds become functions, schemas typed models, declared errors typed
answers).

The generator (a dev dependency) runs offline as `openapi-python-client generate --path
<spec.json> --output-path <dir> --config <cfg>` (the command docs/api.md gives).
"""

from __future__ import annotations

import base64
import importlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.services import HttpService, Namespace, create_api_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# The dev tools' copy, beside this interpreter.
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
IMPORTS_UNSET = re.compile(r"^from \.\.\.types import .*\bUnset\b", re.MULTILINE)
PACKAGE = "llmga_gateway_client"  # from the document's title, "LLMGA gateway"
# Image downloads are declared as binary image/png, image/jpeg and image/webp; the
# generator reads binary bodies as application/octet-stream only.
CONFIG = f"""\
project_name_override: llmga-gateway-client
package_name_override: {PACKAGE}
content_type_overrides:
  image/png: application/octet-stream
  image/jpeg: application/octet-stream
  image/webp: application/octet-stream
"""


@pytest.fixture(scope="module")
def gateway(auth_gateway: HttpService) -> HttpService:
    """The module's gateway: API keys required (conftest.py)."""
    return auth_gateway


@pytest.fixture(scope="module")
def generated(gateway: HttpService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The generated package's name, importable while the module's tests run."""
    work = tmp_path_factory.mktemp("generated-client")
    spec = work / "openapi.json"
    spec.write_bytes(httpx.get(f"{gateway.url}/openapi.json", timeout=30).content)
    config = work / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    output = work / "client"
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--output-path", str(output)]
        + ["--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        # Its post hooks run `ruff check --fix` and `ruff format` on the output: ours.
        env={
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        },
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every operation made it into the client: no warnings about skipped responses.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    _import_unset(output / PACKAGE / "api")
    sys.path.insert(0, str(output))
    try:
        yield PACKAGE
    finally:
        sys.path.remove(str(output))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _import_unset(api: Path) -> None:
    """openapi-python-client 0.29 types an operation with several request media types
    (POST /v1/uploads: JSON or multipart) as `body: A | B | Unset` without importing
    `Unset` (its template's `body_required` never leaves the loop); import it where used."""
    for module in api.glob("*/*.py"):
        text = module.read_text(encoding="utf-8")
        if "| Unset" in text and not IMPORTS_UNSET.search(text):
            module.write_text("from ...types import Unset\n" + text, encoding="utf-8")


def _module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 60, 40)).save(out, format="PNG")
    return out.getvalue()


def test_generated_client_makes_typed_calls(
    generated: str, gateway: HttpService, namespace: Namespace
) -> None:
    client_module: Any = _module(generated, "client")
    models: Any = _module(generated, "models")
    key = create_api_key(namespace, "generated")
    client = client_module.AuthenticatedClient(base_url=gateway.url, token=key, timeout=30.0)

    health = _module(generated, "api.health.get_health").sync(
        client=client_module.Client(base_url=gateway.url)
    )
    assert isinstance(health, models.Liveness)

    # POST /v1/uploads (JSON form) -> 201 UploadResponse.
    upload_body = models.CreateUploadJsonUploadRequest(
        image=base64.b64encode(_png(16, 8)).decode("ascii")
    )
    created = _module(generated, "api.images.create_upload").sync_detailed(
        client=client, body=upload_body
    )
    assert created.status_code == 201
    assert isinstance(created.parsed, models.UploadResponse)
    assert (created.parsed.width, created.parsed.height) == (16, 8)

    # GET /v1/images/{id} -> the PNG bytes.
    image = _module(generated, "api.images.get_image").sync_detailed(
        created.parsed.id, client=client
    )
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).size == (16, 8)

    # POST /v1/images -> 202 ImagesResponse with Location; GET /v1/jobs/{id} -> JobView.
    job = _module(generated, "api.images.create_image_job").sync_detailed(
        client=client, body=models.ImagesRequest(prompt="a red fox in the snow", seed=7)
    )
    assert job.status_code == 202
    assert isinstance(job.parsed, models.ImagesResponse)
    assert job.headers["Location"] == f"/v1/jobs/{job.parsed.id}"
    view = _module(generated, "api.jobs.get_job").sync(job.parsed.id, client=client)
    assert isinstance(view, models.JobView)
    assert view.id == job.parsed.id
    assert view.prompt == "a red fox in the snow"
    assert view.status == models.JobViewStatus.QUEUED  # no worker runs here

    # A declared error is a typed answer too: no key -> 401 ErrorResponse.
    refused = _module(generated, "api.jobs.get_job").sync_detailed(
        job.parsed.id, client=client_module.Client(base_url=gateway.url)
    )
    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.ErrorResponse)
    assert refused.parsed.error.type_ == "unauthorized"
