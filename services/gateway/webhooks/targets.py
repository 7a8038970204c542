"""Which webhook URLs the gateway accepts (SSRF guard).

The gateway sends requests only to hosts an operator allow-listed
(`LLMGA_WEBHOOK_ALLOWED_HOSTS`), over https unless `LLMGA_WEBHOOK_ALLOW_HTTP` is set;
every other URL is refused with 422 when the job is created, and checked again by the
dispatcher before an event's first attempt (the settings may have changed since, by a
restart); an event refused then is given up. Redirects are never followed. These are
the only requests the gateway makes to an address a user supplied: input images come as
base64 or ids, never as URLs to fetch.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from services.common.contract import Webhook
from services.gateway.http.errors import invalid
from services.gateway.settings import GatewaySettings
from services.gateway.webhooks.protocol import WebhookInput


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


def url_refusal(url: str, settings: GatewaySettings) -> str | None:
    """Why `url` may not receive webhooks, or None if it may."""
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
    if not parts.hostname or not host_allowed(parts.hostname, settings.webhook_host_patterns):
        return f"webhook.url host {parts.hostname!r} is not in LLMGA_WEBHOOK_ALLOWED_HOSTS"
    return None


def accepted_webhook(webhook: WebhookInput | None, settings: GatewaySettings) -> Webhook | None:
    """The contract's Webhook for a request's `webhook` field; 422 (field `webhook.url`)
    for a URL the gateway may not call. None when the request has no webhook."""
    if webhook is None:
        return None
    reason = url_refusal(webhook.url, settings)
    if reason is not None:
        raise invalid(reason, "webhook.url")
    return Webhook(url=webhook.url, events=list(dict.fromkeys(webhook.events)))
