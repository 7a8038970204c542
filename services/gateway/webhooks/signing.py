"""HMAC-SHA256 signatures of webhook deliveries.

Header: `X-LLMGA-Signature: t=<unix seconds>,v1=<hex>`, where the hex digest is
HMAC-SHA256(LLMGA_WEBHOOK_SECRET, "<t>.<raw body>"). Signing the timestamp with the body
lets a receiver refuse replays: it recomputes the digest over the raw body it received
and refuses a delivery whose `t` is too old (`verify_signature`'s `tolerance_s`). Every
attempt is signed afresh, so a retry carries a current timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-LLMGA-Signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of `X-LLMGA-Signature` for `body` (timestamp: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, t, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does: True if `header` signs `body` with `secret` and its timestamp
    is within `tolerance_s` of `now` (constant-time comparison)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(parts.get("v1", ""), signature(secret, timestamp, body))
