"""OpenAI's Images API with the real `openai` package against a real gateway (auth on, a
key made by the real CLI), a real worker on the tiny models and the scripted mllm:
generations (url and b64_json; png, jpeg, webp), edits with a mask (inpaint: the pixels
outside the mask are kept) and without (an instruction edit), variations, and OpenAI's
error shape."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import redis
from PIL import Image

from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import HttpService, Namespace, create_api_key, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TENANT = "acme"
STEPS = 2
FAST: dict[str, Any] = {"steps": STEPS, "seed": 5}


@pytest.fixture(scope="module")
def gateway(auth_gateway: HttpService) -> HttpService:
    """The module's gateway: API keys required (conftest.py)."""
    return auth_gateway


@pytest.fixture(scope="module")
def key(namespace: Namespace) -> str:
    return create_api_key(namespace, TENANT)


@pytest.fixture
def client(gateway: HttpService, key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        yield client


@pytest.fixture
def api(gateway: HttpService, key: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=120) as api:
        yield api


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _decoded(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def _job(response: Any) -> dict[str, Any]:
    """The `llmga.job` extra field, as the package keeps it."""
    extra = response.model_extra or {}
    job = extra["llmga"]["job"]
    assert isinstance(job, dict)
    return job


def test_generate_url_png_with_refine(
    client: openai.OpenAI, api: httpx.Client, mllm: ScriptedMllm, worker: str
) -> None:
    mllm.script("Sure. <gen_image>a lighthouse at dusk, oil painting</gen_image>")
    result = client.images.generate(
        model="llmga",
        prompt="a lighthouse",
        size="72x64",
        extra_body={**FAST, "refine": True, "negative_prompt": "blurry"},
    )
    [image] = result.data or []
    assert image.revised_prompt == "a lighthouse at dusk, oil painting"
    assert image.b64_json is None and image.url is not None
    assert image.url.startswith("/v1/images/img") and "format=" not in image.url
    job = _job(result)
    assert job["status"] == "succeeded" and job["task"] == "t2i"
    assert job["images"][0]["id"] in image.url and job["negative_prompt"] == "blurry"
    response = api.get(image.url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as png:
        assert png.format == "PNG" and png.size == (72, 64)


def test_generate_b64_json_jpeg_and_url_webp(
    client: openai.OpenAI, api: httpx.Client, worker: str
) -> None:
    result = client.images.generate(
        prompt="a red barn",
        n=2,
        size="64x80",
        response_format="b64_json",
        output_format="jpeg",
        output_compression=60,
        extra_body=FAST,
    )
    assert result.data is not None and len(result.data) == 2 and result.size == "64x80"
    assert result.output_format == "jpeg"
    for item in result.data:
        assert item.url is None and item.revised_prompt == "a red barn"
        jpeg = _decoded(item.b64_json)
        assert jpeg.format == "JPEG" and jpeg.size == (64, 80)

    webp = client.images.generate(
        prompt="a blue barn", size="64x64", output_format="webp", extra_body=FAST
    )
    [item] = webp.data or []
    assert item.url is not None and item.url.endswith("?format=webp")
    response = api.get(item.url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "WEBP" and image.size == (64, 64)
    # The stored image itself stays a PNG; quality without a lossy format is 422.
    plain = api.get(item.url.removesuffix("?format=webp"))
    assert plain.headers["content-type"] == "image/png"
    assert api.get(item.url.removesuffix("?format=webp") + "?quality=5").status_code == 422


def test_edit_with_a_mask_is_an_inpaint_that_keeps_the_rest(
    client: openai.OpenAI, worker: str
) -> None:
    pixels = _noise(64, 64, 1)
    # OpenAI's mask: the image's size, transparent where to edit.
    alpha = np.full((64, 64), 255, dtype=np.uint8)
    alpha[16:48, 16:40] = 0
    mask = np.dstack([np.zeros((64, 64, 3), dtype=np.uint8), alpha])
    result = client.images.edit(
        image=("input.png", _png(pixels), "image/png"),
        mask=("mask.png", _png(mask), "image/png"),
        prompt="a red apple",
        response_format="b64_json",
        extra_body=FAST,
    )
    [item] = result.data or []
    assert item.revised_prompt == "a red apple"
    job = _job(result)
    assert job["task"] == "inpaint" and job["mask_image_id"]
    out = np.asarray(_decoded(item.b64_json).convert("RGB"))
    assert out.shape == pixels.shape
    keep = alpha == 255
    assert np.array_equal(out[keep], pixels[keep])
    assert (out[0, 0] == pixels[0, 0]).all() and (out[63, 63] == pixels[63, 63]).all()


def test_edit_without_a_mask_is_an_instruction_edit(
    client: openai.OpenAI, mllm: ScriptedMllm, worker: str
) -> None:
    mllm.script(
        "<gen_image>a cat on a red sofa</gen_image>",
        "Here. <gen_image>a parrot on a red sofa</gen_image>",
    )
    pixels = _noise(64, 72, 2)
    result = client.images.edit(
        image=[("input.png", _png(pixels), "image/png")],  # sent as image[]
        prompt="swap the cat for a parrot",
        size="72x64",
        response_format="b64_json",
        extra_body=FAST,
    )
    [item] = result.data or []
    assert item.revised_prompt == "a parrot on a red sofa"
    job = _job(result)
    assert job["task"] == "edit" and job["instruction"] == "swap the cat for a parrot"
    assert job["source_caption"] == "a cat on a red sofa"
    assert _decoded(item.b64_json).size == (72, 64)
    assert len(mllm.requests()) == 2


def test_variation_is_a_similar_job(client: openai.OpenAI, mllm: ScriptedMllm, worker: str) -> None:
    mllm.script("<gen_image>a green meadow under a grey sky</gen_image>")
    pixels = _noise(64, 80, 3)
    result = client.images.create_variation(
        image=("input.png", _png(pixels), "image/png"),
        response_format="b64_json",
        extra_body=FAST,
    )
    [item] = result.data or []
    assert item.revised_prompt == "a green meadow under a grey sky"
    job = _job(result)
    assert job["task"] == "t2i" and len(job["input_image_ids"]) == 1
    assert _decoded(item.b64_json).size == (80, 64)


@pytest.mark.parametrize("size", ["65x64", "64x4096", "big"])
def test_bad_size_is_an_openai_error_naming_size(client: openai.OpenAI, size: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.images.generate(prompt="a fox", size=size)  # type: ignore[arg-type]
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["param"] == "size" and body["type"] == "invalid_request_error"


def test_edit_size_must_match_and_one_image_only(client: openai.OpenAI) -> None:
    png = _png(_noise(64, 64, 4))
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.images.edit(image=("a.png", png, "image/png"), prompt="x", size="128x128")
    assert isinstance(raised.value.body, dict) and raised.value.body["param"] == "size"
    with pytest.raises(openai.BadRequestError) as two:
        client.images.edit(
            image=[("a.png", png, "image/png"), ("b.png", png, "image/png")], prompt="x"
        )
    assert isinstance(two.value.body, dict) and two.value.body["param"] == "image"


def test_async_client_and_the_other_image_routes(
    gateway: HttpService, key: str, api: httpx.Client, worker: str
) -> None:
    async def generate() -> Any:
        async with openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1", api_key=key, max_retries=0
        ) as client:
            return await client.images.generate(
                prompt="an owl", size="64x64", response_format="b64_json", extra_body=FAST
            )

    result = asyncio.run(generate())
    [item] = result.data or []
    assert _decoded(item.b64_json).size == (64, 64)
    # POST /v1/images and GET /v1/images/{id} are unchanged next to these routes.
    queued = api.post("/v1/images", json={"prompt": "an owl", "width": 64, "height": 64, **FAST})
    assert queued.status_code == 202, queued.text
    assert api.get("/v1/images/generations").status_code == 404


def test_json_edit_with_a_data_uri(client: openai.OpenAI, worker: str) -> None:
    pixels = _noise(64, 64, 6)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[8:24, 8:24] = 255  # no alpha: white = edit
    uri = "data:image/png;base64," + base64.b64encode(_png(pixels)).decode("ascii")
    mask_uri = "data:image/png;base64," + base64.b64encode(_png(mask)).decode("ascii")
    response = client.post(
        "/images/edits",
        cast_to=httpx.Response,
        body={
            "images": [{"image_url": uri}],
            "mask": {"image_url": mask_uri},
            "prompt": "a window",
            "response_format": "b64_json",
            **FAST,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["llmga"]["job"]["task"] == "inpaint"
    out = np.asarray(_decoded(body["data"][0]["b64_json"]).convert("RGB"))
    assert np.array_equal(out[mask == 0], pixels[mask == 0])


@pytest.fixture(scope="module")
def slow_gateway(
    redis_client: redis.Redis, scripted: ScriptedMllm, logs: Path
) -> Iterator[tuple[HttpService, Namespace]]:
    """A gateway waiting 1 s for its jobs, on a queue no worker reads."""
    namespace = Namespace.unique("oai-images-slow")
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_OPENAI_IMAGES_WAIT_S": "1",
    }
    try:
        with start_gateway(env, logs) as service:
            yield service, namespace
    finally:
        namespace.cleanup(redis_client)


def test_a_job_not_done_in_time_is_a_504_naming_it_and_not_retried(
    slow_gateway: tuple[HttpService, Namespace],
) -> None:
    service, _ = slow_gateway
    # The client's default retries: the answer tells it not to retry (the job is queued).
    with (
        openai.OpenAI(base_url=f"{service.url}/v1", api_key="any") as client,
        pytest.raises(openai.APIStatusError) as raised,
    ):
        client.images.generate(prompt="a slow fox", size="64x64")
    assert raised.value.status_code == 504
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["code"] == "job_timeout" and body["type"] == "server_error"
    assert body["job_id"].startswith("job") and body["job"]["status"] == "queued"
    with httpx.Client(base_url=service.url) as api:
        listed = api.get("/v1/jobs").json()["data"]
    assert [job["id"] for job in listed] == [body["job_id"]]
