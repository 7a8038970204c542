"""A corpus of malformed and unusual images against the real gateway (subprocess, real
Redis, scripted mllm, no worker): `POST /v1/uploads`, `image` of an inpaint
`POST /v1/images` and `images` of `POST /v1/chat`.

Never a 5xx; every accepted image is stored as a valid PNG of the expected size, and the
outcomes (docs/api.md "Unusual and malformed images") are pinned per image.
"""

from __future__ import annotations

import base64
import io
import os
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import HttpService, Namespace, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MAX_UPLOAD_BYTES = 64 * 1024
MAX_IMAGE_PIXELS = 2048 * 2048
W, H = 64, 72  # within LLMGA_MIN_SIZE..LLMGA_MAX_SIZE, so inpaint accepts the size


@dataclass(frozen=True)
class Sample:
    name: str
    b64: str
    # (width, height, mode) of the stored PNG if accepted; else the refusal status.
    accepted: tuple[int, int, str] | None
    refused_with: int | None = None


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    return struct.pack(">I", len(payload)) + kind + payload + crc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _gradient(mode: str = "RGB") -> Image.Image:
    ramp = np.linspace(0, 255, W * H, dtype=np.float64).reshape(H, W)
    rgb = np.stack([ramp, ramp[::-1], np.full_like(ramp, 128)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb).convert(mode)


def corpus() -> list[Sample]:
    valid_png = _encode(_gradient(), "PNG")

    sixteen = Image.fromarray(
        (np.arange(W * H, dtype=np.uint32).reshape(H, W) * 13 % 65536).astype(np.uint16)
    )
    assert sixteen.mode.startswith("I;16")

    frames = [Image.new("RGB", (W, H), colour) for colour in ("red", "green", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50)

    palette = _gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0

    huge_ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    huge = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", huge_ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0"))
        + _chunk(b"IEND", b"")
    )

    rng = random.Random(1234)
    noise = Image.frombytes("RGB", (256, 256), rng.randbytes(256 * 256 * 3))
    too_big = _encode(noise, "PNG")
    assert len(too_big) > MAX_UPLOAD_BYTES

    return [
        Sample("valid-png", _b64(valid_png), (W, H, "RGB")),
        Sample("truncated-png", _b64(valid_png[: len(valid_png) // 2]), None, 422),
        Sample("huge-dimensions-header", _b64(huge), None, 422),
        Sample("16-bit-png", _b64(_encode(sixteen, "PNG")), (W, H, "L")),
        Sample("cmyk-jpeg", _b64(_encode(_gradient("CMYK"), "JPEG")), (W, H, "RGB")),
        Sample("animated-gif", _b64(gif.getvalue()), (W, H, "RGB")),
        Sample("palette-png-transparency", _b64(_encode(palette, "PNG")), (W, H, "RGBA")),
        Sample("empty", "", None, 422),
        Sample("random-bytes", _b64(os.urandom(0) + rng.randbytes(4096)), None, 422),
        Sample("text-as-base64", _b64(b"hello, this is not an image\n" * 20), None, 422),
        Sample("text-not-base64", "this is not base64 at all!", None, 422),
        Sample("too-large-bytes", _b64(too_big), None, 413),
    ]


CORPUS = corpus()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mllm(logs: Path) -> Iterator[ScriptedMllm]:
    with ScriptedMllm.start(logs) as server:
        # Chat turns with an image are "similar" turns: the reply needs a prompt.
        server.script(default="Like this. <gen_image>a colourful test pattern</gen_image>")
        yield server


@pytest.fixture(scope="module")
def gateway(mllm: ScriptedMllm, namespace: Namespace, logs: Path) -> Iterator[HttpService]:
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": mllm.base_url,
        "LLMGA_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "LLMGA_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS),
    }
    with start_gateway(env, logs) as service:
        yield service


@pytest.fixture
def api(gateway: HttpService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


# --------------------------------------------------------------------------- helpers


def _check_outcome(response: httpx.Response, sample: Sample, field: str) -> None:
    assert response.status_code < 500, f"{sample.name}: {response.status_code} {response.text}"
    if sample.accepted is None:
        assert response.status_code == sample.refused_with, (sample.name, response.text)
        error = response.json()["error"]
        assert error["field"] == field and error["message"], (sample.name, error)
    else:
        assert 200 <= response.status_code < 300, (sample.name, response.text)


def _stored_png(api: httpx.Client, image_id: str, sample: Sample) -> Image.Image:
    response = api.get(f"/v1/images/{image_id}")
    assert response.status_code == 200, (sample.name, response.text)
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    image.load()  # the whole file decodes
    assert sample.accepted is not None
    width, height, mode = sample.accepted
    assert image.size == (width, height), sample.name
    assert image.mode == mode, sample.name
    return image


def _mask_b64() -> str:
    mask = Image.new("L", (W, H), 0)
    mask.paste(255, (8, 8, 32, 32))
    return _b64(_encode(mask, "PNG"))


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("sample", CORPUS, ids=[s.name for s in CORPUS])
def test_upload(api: httpx.Client, sample: Sample) -> None:
    response = api.post("/v1/uploads", json={"image": sample.b64})
    _check_outcome(response, sample, "image")
    if sample.accepted is not None:
        assert response.status_code == 201
        body = response.json()
        assert (body["width"], body["height"]) == sample.accepted[:2]
        _stored_png(api, body["id"], sample)


@pytest.mark.parametrize("sample", CORPUS, ids=[s.name for s in CORPUS])
def test_inpaint_image(api: httpx.Client, sample: Sample) -> None:
    response = api.post(
        "/v1/images",
        json={
            "task": "inpaint",
            "prompt": "a small red square",
            "image": {"b64": sample.b64},
            "mask": {"b64": _mask_b64()},
            "steps": 2,
        },
    )
    _check_outcome(response, sample, "image.b64")
    if sample.accepted is not None:
        assert response.status_code == 202
        job = response.json()
        assert job["task"] == "inpaint"
        [image_id] = job["input_image_ids"]
        _stored_png(api, image_id, sample)


@pytest.mark.parametrize("sample", CORPUS, ids=[s.name for s in CORPUS])
def test_chat_images(api: httpx.Client, sample: Sample) -> None:
    response = api.post(
        "/v1/chat",
        json={"message": "make one like this", "images": [{"b64": sample.b64}], "steps": 2},
    )
    _check_outcome(response, sample, "images[0].b64")
    if sample.accepted is not None:
        assert response.status_code == 200
        [job] = response.json()["jobs"]
        [image_id] = job["input_image_ids"]
        _stored_png(api, image_id, sample)
