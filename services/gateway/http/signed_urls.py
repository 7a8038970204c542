"""Signed, expiring URLs a browser can use without an API key (docs/api.md "Browsers").

An `<img src>` or an `EventSource` cannot send `Authorization`, so with
`LLMGA_URL_SIGNING_SECRET` set the gateway hands out URLs that carry their own proof:

- an image: `/v1/images/{id}?tenant=T&expires=E&sig=S`, where S is the hex
  HMAC-SHA256 of `"image\\n{T}\\n{id}\\n{E}"`;
- a job's event stream: `/v1/jobs/{id}/events?token=T.E.S`, S the same over
  `"events\\n{T}\\n{id}\\n{E}"`.

The HMAC key is derived per tenant, HMAC-SHA256(secret, tenant), so one tenant's key
signs nothing of another's. E is a Unix time; after it the URL is refused. The purpose
("image", "events") is signed, so an image signature is no event-stream token. Only
`ApiKeyMiddleware` verifies them, and only on those two routes (GET): a signature never
opens any other route. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from starlette.types import Scope

IMAGE_PURPOSE = "image"
EVENTS_PURPOSE = "events"
IMAGE_PATH = re.compile(r"^/v1/images/(?P<id>[^/]+)$")
EVENTS_PATH = re.compile(r"^/v1/jobs/(?P<id>[^/]+)/events$")
# As services/gateway/http/apikeys.TENANT_PATTERN (no '.': the token's separator).
_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_CACHED_TENANT_KEYS = 4096


@dataclass(frozen=True)
class SignatureError(Exception):
    """A signed request refused: 403 naming the query field at fault."""

    type: str
    message: str
    field: str


def expiry(now: float, ttl_s: int) -> int:
    """The `expires` of a URL made at `now`: `ttl_s` ahead, rounded up to a step of a
    tenth of it (at most 5 min), so that URLs made within one step are the same and a
    browser's cache keeps working across job reads."""
    step = max(1, min(300, ttl_s // 10))
    return (int(now) + ttl_s) // step * step + step


class UrlSigner:
    """Signs and verifies with a per-deployment secret and a key derived per tenant."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a URL signing secret must not be empty")
        self._secret = secret.encode()
        self._tenant_keys: dict[str, bytes] = {}

    def _tenant_key(self, tenant: str) -> bytes:
        key = self._tenant_keys.get(tenant)
        if key is None:
            if len(self._tenant_keys) >= _MAX_CACHED_TENANT_KEYS:
                self._tenant_keys.clear()
            key = hmac.new(self._secret, tenant.encode(), hashlib.sha256).digest()
            self._tenant_keys[tenant] = key
        return key

    def signature(self, purpose: str, tenant: str, resource_id: str, expires: int) -> str:
        """The hex HMAC-SHA256 of `"{purpose}\\n{tenant}\\n{id}\\n{expires}"`."""
        message = f"{purpose}\n{tenant}\n{resource_id}\n{expires}".encode()
        return hmac.new(self._tenant_key(tenant), message, hashlib.sha256).hexdigest()

    def image_query(self, tenant: str, image_id: str, expires: int) -> str:
        """The query string of a signed image URL."""
        sig = self.signature(IMAGE_PURPOSE, tenant, image_id, expires)
        return urlencode({"tenant": tenant, "expires": expires, "sig": sig})

    def events_token(self, tenant: str, job_id: str, expires: int) -> str:
        """The `token` of a job's signed event-stream URL: `tenant.expires.sig`."""
        return f"{tenant}.{expires}.{self.signature(EVENTS_PURPOSE, tenant, job_id, expires)}"

    def verify(
        self,
        purpose: str,
        resource_id: str,
        tenant: str | None,
        expires: str | None,
        sig: str | None,
        now: float,
        names: tuple[str, str, str] = ("tenant", "expires", "sig"),
    ) -> str:
        """The tenant a signature was made for; SignatureError (naming the field, as
        `names` call them) if a part is missing or malformed, the signature does not
        match, or it has expired."""
        tenant_name, expires_name, sig_name = names
        if not tenant or not _TENANT.match(tenant):
            raise SignatureError(
                "invalid_signature", f"{tenant_name}: missing or malformed", tenant_name
            )
        if not expires or not expires.isdigit() or len(expires) > 12:
            raise SignatureError(
                "invalid_signature", f"{expires_name}: missing or not a Unix time", expires_name
            )
        if not sig:
            raise SignatureError("invalid_signature", f"{sig_name}: missing", sig_name)
        expected = self.signature(purpose, tenant, resource_id, int(expires))
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise SignatureError(
                "invalid_signature",
                f"{sig_name}: the signature does not match this URL (altered, or made for "
                "another resource or deployment)",
                sig_name,
            )
        if int(expires) < now:
            raise SignatureError(
                "signature_expired",
                f"{expires_name}: the signed URL expired at {expires} (Unix time); "
                "read the job again for a fresh one",
                expires_name,
            )
        return tenant


def _query(scope: Scope) -> dict[str, str]:
    """The request's query parameters (the first value of each)."""
    raw = scope.get("query_string", b"").decode("latin-1")
    return {name: values[0] for name, values in parse_qs(raw).items()}


def signed_tenant(scope: Scope, signer: UrlSigner, now: float | None = None) -> str | None:
    """The tenant of a signed request: a GET of an image with `sig` (or `expires`,
    `tenant`) in its query, or of a job's events with `token`. None: not a signed
    request (any other route or method, or no signature parameters). SignatureError:
    a signature that does not verify."""
    if scope.get("method") not in ("GET", "HEAD"):
        return None
    current = time.time() if now is None else now
    path = scope.get("path", "")
    image = IMAGE_PATH.match(path)
    if image is not None:
        query = _query(scope)
        if not {"sig", "expires", "tenant"} & query.keys():
            return None
        return signer.verify(
            IMAGE_PURPOSE,
            image["id"],
            query.get("tenant"),
            query.get("expires"),
            query.get("sig"),
            current,
        )
    events = EVENTS_PATH.match(path)
    if events is not None:
        query = _query(scope)
        if "token" not in query:
            return None
        parts = query["token"].split(".")
        if len(parts) != 3:
            raise SignatureError(
                "invalid_signature", "token: malformed (expected tenant.expires.sig)", "token"
            )
        tenant, expires, sig = parts
        return signer.verify(
            EVENTS_PURPOSE, events["id"], tenant, expires, sig, current, ("token",) * 3
        )
    return None
