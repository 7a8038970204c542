"""Images for tests: build them, encode them for the API, read back what the services saw."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np
from PIL import Image


def png_b64(image: Image.Image | np.ndarray) -> str:
    """The image as base64 PNG, the API's inline form."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def noise(height: int, width: int, seed: int) -> np.ndarray:
    """Seeded RGB noise: every pixel differs, so a changed pixel cannot hide."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def fetch_pixels(api: httpx.Client, url: str) -> np.ndarray:
    """GET an image from the gateway: must be a PNG; its RGB pixels."""
    response = api.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def sent_image(request: dict[str, Any]) -> tuple[np.ndarray, str]:
    """The image and text of the last user message the mllm received."""
    user = request["messages"][-1]
    assert user["role"] == "user" and isinstance(user["content"], list)
    image_part, text_part = user["content"]
    assert image_part["type"] == "image_url" and text_part["type"] == "text"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    data = base64.b64decode(url.removeprefix("data:image/png;base64,"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), text_part["text"]
