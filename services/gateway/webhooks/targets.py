"""Which webhook URLs the gateway accepts (SSRF guard).

The gateway sends requests only to hosts an operator allow-listed: the deployment's
`LLMGA_WEBHOOK_ALLOWED_HOSTS` (non-empty: the switch that turns webhooks on) and the
job's tenant's own list (`llmga-keys webhook-hosts`, tenants.py), over https unless
`LLMGA_WEBHOOK_ALLOW_HTTP` is set; every other URL is refused with 422 when the job is
created, and checked again by the dispatcher before an event's first attempt (the lists
may have changed since); an event refused then is given up. Redirects are never followed. These are
the only requests the gateway makes to an address a user supplied: input images come as
base64 or ids, never as URLs to fetch.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis

from services.common.contract import Webhook
from services.common.redis_keys import RedisKeys
from services.gateway.http.errors import invalid
from services.gateway.settings import GatewaySettings
from services.gateway.webhooks.protocol import WebhookInput
from services.gateway.webhooks.tenants import tenant_hosts


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """`host` equals a pattern, or a `*.domain` pattern names one of its parent domains."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def url_refusal(
    url: str, settings: GatewaySettings, tenant_patterns: tuple[str, ...] = ()
) -> str | None:
    """Why `url` may not receive webhooks, or None if it may: its host must be in the
    deployment's list or in `tenant_patterns` (the job's tenant's)."""
    if not settings.webhooks_enabled:
        return "webhooks are not enabled on this gateway (LLMGA_WEBHOOK_ALLOWED_HOSTS is empty)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "webhook.url is not a valid URL"
    schemes = ("https", "http") if settings.webhook_allow_http else ("https",)
    if parts.scheme not in schemes:
        return f"webhook.url must use {' or '.join(schemes)}"
    if parts.username is not None or parts.password is not None:
        return "webhook.url must not carry credentials"
    patterns = settings.webhook_host_patterns + tenant_patterns
    if not parts.hostname or not host_allowed(parts.hostname, patterns):
        return (
            f"webhook.url host {parts.hostname!r} is not in LLMGA_WEBHOOK_ALLOWED_HOSTS "
            "nor in the tenant's webhook hosts"
        )
    return None


async def accepted_webhook(
    webhook: WebhookInput | None,
    settings: GatewaySettings,
    client: aioredis.Redis,
    keys: RedisKeys,
    tenant: str,
) -> Webhook | None:
    """The contract's Webhook for a request's `webhook` field; 422 (field `webhook.url`)
    for a URL the gateway may not call for `tenant`. None when the request has no
    webhook."""
    if webhook is None:
        return None
    hosts = await tenant_hosts(client, keys, tenant) if settings.webhooks_enabled else ()
    reason = url_refusal(webhook.url, settings, hosts)
    if reason is not None:
        raise invalid(reason, "webhook.url")
    return Webhook(url=webhook.url, events=list(dict.fromkeys(webhook.events)))
