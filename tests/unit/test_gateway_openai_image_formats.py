"""OpenAI's Images API pieces: `size` parsing, format conversion, URLs with a format."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pytest
from PIL import Image

from services.gateway.http.errors import ApiError
from services.gateway.http.links import Links
from services.gateway.http.signed_urls import UrlSigner, signed_tenant
from services.gateway.images.formats import convert_png
from services.gateway.openai_images.serving import parse_size
from services.gateway.settings import GatewaySettings

SETTINGS = GatewaySettings(min_size=64, max_size=1024)


def _png(mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (24, 16), (10, 200, 30, 0) if mode == "RGBA" else (10, 200, 30)).save(
        out, format="PNG"
    )
    return out.getvalue()


@pytest.mark.parametrize(
    ("size", "expected"),
    [("512x256", (512, 256)), (" 64X1024 ", (64, 1024)), ("auto", None), (None, None)],
)
def test_sizes(size: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_size(size, SETTINGS) == expected


@pytest.mark.parametrize("size", ["65x64", "56x64", "64x1032", "512", "1024x1024x3", "ax b"])
def test_bad_sizes_name_size(size: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_size(size, SETTINGS)
    assert raised.value.status_code == 422 and raised.value.field == "size"


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_conversion(fmt: str, pil: str) -> None:
    for mode in ("RGB", "RGBA"):
        data = convert_png(_png(mode), fmt, 50)  # type: ignore[arg-type]
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == pil and image.size == (24, 16)
    png = _png()
    assert convert_png(png, "png") is png


def test_transparent_pixels_become_white_in_jpeg() -> None:
    with Image.open(io.BytesIO(convert_png(_png("RGBA"), "jpeg", 95))) as image:
        pixel = image.convert("RGB").getpixel((3, 3))
        assert isinstance(pixel, tuple) and all(channel > 240 for channel in pixel)


def test_image_urls_carry_the_format_after_the_signature() -> None:
    assert Links().image("img_1", "webp", 70) == "/v1/images/img_1?format=webp&quality=70"
    assert Links().image("img_1") == "/v1/images/img_1"
    signed = Links(signer=UrlSigner("s" * 32), tenant="acme", at=1000.0).image("img_1", "jpeg")
    assert "sig=" in signed and signed.endswith("&format=jpeg")


def test_a_signed_url_with_a_format_still_verifies_and_opens_only_get() -> None:
    signer = UrlSigner("s" * 32)
    url = Links(signer=signer, tenant="acme", at=1000.0).image("img_1", "jpeg", 80)
    parts = urlsplit(url)

    def scope(method: str, path: str = parts.path) -> dict[str, object]:
        query = parts.query.encode()
        return {"type": "http", "method": method, "path": path, "query_string": query}

    assert signed_tenant(scope("GET"), signer, now=1000.0) == "acme"
    # The new POST routes under /v1/images/ are never opened by a signature.
    assert signed_tenant(scope("POST", "/v1/images/generations"), signer, now=1000.0) is None
