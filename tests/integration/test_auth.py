"""API keys with the real gateway (`LLMGA_AUTH_REQUIRED=true`) and keys created by the
real CLI: 401 without a valid key, health routes open, tenants isolated (404)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
import redis
from PIL import Image

from services.gateway.http.apikeys import key_hash
from tests.support.http_api import assert_error
from tests.support.images import png_b64
from tests.support.processes import REPO_ROOT
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import HttpService, Namespace, create_api_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPLY = "Sure. <gen_image>a red fox in snow</gen_image>"


@pytest.fixture(scope="module")
def gateway(auth_gateway: HttpService) -> HttpService:
    """The module's gateway: API keys required (conftest.py)."""
    return auth_gateway


@pytest.fixture(scope="module")
def keys(namespace: Namespace) -> dict[str, str]:
    return {tenant: create_api_key(namespace, tenant) for tenant in ("acme", "globex")}


def _client(gateway: HttpService, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway.url, timeout=60, headers=headers)


def test_keys_are_stored_hashed(
    keys: dict[str, str], namespace: Namespace, redis_client: redis.Redis
) -> None:
    for tenant, key in keys.items():
        assert redis_client.get(f"{namespace.key_prefix}:apikey:{key_hash(key)}") == (
            tenant.encode()
        )
        stored = list(redis_client.scan_iter(match=f"{namespace.key_prefix}:apikey:*"))
        assert all(key.encode() not in name for name in stored)


def test_requests_without_a_valid_key_are_401(gateway: HttpService) -> None:
    for key in (None, "llmga_not-a-key"):
        with _client(gateway, key) as api:
            for method, path, body in [
                ("POST", "/v1/images", {"prompt": "x"}),
                ("POST", "/v1/chat", {"message": "x"}),
                ("GET", "/v1/jobs/job_x", None),
                ("GET", "/v1/conversations/conv_x", None),
                ("GET", "/v1/images/img_x", None),
            ]:
                response = api.request(method, path, json=body)
                message = assert_error(response, 401)
                assert "API key" in message
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with httpx.Client(base_url=gateway.url, timeout=60) as api:
        response = api.get("/v1/jobs/job_x", headers={"Authorization": "Basic eDp5"})
        assert_error(response, 401)


def test_health_and_documentation_routes_need_no_key(gateway: HttpService) -> None:
    with _client(gateway, None) as api:
        assert api.get("/healthz").status_code == 200
        assert api.get("/readyz").status_code in (200, 503)  # no worker: not ready
        assert api.get("/metrics").status_code == 200
        # The documentation holds nothing of a tenant's: a browser loads it without a key.
        assert api.get("/openapi.json").status_code == 200
        assert api.get("/docs").status_code == 200
        assert api.get("/redoc").status_code == 200


def test_tenants_see_only_their_own_jobs_conversations_and_images(
    gateway: HttpService, keys: dict[str, str], mllm: ScriptedMllm
) -> None:
    with _client(gateway, keys["acme"]) as acme, _client(gateway, keys["globex"]) as globex:
        job = acme.post("/v1/images", json={"prompt": "a fox", "steps": 2})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        mllm.script(REPLY)
        chat = acme.post("/v1/chat", json={"message": "draw a fox"})
        assert chat.status_code == 200, chat.text
        conversation_id = chat.json()["conversation_id"]
        upload = acme.post(
            "/v1/uploads", json={"image": png_b64(Image.new("RGB", (32, 32), "blue"))}
        )
        assert upload.status_code == 201, upload.text
        image_id = upload.json()["id"]

        assert acme.get(f"/v1/jobs/{job_id}").status_code == 200
        assert acme.get(f"/v1/conversations/{conversation_id}").status_code == 200
        assert acme.get(f"/v1/images/{image_id}").status_code == 200

        assert_error(globex.get(f"/v1/jobs/{job_id}"), 404)
        assert_error(globex.post(f"/v1/jobs/{job_id}/cancel"), 404)
        assert_error(globex.get(f"/v1/conversations/{conversation_id}"), 404)
        assert_error(globex.delete(f"/v1/conversations/{conversation_id}"), 404)
        assert_error(globex.get(f"/v1/images/{image_id}"), 404)
        response = globex.post(
            "/v1/chat", json={"message": "and now?", "conversation_id": conversation_id}
        )
        assert_error(response, 404)
        # Globex's attempts changed nothing of acme's.
        assert acme.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        assert len(acme.get(f"/v1/conversations/{conversation_id}").json()["turns"]) == 2


def test_a_revoked_key_is_401(gateway: HttpService, namespace: Namespace) -> None:
    key = create_api_key(namespace, "initech")
    with _client(gateway, key) as api:
        assert api.get("/v1/jobs/job_x").status_code == 404  # valid key, unknown job
        subprocess.run(
            [sys.executable, "-m", "services.gateway.http.apikeys", "revoke", "--key", key],
            cwd=REPO_ROOT,
            env={**os.environ, **namespace.env()},
            timeout=60,
            check=True,
        )
        assert_error(api.get("/v1/jobs/job_x"), 401)


def test_a_bad_tenant_name_is_refused_by_the_cli(namespace: Namespace) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.gateway.http.apikeys", "create", "--tenant", "a:b"],
        cwd=REPO_ROOT,
        env={**os.environ, **namespace.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
