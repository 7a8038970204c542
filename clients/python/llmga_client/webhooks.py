"""Verify a webhook delivery from the gateway ([Standard Webhooks](https://www.standardwebhooks.com)).

The gateway signs each attempt with the tenant's secret (`whsec_` + base64): the header
`webhook-signature` lists `v1,<base64 HMAC-SHA256>` signatures (two during a secret
rotation) over `"{webhook-id}.{webhook-timestamp}.{raw body}"`. Standard library only.

    from llmga_client import webhooks

    event = webhooks.verify(raw_body, request.headers, secret="whsec_…")
    print(event.event, event.job.status)   # raises WebhookVerificationError if not genuine
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

from .errors import WebhookVerificationError
from .models import WebhookEvent

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300.0


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one delivery under `secret`."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | Iterable[str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> WebhookEvent:
    """The delivery's event if one of its signatures is by `secret` (or one of several
    secrets, e.g. around a rotation) and its timestamp within `tolerance_s` of `now`
    (default: the clock); else WebhookVerificationError. Pass the raw body as received,
    before any JSON parsing; header names are matched case-insensitively."""
    raw = body.encode() if isinstance(body, str) else body
    lower = {key.lower(): value for key, value in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])
        listed = lower["webhook-signature"].split()
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from None
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"timestamp {timestamp} is more than {tolerance_s:g} s from now (a replay?)"
        )
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [sign(s, msg_id, timestamp, raw) for s in secrets]
    if not any(hmac.compare_digest(e, c) for e in expected for c in listed):
        raise WebhookVerificationError("no signature matches")
    return WebhookEvent.model_validate_json(raw)
