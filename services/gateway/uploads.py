"""Decode, check and store uploaded images (base64 in JSON bodies, or the bytes of a
multipart file).

Limits are enforced as early as possible: the byte limit from the base64 length before
decoding, the pixel limit from the image header before any pixel is decoded, so neither a
huge body nor a decompression bomb costs memory.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.ImageFile import ImageFile

from services.gateway.http.errors import invalid, too_large

# Formats a browser or phone produces; exotic decoders are an attack surface we avoid.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),", re.ASCII)
_WHITESPACE = re.compile(rb"\s+")
# Errors Pillow's header parsers raise for a malformed file.
_HEADER_ERRORS = (SyntaxError, IndexError, TypeError, ValueError, struct.error, OSError, EOFError)


@dataclass(frozen=True)
class ImageLimits:
    """Upload limits (from GatewaySettings)."""

    max_bytes: int
    max_pixels: int
    max_side: int


@dataclass(frozen=True)
class DecodedImage:
    """A checked image, re-encoded as PNG."""

    png: bytes
    width: int
    height: int


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def _mebibytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _strip_data_uri(value: str, field: str) -> str:
    """Return the base64 payload of a `data:image/...;base64,` URI or of raw base64."""
    if not value.startswith("data:"):
        return value
    match = _DATA_URI.match(value)
    if match is None:
        raise invalid(f"{field}: malformed data URI", field)
    mime = (match.group("mime") or "").lower()
    params = [p.strip().lower() for p in match.group("params").split(";") if p.strip()]
    if not mime.startswith("image/"):
        raise invalid(f"{field}: data URI must have an image/* media type, not {mime!r}", field)
    if "base64" not in params:
        raise invalid(f"{field}: data URI must be base64-encoded (';base64,')", field)
    return value[match.end() :]


def check_size(size: int, field: str, max_bytes: int) -> None:
    """413 naming `field` if an image of `size` bytes is over `max_bytes`."""
    if size > max_bytes:
        raise too_large(
            f"{field}: image is {_mebibytes(size)}; the limit is {_mebibytes(max_bytes)}",
            field,
        )


def decode_base64(value: str, field: str, max_bytes: int) -> bytes:
    """Decode raw base64 or a data URI; 413 over `max_bytes`, 422 if not valid base64."""
    payload = _strip_data_uri(value.strip(), field)
    try:
        raw = payload.encode("ascii")
    except UnicodeEncodeError:
        raise invalid(f"{field}: not valid base64 (non-ASCII characters)", field) from None
    raw = _WHITESPACE.sub(b"", raw)  # MIME-style line breaks are allowed
    # 4 base64 characters carry 3 bytes: refuse before spending memory on decoding.
    estimate = len(raw) * 3 // 4 - raw[-2:].count(b"=")
    check_size(estimate, field, max_bytes)
    if not raw:
        raise invalid(f"{field}: empty image", field)
    raw += b"=" * (-len(raw) % 4)  # tolerate missing padding
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{field}: not valid base64", field) from None
    check_size(len(data), field, max_bytes)
    return data


def _open_header(data: bytes, field: str) -> ImageFile:
    """Parse only the header of an image in one of ALLOWED_FORMATS.

    `Image.open` would apply Pillow's process-wide decompression-bomb limit (and raise
    without telling the size); calling the format's own opener reads the header and no
    pixels, so our configured limit applies and the error can name the dimensions.
    """
    Image.init()
    prefix = data[:16]
    for name in ALLOWED_FORMATS:
        if name not in Image.OPEN:
            continue
        factory, accept = Image.OPEN[name]
        accepted = accept(prefix) if accept is not None else True
        if isinstance(accepted, str) or not accepted:  # a str is a "maybe" warning
            continue
        try:
            image = factory(io.BytesIO(data), "")
        except _HEADER_ERRORS:
            continue
        assert isinstance(image, ImageFile)
        return image
    raise invalid(
        f"{field}: not an image in a supported format ({', '.join(ALLOWED_FORMATS)})", field
    )


def check_image(data: bytes, field: str, limits: ImageLimits) -> DecodedImage:
    """Check dimensions from the header, then decode and re-encode as PNG.

    422 for a non-image, a broken image, more than `max_pixels` or a side over `max_side`.
    """
    image = _open_header(data, field)
    width, height = image.size
    if width < 1 or height < 1:
        raise invalid(f"{field}: image has no pixels ({width}x{height})", field)
    if width * height > limits.max_pixels:
        raise invalid(
            f"{field}: image is {width}x{height} = {_megapixels(width * height)}; "
            f"the limit is {_megapixels(limits.max_pixels)}",
            field,
        )
    if max(width, height) > limits.max_side:
        raise invalid(
            f"{field}: image is {width}x{height}; the longest side may be {limits.max_side}",
            field,
        )
    try:
        image.load()
        # Phones store rotation in EXIF; generation must see the image the user sees.
        upright = ImageOps.exif_transpose(image)
        if upright.mode.startswith("I"):
            # 16/32-bit greyscale: Pillow's convert clips at 255; scale to 8 bits instead.
            upright = upright.point(lambda value: value / 256).convert("L")
        if upright.mode not in ("RGB", "RGBA", "L", "LA"):
            has_alpha = "A" in upright.mode or "transparency" in upright.info
            upright = upright.convert("RGBA" if has_alpha else "RGB")
        out = io.BytesIO()
        upright.save(out, format="PNG")
    except (*_HEADER_ERRORS, UnidentifiedImageError, Image.DecompressionBombError):
        raise invalid(f"{field}: the image data is corrupt or truncated", field) from None
    return DecodedImage(png=out.getvalue(), width=upright.width, height=upright.height)


def decode_image(value: str, field: str, limits: ImageLimits) -> DecodedImage:
    """Base64 (or data URI) -> checked PNG; raises ApiError 413/422 naming `field`."""
    return check_image(decode_base64(value, field, limits.max_bytes), field, limits)
