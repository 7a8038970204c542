"""API keys: `Authorization: Bearer <key>` -> tenant, and the CLI that creates keys.

A key is `llmga_` + 256 random bits (URL-safe base64). Only its SHA-256 is stored, as
`{prefix}:apikey:{sha256 hex}` -> tenant (no TTL), so a leaked Redis dump holds no usable
key; the key itself is printed once, when it is created (`llmga-keys` is the package's
console script; `python -m services.gateway.http.apikeys` is the same command):

    llmga-keys create --tenant acme   # prints the key
    llmga-keys revoke --key llmga_...
    llmga-keys rate-limit --key llmga_... --set 600/60  # or --clear
    llmga-keys webhook-secret --tenant acme [--rotate]  # prints the webhook secret
    llmga-keys webhook-hosts --tenant acme --add hooks.acme.com  # or --remove H, --list

The webhook commands manage a tenant's webhook settings (docs/api.md "Webhooks",
services/gateway/webhooks/tenants.py): the secret that signs its deliveries (created on
first use; `--rotate` replaces it, the old one signing too for
`LLMGA_WEBHOOK_ROTATION_GRACE_S`) and the hosts its webhook URLs may use on top of
`LLMGA_WEBHOOK_ALLOWED_HOSTS`.

A key may carry its own request rate limit (`N/S`: N requests per S seconds, `0/S`:
unlimited), kept as `{prefix}:apikey-limits:{sha256 hex}` and used by rate_limits.py
instead of the `LLMGA_RATE_LIMIT_*` defaults; `create --rate-limit N/S` sets it at once.

With `LLMGA_AUTH_REQUIRED=true` every route but /healthz, /readyz, /metrics, the API's
documentation (/docs, /openapi.json) and the studio's static files (/studio) needs a
valid key (401 otherwise), and a request sees only its key's tenant's jobs, conversations
and images (another tenant's are 404: every key of tenant data carries the tenant). With
the default `false` (the local stack) every request is the tenant `LLMGA_DEFAULT_TENANT`.

With `LLMGA_URL_SIGNING_SECRET` set, a GET of an image or of a job's events without an
`Authorization` header may carry a signature instead (signed_urls.py): it is served as the
signed tenant if the signature verifies, and refused with 403 naming the query field if
not. A signature opens only the one resource it was made for.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import secrets
import sys

import redis
import redis.asyncio as aioredis
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.redis_keys import RedisKeys
from services.common.settings import StateSettings
from services.gateway.http.errors import error_body
from services.gateway.http.signed_urls import SignatureError, UrlSigner, signed_tenant
from services.gateway.webhooks.tenants import WebhookTenantStore

KEY_PREFIX = "llmga_"
# Tenants are part of Redis keys: no ':' or spaces.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Routes a load balancer, Prometheus or a browser showing the API's documentation calls
# without a key (the documentation holds nothing of a tenant's).
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
    }
)
# The studio's static page and modules (app.py): public, so the page loads and asks for
# the key; every API call it makes carries the key like any other client's.
STUDIO_PATH = "/studio"
# Where the middleware leaves the tenant for `get_tenant`.
TENANT_SCOPE_KEY = "llmga.tenant"


def is_public_path(path: str) -> bool:
    """Whether `path` is served without a key and outside the rate limits."""
    return path in PUBLIC_PATHS or path == STUDIO_PATH or path.startswith(STUDIO_PATH + "/")


def key_hash(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def apikey_redis_key(keys: RedisKeys, digest: str) -> str:
    return f"{keys.prefix}:apikey:{digest}"


def parse_rate_limit(text: str) -> tuple[int, float]:
    """`"600/60"` -> (600 requests, 60.0 seconds); ValueError if malformed."""
    requests, _, window = text.partition("/")
    try:
        parsed = int(requests), float(window)
    except ValueError:
        raise ValueError(f"rate limit {text!r} is not N/S (requests per seconds)") from None
    if parsed[0] < 0 or not parsed[1] > 0:
        raise ValueError(f"rate limit {text!r}: N must be >= 0 and S > 0")
    return parsed


class ApiKeyStore:
    """Creates, resolves and revokes API keys in Redis (only hashes are stored)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def create(self, tenant: str) -> str:
        """A new key for `tenant`; the only time the key itself exists outside the client."""
        if not TENANT_PATTERN.match(tenant):
            raise ValueError("tenant must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self._client.set(apikey_redis_key(self._keys, key_hash(key)), tenant.encode())
        return key

    def tenant_for(self, key: str) -> str | None:
        """The tenant of `key`, or None if it is unknown or revoked."""
        return _tenant(self._client.get(apikey_redis_key(self._keys, key_hash(key))))

    def revoke(self, key: str) -> bool:
        """Delete `key` (and its rate limit); False if it was unknown."""
        digest = key_hash(key)
        deleted = self._client.delete(
            apikey_redis_key(self._keys, digest), self._keys.apikey_limits(digest)
        )
        return bool(deleted)

    def set_rate_limit(self, key: str, limit: tuple[int, float] | None) -> bool:
        """Give `key` its own (requests, window seconds) limit, or None: the defaults
        again. False if the key is unknown."""
        digest = key_hash(key)
        if not self._client.exists(apikey_redis_key(self._keys, digest)):
            return False
        limits_key = self._keys.apikey_limits(digest)
        if limit is None:
            self._client.delete(limits_key)
        else:
            requests, window_s = limit
            mapping = {"requests": requests, "window_ms": max(1, round(window_s * 1000))}
            self._client.hset(limits_key, mapping=mapping)  # type: ignore[arg-type]
        return True


async def tenant_for(client: aioredis.Redis, keys: RedisKeys, key: str) -> str | None:
    """`ApiKeyStore.tenant_for` over redis.asyncio (the gateway's per-request lookup)."""
    return _tenant(await client.get(apikey_redis_key(keys, key_hash(key))))


def _tenant(value: object) -> str | None:
    """The tenant of a stored key's value (None: no such key)."""
    return None if value is None else bytes(value).decode()  # type: ignore[call-overload]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None if absent or another
    scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _unauthorized(message: str) -> JSONResponse:
    return JSONResponse(
        error_body("unauthorized", message),
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="llmga"'},
    )


class ApiKeyMiddleware:
    """With auth required: 401 without a valid key, else the key's tenant in the scope.
    Without: nothing (get_tenant answers the default tenant). Either way, with a URL
    signer: a signed image or event-stream request without a key runs as its signed
    tenant, or is refused (403)."""

    def __init__(self, app: ASGIApp, required: bool, signer: UrlSigner | None = None) -> None:
        self.app = app
        self._required = required
        self._signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        if raw is None and self._signer is not None:
            try:
                signed_as = signed_tenant(scope, self._signer)
            except SignatureError as error:
                forbidden = JSONResponse(
                    error_body(error.type, error.message, error.field), status_code=403
                )
                await forbidden(scope, receive, send)
                return
            if signed_as is not None:
                scope[TENANT_SCOPE_KEY] = signed_as
                await self.app(scope, receive, send)
                return
        if not self._required or is_public_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(raw.decode("latin-1") if raw is not None else None)
        if token is None:
            response = _unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' "
                "(create one with `python -m services.gateway.http.apikeys create --tenant T`)"
            )
            await response(scope, receive, send)
            return
        # Starlette puts the app in the scope; its state is opened in the lifespan.
        state = scope["app"].state.gateway
        try:
            tenant = await tenant_for(state.redis, state.keys, token)
        except redis.RedisError:
            message = "the state store is unavailable; try again later"
            response = JSONResponse(
                error_body("service_unavailable", message),
                status_code=503,
                headers={"Retry-After": str(state.settings.upstream_retry_after_s)},
            )
            await response(scope, receive, send)
            return
        if tenant is None:
            await _unauthorized("invalid or revoked API key")(scope, receive, send)
            return
        scope[TENANT_SCOPE_KEY] = tenant
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> int:
    """`llmga-keys create --tenant T [--rate-limit N/S] | revoke --key K |
    rate-limit --key K (--set N/S | --clear) | webhook-secret --tenant T [--rotate] |
    webhook-hosts --tenant T (--add H | --remove H | --list)` (also
    `python -m services.gateway.http.apikeys`)."""
    parser = argparse.ArgumentParser(description="Manage the gateway's API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key for a tenant; prints it once")
    create.add_argument("--tenant", required=True)
    create.add_argument(
        "--rate-limit", dest="limit_text", help="N/S: the key's own limit, N requests per S s"
    )
    revoke = commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("--key", required=True)
    rate_limit = commands.add_parser("rate-limit", help="set or clear a key's own rate limit")
    rate_limit.add_argument("--key", required=True)
    change = rate_limit.add_mutually_exclusive_group(required=True)
    change.add_argument(
        "--set", dest="limit_text", help="N/S: N requests per S seconds (0/S: unlimited)"
    )
    change.add_argument("--clear", action="store_true", help="back to LLMGA_RATE_LIMIT_*")
    secret = commands.add_parser(
        "webhook-secret", help="print a tenant's webhook signing secret (created if needed)"
    )
    secret.add_argument("--tenant", required=True)
    secret.add_argument(
        "--rotate",
        action="store_true",
        help="make a new secret; the old one signs too for LLMGA_WEBHOOK_ROTATION_GRACE_S",
    )
    hosts = commands.add_parser(
        "webhook-hosts", help="a tenant's webhook hosts, on top of LLMGA_WEBHOOK_ALLOWED_HOSTS"
    )
    hosts.add_argument("--tenant", required=True)
    host_change = hosts.add_mutually_exclusive_group(required=True)
    host_change.add_argument("--add", metavar="HOST", help="allow HOST (or '*.domain')")
    host_change.add_argument("--remove", metavar="HOST", help="take HOST off the list")
    host_change.add_argument("--list", action="store_true", help="print the hosts")
    args = parser.parse_args(argv)
    tenant_arg = getattr(args, "tenant", None)
    if tenant_arg is not None and not TENANT_PATTERN.match(tenant_arg):
        parser.error("tenant must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'")
    text = getattr(args, "limit_text", None)  # None: no limit given, or --clear
    try:
        limit = parse_rate_limit(text) if text else None
    except ValueError as error:
        parser.error(str(error))

    settings = StateSettings()
    client = redis.Redis.from_url(settings.redis_url)
    keys = RedisKeys(settings.key_prefix)
    store = ApiKeyStore(client, keys)
    if args.command in ("webhook-secret", "webhook-hosts"):
        return _webhook_command(args, WebhookTenantStore(client, keys), parser)
    if args.command == "create":
        try:
            key = store.create(args.tenant)
        except ValueError as error:
            parser.error(str(error))
        if limit is not None:
            store.set_rate_limit(key, limit)
        print(key)
        print(
            f"API key for tenant {args.tenant!r}: shown only now, store it safely.",
            file=sys.stderr,
        )
        return 0
    if args.command == "rate-limit":
        changed = store.set_rate_limit(args.key, limit)
    else:
        changed = store.revoke(args.key)
    if not changed:
        print("unknown key", file=sys.stderr)
        return 1
    return 0


def _webhook_command(
    args: argparse.Namespace, store: WebhookTenantStore, parser: argparse.ArgumentParser
) -> int:
    tenant: str = args.tenant
    if args.command == "webhook-secret":
        if args.rotate:
            print(store.rotate(tenant).current)
            print(
                f"New webhook secret of tenant {tenant!r}; deliveries are signed with the "
                "previous one too for LLMGA_WEBHOOK_ROTATION_GRACE_S (default 24 h).",
                file=sys.stderr,
            )
        else:
            print(store.secrets(tenant).current)
        return 0
    if args.list:
        for host in store.hosts(tenant):
            print(host)
        return 0
    try:
        if args.add is not None:
            store.add_host(tenant, args.add)
            return 0
        if not store.remove_host(tenant, args.remove):
            print(f"{args.remove!r} is not a webhook host of tenant {tenant!r}", file=sys.stderr)
            return 1
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
