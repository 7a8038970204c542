"""Prometheus metrics of one app instance, in its own CollectorRegistry.

A registry per app (not the global one) lets tests create many apps in one process.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """The gateway's metrics; `registry` is what `/metrics` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_request_duration = Histogram(
            "llmga_gateway_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs_submitted = Counter(
            "llmga_gateway_jobs_submitted",
            "Generation jobs enqueued, by task.",
            ["task"],
            registry=self.registry,
        )
        self.mllm_request_duration = Histogram(
            "llmga_gateway_mllm_request_duration_seconds",
            "Latency of chat completions sent to the mllm, by outcome.",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Read from the broker at every scrape (the /metrics route sets it).
        self.queue_depth = Gauge(
            "llmga_gateway_queue_depth",
            "Jobs in the generation queue: waiting, delivered but not acknowledged, and "
            "held back by the per-tenant cap.",
            registry=self.registry,
        )
        self.mllm_tokens = Counter(
            "llmga_gateway_mllm_tokens",
            "Tokens used by the mllm, by kind (prompt, completion).",
            ["kind"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "llmga_gateway_rate_limited_requests",
            "Requests refused with 429 by a per-key limit, by limit (requests, images_per_day).",
            ["limit"],
            registry=self.registry,
        )
        self.router_decisions = Counter(
            "llmga_gateway_router_decisions",
            "Chat turns by whether they generate (decision: generate, chat) and who decided "
            "(source: router, request: the `generate` field, task: a named or input-implied "
            "image task).",
            ["decision", "source"],
            registry=self.registry,
        )
        self.router_guard = Counter(
            "llmga_gateway_router_guard",
            "What the router changed in llmga-protocol turns (action: suppressed, a reply's "
            "generation blocks started no job; reasked, a reply without blocks was asked "
            "once more; reask_untagged, the re-ask brought none either).",
            ["action"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "llmga_gateway_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered, rejected: non-2xx, error: "
            "no answer).",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_attempt_duration = Histogram(
            "llmga_gateway_webhook_attempt_duration_seconds",
            "Latency of one webhook delivery attempt.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.webhook_events_failed = Counter(
            "llmga_gateway_webhook_events_failed",
            "Webhook events given up (every attempt failed, or the URL is no longer allowed); "
            "kept in the dead-letter stream.",
            registry=self.registry,
        )


class RequestMetricsMiddleware:
    """Times every HTTP request and labels it with its route *template* (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The router stores the matched route in the scope; unmatched paths share one
            # label so random URLs cannot grow the label set.
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.http_request_duration.labels(
                scope["method"], template, str(status)
            ).observe(time.perf_counter() - started)
