"""The API from a browser, against real gateway processes: CORS preflights answered
before the key check, the documentation open with auth on, multipart uploads under the
JSON form's limits, absolute URLs under LLMGA_PUBLIC_BASE_URL, signed image URLs and
event-stream tokens that work without a key (and fail closed: 403 naming the field)."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from services.common.contract import JobStatus
from services.common.job_store import JobStore
from services.gateway.http.signed_urls import UrlSigner
from tests.support.http_api import assert_error, server_sent_events
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import HttpService, Namespace, create_api_key, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ORIGIN = "https://app.example.com"
BASE = "https://api.example.com/llmga"
SECRET = "test-url-signing-secret-0123456789abcdef"
MAX_UPLOAD = 100_000


@pytest.fixture(scope="module")
def gateway(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[HttpService]:
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_AUTH_REQUIRED": "true",
        "LLMGA_CORS_ORIGINS": f"{ORIGIN}, http://localhost:5173",
        "LLMGA_PUBLIC_BASE_URL": BASE + "/",
        "LLMGA_URL_SIGNING_SECRET": SECRET,
        "LLMGA_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        # Every request counts: a signed request must count against its tenant, not 429.
        "LLMGA_RATE_LIMIT_REQUESTS": "1000",
    }
    with start_gateway(env, logs) as service:
        yield service


@pytest.fixture(scope="module")
def plain(namespace: Namespace, scripted: ScriptedMllm, logs: Path) -> Iterator[HttpService]:
    """A gateway with the defaults: no CORS, no base URL, no signing, auth off."""
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": scripted.base_url}
    with start_gateway(env, logs) as service:
        yield service


@pytest.fixture(scope="module")
def keys(namespace: Namespace) -> dict[str, str]:
    return {tenant: create_api_key(namespace, tenant) for tenant in ("acme", "globex")}


def _client(gateway: HttpService, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway.url, timeout=60, headers=headers)


def _local(url: str) -> str:
    """An absolute URL under BASE as the path the gateway serves (a proxy strips it)."""
    assert url.startswith(BASE + "/"), url
    return url.removeprefix(BASE)


def _png(color: str = "red", size: tuple[int, int] = (24, 16)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def _noise_png(side: int) -> bytes:
    """A PNG that compresses badly: about 3 bytes per pixel."""
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# --- CORS -------------------------------------------------------------------------------


def test_preflight_from_an_allowed_origin_is_answered_before_the_key_check(
    gateway: HttpService,
) -> None:
    with _client(gateway) as api:
        response = api.options(
            "/v1/images",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = response.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "idempotency-key", "prefer"} <= {
            h.strip() for h in allowed.split(",")
        }
        # The answer to the real request (a 401 here) is readable by the page, with the
        # headers a client needs exposed.
        refused = api.get("/v1/jobs/job_x", headers={"Origin": ORIGIN})
        assert_error(refused, 401)
        assert refused.headers["access-control-allow-origin"] == ORIGIN
        exposed = refused.headers["access-control-expose-headers"].lower()
        for header in ("location", "retry-after", "x-request-id", "preference-applied"):
            assert header in exposed
        # The second configured origin too (the setting is a list).
        other = api.options(
            "/v1/chat",
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
        )
        assert other.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_a_disallowed_origin_gets_no_allow_header(gateway: HttpService) -> None:
    with _client(gateway) as api:
        preflight = api.options(
            "/v1/images",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code >= 400
        assert "access-control-allow-origin" not in preflight.headers
        response = api.get("/healthz", headers={"Origin": "https://evil.example"})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers


def test_cors_is_off_by_default(plain: HttpService) -> None:
    with _client(plain) as api:
        preflight = api.options(
            "/v1/images", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers
        assert (
            "access-control-allow-origin"
            not in api.get("/healthz", headers={"Origin": ORIGIN}).headers
        )


# --- documentation ----------------------------------------------------------------------


def test_docs_and_spec_load_without_a_key_and_declare_the_bearer_scheme(
    gateway: HttpService,
) -> None:
    with _client(gateway) as api:
        spec = api.get("/openapi.json")
        assert spec.status_code == 200, spec.text
        docs = api.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        schema = spec.json()
        assert schema["components"]["securitySchemes"]["bearerAuth"] == {
            "type": "http",
            "scheme": "bearer",
            "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
        }
        assert schema["security"] == [{"bearerAuth": []}]
        assert schema["paths"]["/healthz"]["get"]["security"] == []
        image_route = schema["paths"]["/v1/images/{image_id}"]["get"]
        assert image_route["security"] == [{"bearerAuth": []}, {}]
        # The protected routes still are.
        assert_error(api.get("/v1/jobs/job_x"), 401)
        assert_error(api.post("/v1/images", json={"prompt": "x"}), 401)


# --- uploads ----------------------------------------------------------------------------


def test_multipart_and_json_uploads_store_the_same_image(
    gateway: HttpService, keys: dict[str, str]
) -> None:
    png = _png("blue")
    with _client(gateway, keys["acme"]) as api:
        form = api.post("/v1/uploads", files={"image": ("blue.png", png, "image/png")})
        assert form.status_code == 201, form.text
        body = api.post("/v1/uploads", json={"image": base64.b64encode(png).decode()})
        assert body.status_code == 201, body.text
        for created in (form.json(), body.json()):
            assert (created["width"], created["height"]) == (24, 16)
            stored = api.get(_local(created["url"]))
            assert stored.status_code == 200
            assert Image.open(io.BytesIO(stored.content)).getpixel((0, 0)) == (0, 0, 255)
        # JPEG through a browser's FormData (any filename and media type: the bytes decide).
        jpeg = io.BytesIO()
        Image.new("RGB", (40, 30), "green").save(jpeg, format="JPEG")
        sent = api.post(
            "/v1/uploads", files={"image": ("blob", jpeg.getvalue(), "application/octet-stream")}
        )
        assert sent.status_code == 201, sent.text
        assert (sent.json()["width"], sent.json()["height"]) == (40, 30)


def test_uploads_have_the_same_limits_and_errors_in_both_forms(
    gateway: HttpService, keys: dict[str, str]
) -> None:
    big = _noise_png(200)  # ~120 kB > MAX_UPLOAD
    assert len(big) > MAX_UPLOAD
    not_image = b"%PDF-1.4 definitely not an image" * 4
    with _client(gateway, keys["acme"]) as api:
        for data, status in ((big, 413), (not_image, 422)):
            as_form = api.post("/v1/uploads", files={"image": ("x.png", data, "image/png")})
            as_json = api.post("/v1/uploads", json={"image": base64.b64encode(data).decode()})
            form_message = assert_error(as_form, status, field="image")
            json_message = assert_error(as_json, status, field="image")
            assert as_form.json()["error"]["type"] == as_json.json()["error"]["type"]
            if status == 422:
                assert form_message == json_message
        # No `image` field; an empty file; the JSON form's own errors stay as they were.
        missing = api.post("/v1/uploads", files={"picture": ("x.png", _png(), "image/png")})
        assert "image" in assert_error(missing, 422, field="image")
        assert_error(
            api.post("/v1/uploads", files={"image": ("x.png", b"", "image/png")}), 422, "image"
        )
        assert_error(api.post("/v1/uploads", json={}), 422, field="image")
        malformed = api.post(
            "/v1/uploads", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400 and malformed.json()["error"]["type"] == "invalid_json"
        for content_type in ("multipart/form-data", "multipart/form-data; boundary=xyz"):
            broken = api.post(
                "/v1/uploads",
                content=b"--xyz\r\nnot a part",
                headers={"Content-Type": content_type},
            )
            assert_error(broken, 400)
        two_files = api.post(
            "/v1/uploads",
            files=[
                ("image", ("a.png", _png(), "image/png")),
                ("image", ("b.png", _png(), "image/png")),
            ],
        )
        assert_error(two_files, 400)


def test_urls_are_plain_paths_without_a_base_url_or_secret(plain: HttpService) -> None:
    with _client(plain) as api:
        created = api.post("/v1/uploads", files={"image": ("x.png", _png(), "image/png")})
        assert created.status_code == 201, created.text
        image_id = created.json()["id"]
        assert created.json()["url"] == f"/v1/images/{image_id}"
        job = api.post("/v1/images", json={"prompt": "a fox"}).json()
        assert job["events_url"] == f"/v1/jobs/{job['id']}/events"


# --- signed URLs ------------------------------------------------------------------------


def _finished_job(api: httpx.Client, jobs: JobStore, tenant: str, image_id: str) -> str:
    """A job whose record (as a worker writes it) holds `image_id` as its result."""
    job_id = str(api.post("/v1/images", json={"prompt": "a boat"}).json()["id"])

    def finish(record: Any) -> None:
        record.status = JobStatus.JOB_STATUS_SUCCEEDED
        image = record.images.add()
        image.image_id, image.seed, image.width, image.height = image_id, 7, 24, 16
        record.timings.finished_at = time.time()

    jobs.update(tenant, job_id, finish)
    return job_id


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    query.update(changes)
    return parts.path + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_signed_image_urls_work_without_a_key_until_they_expire(
    gateway: HttpService, keys: dict[str, str], jobs: JobStore
) -> None:
    png = _png("purple")
    with _client(gateway, keys["acme"]) as acme, _client(gateway) as anonymous:
        image_id = acme.post("/v1/uploads", files={"image": ("p.png", png, "image/png")}).json()[
            "id"
        ]
        other_id = acme.post("/v1/uploads", files={"image": ("q.png", _png(), "image/png")}).json()[
            "id"
        ]
        job_id = _finished_job(acme, jobs, "acme", image_id)
        view = acme.get(f"/v1/jobs/{job_id}").json()
        url = view["images"][0]["url"]
        assert url.startswith(f"{BASE}/v1/images/{image_id}?")
        query = parse_qs(urlsplit(url).query)
        assert query["tenant"] == ["acme"]
        assert int(query["expires"][0]) > time.time() + 3000  # LLMGA_SIGNED_URL_TTL_S 3600
        # Two reads give the same URL (a browser keeps its cached image).
        assert acme.get(f"/v1/jobs/{job_id}").json()["images"][0]["url"] == url

        fetched = anonymous.get(_local(url))
        assert fetched.status_code == 200, fetched.text
        assert fetched.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(fetched.content)).getpixel((0, 0)) == (128, 0, 128)

        local = _local(url)
        sig = query["sig"][0]
        tampered_sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        for changed, field in (
            (_with_query(local, sig=tampered_sig), "sig"),
            (_with_query(local, tenant="globex"), "sig"),
            (_with_query(local, expires=str(int(query["expires"][0]) + 60)), "sig"),
            (_with_query(local.replace(image_id, other_id)), "sig"),
            (_with_query(local, tenant="no:pe"), "tenant"),
            (_with_query(local, expires="soon"), "expires"),
        ):
            refused = anonymous.get(changed)
            assert_error(refused, 403, field=field)
            assert refused.json()["error"]["type"] == "invalid_signature"

        # Expired: a URL signed correctly with a past expiry.
        past = int(time.time()) - 10
        expired_sig = UrlSigner(SECRET).signature("image", "acme", image_id, past)
        expired = anonymous.get(
            f"/v1/images/{image_id}?tenant=acme&expires={past}&sig={expired_sig}"
        )
        message = assert_error(expired, 403, field="expires")
        assert expired.json()["error"]["type"] == "signature_expired" and "expired" in message

        # Without a signature the image still needs a key.
        assert_error(anonymous.get(f"/v1/images/{image_id}"), 401)


def test_a_signature_opens_only_its_route_and_tenant(
    gateway: HttpService, keys: dict[str, str], jobs: JobStore
) -> None:
    signer = UrlSigner(SECRET)
    expires = int(time.time()) + 600
    with (
        _client(gateway, keys["acme"]) as acme,
        _client(gateway, keys["globex"]) as globex,
        _client(gateway) as anonymous,
    ):
        globex_image = globex.post(
            "/v1/uploads", files={"image": ("g.png", _png(), "image/png")}
        ).json()["id"]
        job_id = _finished_job(acme, jobs, "acme", globex_image)
        # Acme's valid signature over globex's image id: the image is looked up as acme's.
        sig = signer.signature("image", "acme", globex_image, expires)
        query = f"tenant=acme&expires={expires}&sig={sig}"
        assert_error(anonymous.get(f"/v1/images/{globex_image}?{query}"), 404)
        # Another deployment's secret.
        foreign = UrlSigner("another-deployment-secret-0123456789").signature(
            "image", "globex", globex_image, expires
        )
        assert_error(
            anonymous.get(
                f"/v1/images/{globex_image}?tenant=globex&expires={expires}&sig={foreign}"
            ),
            403,
            field="sig",
        )
        # Signature parameters on other routes open nothing.
        job_sig = signer.signature("image", "acme", job_id, expires)
        job_query = f"tenant=acme&expires={expires}&sig={job_sig}"
        assert_error(anonymous.get(f"/v1/jobs/{job_id}?{job_query}"), 401)
        assert_error(anonymous.post(f"/v1/jobs/{job_id}/cancel?{job_query}"), 401)
        # An image signature is no event-stream token.
        token = f"acme.{expires}.{job_sig}"
        assert_error(anonymous.get(f"/v1/jobs/{job_id}/events?token={token}"), 403, "token")


def test_event_stream_tokens_let_an_eventsource_connect_without_a_key(
    gateway: HttpService, keys: dict[str, str]
) -> None:
    with _client(gateway, keys["acme"]) as acme, _client(gateway) as anonymous:
        job = acme.post("/v1/images", json={"prompt": "a lighthouse"})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        events_url = job.json()["events_url"]
        assert events_url.startswith(f"{BASE}/v1/jobs/{job_id}/events?token=acme.")
        token = parse_qs(urlsplit(events_url).query)["token"][0]
        _, expires, _ = token.split(".")
        assert time.time() + 250 < int(expires) <= time.time() + 400  # TTL 300 s

        with anonymous.stream("GET", _local(events_url), headers={"Origin": ORIGIN}) as stream:
            assert stream.status_code == 200, stream.read()
            assert stream.headers["access-control-allow-origin"] == ORIGIN
            event, data = next(e for e in server_sent_events(stream) if e[0])
            assert event == "status" and json.loads(data)["id"] == job_id

        other = acme.post("/v1/images", json={"prompt": "another"}).json()["id"]
        tenant, expires, sig = token.split(".")
        tampered = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        past = int(time.time()) - 5
        past_sig = UrlSigner(SECRET).signature("events", "acme", job_id, past)
        for path, error_type in (
            (f"/v1/jobs/{other}/events?token={token}", "invalid_signature"),
            (f"/v1/jobs/{job_id}/events?token={tenant}.{expires}.{tampered}", "invalid_signature"),
            (f"/v1/jobs/{job_id}/events?token=globex.{expires}.{sig}", "invalid_signature"),
            (f"/v1/jobs/{job_id}/events?token=garbage", "invalid_signature"),
            (f"/v1/jobs/{job_id}/events?token=acme.{past}.{past_sig}", "signature_expired"),
        ):
            refused = anonymous.get(path)
            assert_error(refused, 403, field="token")
            assert refused.json()["error"]["type"] == error_type, path
        # The token opens the stream only: not the job itself.
        assert_error(anonymous.get(f"/v1/jobs/{job_id}?token={token}"), 401)
