"""The gateway stays light: importing it and building the app loads no ML framework,
nothing of the worker or mllm services, and no S3 client (the default store is Redis)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
app = create_app(GatewaySettings())
app.openapi()
print(json.dumps(sorted(sys.modules)))
"""

# boto3: only with LLMGA_BLOB_STORE=s3 (services/common/blob_stores.py imports it then).
FORBIDDEN = (
    "torch",
    "diffusers",
    "transformers",
    "services.worker",
    "services.mllm",
    "boto3",
    "botocore",
    "services.common.s3_blob_store",
)


def test_gateway_imports_no_heavy_or_foreign_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "services.gateway.app" in modules
    loaded = [
        name
        for name in modules
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    ]
    assert loaded == []
