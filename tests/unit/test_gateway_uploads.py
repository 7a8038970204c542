"""Decoding and checking of uploaded images: byte, pixel and side limits, bad input."""

from __future__ import annotations

import base64
import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from services.gateway.http.errors import ApiError
from services.gateway.uploads import ImageLimits, check_image, decode_image

LIMITS = ImageLimits(max_bytes=10 * 1024 * 1024, max_pixels=4096 * 4096, max_side=8192)


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), "red" if mode == "RGB" else 128).save(out, format="PNG")
    return out.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds a tiny IDAT: a decompression bomb's
    header. Decoding its pixels would need width*height*3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _error(value: str, limits: ImageLimits = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as info:
        decode_image(value, "image", limits)
    return info.value


def test_png_round_trip() -> None:
    image = decode_image(_b64(_png(33, 17)), "image", LIMITS)
    assert (image.width, image.height) == (33, 17)
    with Image.open(io.BytesIO(image.png)) as reopened:
        assert reopened.format == "PNG" and reopened.size == (33, 17)


def test_data_uri_and_line_breaks_and_missing_padding() -> None:
    data = _b64(_png(8, 8))
    assert decode_image(f"data:image/png;base64,{data}", "image", LIMITS).width == 8
    wrapped = "\n".join(data[i : i + 76] for i in range(0, len(data), 76))
    assert decode_image(wrapped, "image", LIMITS).height == 8
    assert decode_image(data.rstrip("="), "image", LIMITS).width == 8


def test_jpeg_is_stored_as_png() -> None:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), "blue").save(out, format="JPEG")
    image = decode_image(_b64(out.getvalue()), "image", LIMITS)
    assert image.png.startswith(b"\x89PNG") and (image.width, image.height) == (20, 10)


def test_palette_image_with_transparency_keeps_alpha() -> None:
    out = io.BytesIO()
    Image.new("P", (4, 4), 0).save(out, format="PNG", transparency=0)
    image = decode_image(_b64(out.getvalue()), "image", LIMITS)
    with Image.open(io.BytesIO(image.png)) as reopened:
        assert reopened.mode == "RGBA"


def test_invalid_base64_is_422_naming_the_field() -> None:
    error = _error("this is not base64!!")
    assert (error.status_code, error.field) == (422, "image")
    assert "base64" in error.message


def test_non_ascii_is_invalid_base64() -> None:
    assert _error("ÿÿÿÿ").status_code == 422


def test_empty_is_422() -> None:
    assert _error("").status_code == 422


def test_not_an_image_is_422() -> None:
    error = _error(_b64(b"hello, I am text and not a picture"))
    assert error.status_code == 422 and "not an image" in error.message


def test_truncated_image_is_422() -> None:
    error = _error(_b64(_png(64, 64)[:60]))
    assert error.status_code == 422


def test_unsupported_format_is_422() -> None:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="TIFF")
    assert _error(_b64(out.getvalue())).status_code == 422


@pytest.mark.parametrize(
    "uri", ["data:text/plain;base64,aGk=", "data:image/png,rawbytes", "data:nonsense"]
)
def test_bad_data_uris_are_422(uri: str) -> None:
    assert _error(uri).status_code == 422


def test_too_many_bytes_is_413_before_decoding() -> None:
    limits = ImageLimits(max_bytes=1000, max_pixels=LIMITS.max_pixels, max_side=8192)
    # Not even valid base64: the size is refused from the length alone, before decoding.
    error = _error("#" * 2000, limits)
    assert error.status_code == 413 and "limit" in error.message


def test_exact_size_check_after_decoding() -> None:
    data = _png(16, 16)
    limits = ImageLimits(max_bytes=len(data) - 1, max_pixels=LIMITS.max_pixels, max_side=8192)
    assert _error(_b64(data), limits).status_code == 413


def test_decompression_bomb_header_is_422_without_allocating_pixels() -> None:
    bomb = _b64(_png_header_only(20000, 20000))
    tracemalloc.start()
    try:
        error = _error(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.status_code == 422 and error.field == "image"
    assert "20000x20000 = 400.0 MP" in error.message and "16.8 MP" in error.message
    assert peak < 5 * 1024 * 1024  # 20000*20000*3 bytes would be 1.2 GB


def test_too_long_side_is_422() -> None:
    limits = ImageLimits(max_bytes=LIMITS.max_bytes, max_pixels=LIMITS.max_pixels, max_side=100)
    error = _error(_b64(_png(101, 2)), limits)
    assert error.status_code == 422 and "101x2" in error.message


def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped() -> None:
    gradient = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="PNG")
    stored = check_image(buffer.getvalue(), "image", LIMITS)
    pixels = np.asarray(Image.open(io.BytesIO(stored.png)))
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, (gradient // 256).astype(np.uint8))
