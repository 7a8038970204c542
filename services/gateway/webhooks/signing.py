"""Webhook signatures per Standard Webhooks (https://www.standardwebhooks.com).

Every attempt carries three headers:

- `webhook-id`: the event's id (`evt_...`), the same on every retry;
- `webhook-timestamp`: when this attempt was signed (Unix seconds);
- `webhook-signature`: `v1,<base64 HMAC-SHA256>` over `"{id}.{timestamp}.{raw body}"`,
  keyed with the base64-decoded bytes of the secret after its `whsec_` prefix. During a
  secret rotation it lists one signature per valid secret, separated by spaces.

A receiver recomputes the signature with its secret over the raw body, accepts the
delivery if one of the listed `v1` signatures matches (constant-time), and refuses a
timestamp too far from its clock (a replay). `verify` does that; the `standardwebhooks`
package's `Webhook(secret).verify(body, headers)` is the same check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`."""
    message = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secrets: Iterable[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt, signed with every secret in
    `secrets` (timestamp: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(t),
        SIGNATURE_HEADER: " ".join(signature(s, msg_id, t, body) for s in secrets),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does: True if one of the `webhook-signature` signatures signs
    `body` with `secret` and `webhook-timestamp` is within `tolerance_s` of `now`.
    `headers` keys are matched case-insensitively."""
    lower = {key.lower(): value for key, value in headers.items()}
    try:
        msg_id = lower[ID_HEADER]
        timestamp = int(lower[TIMESTAMP_HEADER])
        listed = lower[SIGNATURE_HEADER].split()
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = signature(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in listed)
