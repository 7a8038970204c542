"""Stored images (PNG) in another format on request: `GET /v1/images/{id}?format=` and
OpenAI's Images API (`output_format`, `output_compression`). Pillow only; callers run
`convert_png` in a worker thread (CPU work)."""

from __future__ import annotations

import io
from typing import Literal

from PIL import Image

ImageFormat = Literal["png", "jpeg", "webp"]
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# Quality of JPEG and WebP when none is asked for (0..100, Pillow's `quality`).
DEFAULT_QUALITY = 90


def convert_png(data: bytes, fmt: ImageFormat, quality: int | None = None) -> bytes:
    """The PNG `data` as `fmt`; `quality` (0..100, JPEG/WebP only; omitted:
    DEFAULT_QUALITY). PNG is returned as it is. JPEG has no alpha: a transparent image is
    laid on white."""
    if fmt == "png":
        return data
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGBA") if "A" in opened.mode else opened.convert("RGB")
    if fmt == "jpeg" and image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    out = io.BytesIO()
    image.save(out, format=fmt.upper(), quality=DEFAULT_QUALITY if quality is None else quality)
    return out.getvalue()
