"""Typed settings of the gateway, read from `LLMGA_*` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import StateSettings
from services.gateway.mllm.prompt_writing import DEFAULT_PROMPT_INSTRUCTION

# Diffusion models work on latents 8x smaller than the image: sides must be multiples of 8.
SIZE_MULTIPLE = 8
# A signing secret shorter than this is refused at startup (brute-forceable).
MIN_SIGNING_SECRET_CHARS = 32


class GatewaySettings(StateSettings):
    """Everything the gateway reads from the environment (prefix `LLMGA_`, see docs/api.md)."""

    # populate_by_name: tests and callers may pass `host=` / `port=` despite the aliases.
    model_config = SettingsConfigDict(env_prefix="LLMGA_", extra="ignore", populate_by_name=True)

    # Host and port carry a GATEWAY_ infix so they never collide with another service's
    # settings in a shared environment.
    host: str = Field(
        default="0.0.0.0",
        validation_alias="LLMGA_GATEWAY_HOST",
        description="Address uvicorn binds to.",
    )
    port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        validation_alias="LLMGA_GATEWAY_PORT",
        description="Port uvicorn listens on.",
    )
    redis_max_connections: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Connections a gateway process opens to Redis for commands; requests "
        "beyond them wait for a free one (LLMGA_REDIS_POOL_TIMEOUT_S) instead of failing.",
    )
    redis_pool_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a request waits for a free Redis connection before its 503.",
    )
    max_event_subscriptions: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="Open job subscriptions (event streams and `Prefer: wait`) per gateway "
        "process, each a Redis pub/sub connection of its own; more get 503 + Retry-After.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias="LLMGA_GATEWAY_WORKERS",
        description="uvicorn worker processes (one event loop each); one per CPU core of "
        "the pod (docs/deploy.md, 'Sizing').",
    )

    default_tenant: str = Field(
        default="local", min_length=1, description="Tenant of every request when auth is off."
    )
    auth_required: bool = Field(
        default=False,
        description="Require `Authorization: Bearer <API key>` on every route but /healthz, "
        "/readyz, /metrics, /docs, /openapi.json and the studio's static files (/studio), and "
        "signed image and event URLs; the key decides the tenant "
        "(services/gateway/http/apikeys.py).",
    )

    # Browsers (docs/api.md "Browsers").
    cors_origins: str = Field(
        default="",
        description="Comma-separated origins (`https://app.example.com`) whose pages may "
        "call the API (CORS); empty: CORS is off (no Access-Control-* headers).",
    )
    public_base_url: str = Field(
        default="",
        description="The gateway's public URL as clients reach it, path prefix included "
        "(`https://api.example.com/llmga`); image and event URLs in answers are absolute "
        "under it. Empty: they are paths (`/v1/images/<id>`).",
    )
    url_signing_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Per-deployment secret of signed image URLs and event-stream tokens "
        "(HMAC-SHA256 under a key derived per tenant), at least 32 characters, the same on "
        "every replica; empty: no signing, image URLs need the API key like every route.",
    )
    signed_url_ttl_s: int = Field(
        default=3600,
        ge=1,
        le=7 * 24 * 3600,
        description="Lifetime of a signed image URL (seconds; up to a tenth more, so that "
        "repeated job reads give the same URL and browsers cache the image).",
    )
    events_token_ttl_s: int = Field(
        default=300,
        ge=1,
        le=24 * 3600,
        description="Lifetime of the token in a job's `events_url` (seconds): the time "
        "within which an EventSource must (re)connect.",
    )

    # The mllm (OpenAI Chat Completions).
    mllm_base_url: str = Field(
        default="http://127.0.0.1:8001/v1",
        description="Base URL of the mllm's OpenAI-compatible API.",
    )
    mllm_model: str = Field(
        default="", description="Served model name; empty means the first id listed by /v1/models."
    )
    mllm_api_key: str = Field(default="", description="Bearer token for the mllm, if it needs one.")
    mllm_connect_timeout_s: float = Field(
        default=3.0, gt=0, description="Connect timeout to the mllm."
    )
    mllm_timeout_s: float = Field(
        default=120.0, gt=0, description="Read timeout of one chat completion (the whole reply)."
    )
    mllm_probe_timeout_s: float = Field(
        default=2.0, gt=0, description="Timeout of the readiness probe `GET <base>/models`."
    )
    # Unset: the mllm server's own defaults decide (vLLM is launched with LLMGA's reference
    # decoding, temperature 0.2 and 512 new tokens; the local engine has defaults tuned for
    # its small base model).
    mllm_max_tokens: int | None = Field(
        default=None, ge=1, description="max_tokens of chat completions; unset: the server's."
    )
    mllm_temperature: float | None = Field(
        default=None, ge=0, le=2, description="Sampling temperature; unset: the server's."
    )
    mllm_system_prompt: str = Field(
        default="",
        description="System message sent first in every chat; empty sends none (the mllm's "
        "chat template may carry its own, as LLMGA's llava_llama_2 does).",
    )
    chat_history_messages: int = Field(
        default=20, ge=0, description="How many earlier messages (user + assistant) go to the mllm."
    )
    refine_template: str = Field(
        default="Please generate an image: {prompt}",
        description="Chat message that asks the mllm to refine an images prompt ({prompt}).",
    )

    # The chat-or-image router and the mllm's protocol (docs/router.md).
    mllm_protocol: Literal["llmga", "plain"] = Field(
        default="llmga",
        description="How the mllm asks for images: `llmga`, in <gen_image> blocks of its "
        "replies (LLMGA checkpoints); `plain`, never (any chat model): the router decides "
        "whether a chat turn generates, and the mllm is then asked for the prompt alone.",
    )
    prompt_instruction: str = Field(
        default=DEFAULT_PROMPT_INSTRUCTION,
        min_length=1,
        description="plain protocol: the system instruction of a call whose reply is a "
        "generation prompt (a chat turn the router sends to generation, a description of "
        "an image, an edit's target caption, a refined prompt).",
    )
    plain_reply_template: str = Field(
        default="Generating an image: {prompt}",
        description="plain protocol: the reply shown for a chat turn that generates ({prompt}).",
    )
    router_guard: bool = Field(
        default=False,
        description="llmga protocol: check the mllm against the router. A turn the router "
        "calls chat by at least LLMGA_ROUTER_CHAT_MARGIN starts no job even if the reply has "
        "generation blocks; a turn it calls generate whose reply has none is asked once more.",
    )
    router_chat_margin: float = Field(
        default=2.0,
        ge=0,
        description="How clearly (log-odds of generate over chat, at most minus this) the "
        "router must call a turn chat for the guard to drop its generation blocks.",
    )
    router_reask_message: str = Field(
        default="Please generate that image now: write its detailed description in the "
        "form <gen_image> DETAILED DESCRIPTION </gen_image>.",
        min_length=1,
        description="llmga protocol with the guard: the message of the one re-ask.",
    )
    router_model_path: str = Field(
        default="",
        description="The router's model file (JSON, written by `llmga-router train`); "
        "empty: the one shipped with the gateway.",
    )

    # Limits. Every one is documented in docs/api.md and the OpenAPI descriptions.
    max_message_chars: int = Field(default=4000, ge=1, description="Longest chat message.")
    max_prompt_chars: int = Field(
        default=4000, ge=1, description="Longest prompt / negative prompt."
    )
    max_upload_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="Largest decoded image upload (bytes)."
    )
    max_request_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body (bytes); base64 makes images 4/3 larger.",
    )
    max_image_pixels: int = Field(
        default=4096 * 4096, ge=1, description="Most pixels (width x height) of an uploaded image."
    )
    max_image_side: int = Field(
        default=8192, ge=1, description="Longest side of an uploaded image."
    )
    max_n: int = Field(default=4, ge=1, description="Most images per job.")
    max_steps: int = Field(default=150, ge=1, description="Most denoising steps.")
    min_size: int = Field(default=64, ge=SIZE_MULTIPLE, description="Smallest width / height.")
    max_size: int = Field(default=2048, ge=SIZE_MULTIPLE, description="Largest width / height.")

    # Job control (docs/api.md "Waiting", "Events", "Idempotency").
    max_wait_s: int = Field(
        default=60,
        ge=0,
        description="Longest wait a client may ask for (`Prefer: wait=N`, `?wait=N`).",
    )
    openai_images_wait_s: int = Field(
        default=120,
        ge=1,
        le=600,
        description="OpenAI's Images API (`POST /v1/images/generations|edits|variations`) "
        "answers with the images, so it waits for its job at most this long; after that "
        "it answers 504 `job_timeout` naming the job, which keeps running.",
    )
    job_events_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="Waits and event streams re-read the job at least this often, so a "
        "missed pub/sub notification only delays them.",
    )
    job_events_keepalive_s: float = Field(
        default=15.0,
        gt=0,
        description="Interval of the `: keep-alive` comments (pings) of event streams (job "
        "events, streamed chat), so proxies keep them open.",
    )
    event_stream_max_s: float = Field(
        default=1800.0,
        gt=0,
        description="Longest an event stream (job events, streamed chat) stays open; it then "
        "ends with a comment saying why, and a job's client reconnects.",
    )
    idempotency_ttl_s: int = Field(
        default=24 * 3600,
        gt=0,
        description="How long a response is kept for replay under its Idempotency-Key.",
    )

    worker_max_age_s: float = Field(
        default=30.0, gt=0, description="A worker counts as live if it heartbeated this recently."
    )

    # Backpressure and retries (docs/api.md "Backpressure and retries").
    max_queued_jobs: int = Field(
        default=1000,
        ge=1,
        description="Most jobs waiting or running in the queue; more submissions get 429.",
    )
    queue_depth_refresh_s: float = Field(
        default=0.1,
        ge=0,
        le=5,
        description="How old the queue depth that admits a job may be: it is read from the "
        "broker at most this often (one read shared by the requests checking meanwhile), and "
        "the jobs this process admitted since are added to it. 0: read for every request.",
    )
    job_duration_estimate_s: float = Field(
        default=10.0,
        gt=0,
        description="The run time assumed per job for a queued job's `estimated_start_s` "
        "when the tenant has no recent succeeded job to measure it from.",
    )
    queue_full_retry_after_s: int = Field(
        default=10, ge=1, description="Retry-After of a 429 answered because the queue is full."
    )
    upstream_retry_after_s: int = Field(
        default=5, ge=1, description="Retry-After of a 503/504 (mllm, Redis or broker down)."
    )
    shutdown_timeout_s: int = Field(
        default=150,
        ge=1,
        description="On SIGTERM, how long in-flight requests may take to finish (default: "
        "longer than an mllm call).",
    )

    # Webhooks (docs/api.md "Webhooks"). Off until a host is allow-listed.
    webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts webhook URLs may point to (`hooks.example.com`, "
        "or `*.example.com` for its subdomains), for every tenant; each tenant may add its "
        "own (`llmga-keys webhook-hosts`). Empty: webhooks are off (422).",
    )
    webhook_allow_http: bool = Field(
        default=False, description="Also accept `http://` webhook URLs (default: https only)."
    )
    webhook_rotation_grace_s: float = Field(
        default=86400.0,
        ge=0,
        description="After `llmga-keys webhook-secret --rotate`, how long deliveries are "
        "signed with the tenant's previous secret too (default: 24 h).",
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, description="Deliveries tried per event before it is given up."
    )
    webhook_backoff_base_s: float = Field(
        default=1.0, gt=0, description="Delay before the 2nd attempt; doubles per attempt."
    )
    webhook_backoff_max_s: float = Field(
        default=300.0, gt=0, description="Longest delay between two attempts."
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="Timeout of one delivery (connect + answer)."
    )
    webhook_reclaim_idle_s: float = Field(
        default=60.0,
        gt=0,
        description="An event a dispatcher has not touched for this long (it died) is "
        "taken over by another dispatcher.",
    )

    # Rate limits and quotas (docs/api.md "Rate limits and quotas"); 0 = off.
    rate_limit_requests: int = Field(
        default=0,
        ge=0,
        description="Requests per API key (auth off: per tenant) per rate_limit_window_s; "
        "0: unlimited.",
    )
    rate_limit_window_s: float = Field(
        default=60.0, gt=0, description="Window of rate_limit_requests (seconds)."
    )
    quota_images_per_day: int = Field(
        default=0, ge=0, description="Images a tenant may queue per UTC day; 0: unlimited."
    )

    @property
    def cors_origin_list(self) -> list[str]:
        """`cors_origins` as a list (trailing slashes dropped: an Origin has none)."""
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def url_signing_enabled(self) -> bool:
        """Whether image URLs and event-stream tokens are signed."""
        return bool(self.url_signing_secret.get_secret_value())

    @property
    def webhooks_enabled(self) -> bool:
        """Whether any webhook URL can be accepted (some host is allow-listed)."""
        return bool(self.webhook_host_patterns)

    @property
    def webhook_host_patterns(self) -> tuple[str, ...]:
        """`webhook_allowed_hosts` as lower-case patterns."""
        return tuple(
            host.strip().lower() for host in self.webhook_allowed_hosts.split(",") if host.strip()
        )

    @model_validator(mode="after")
    def _public_base_url_is_absolute(self) -> GatewaySettings:
        url = self.public_base_url
        if url and not (url.startswith(("https://", "http://")) and "?" not in url):
            raise ValueError(
                f"LLMGA_PUBLIC_BASE_URL must be an http(s):// URL without a query, not {url!r}"
            )
        return self

    @model_validator(mode="after")
    def _signing_secret_is_long_enough(self) -> GatewaySettings:
        secret = self.url_signing_secret.get_secret_value()
        if secret and len(secret) < MIN_SIGNING_SECRET_CHARS:
            raise ValueError(
                f"LLMGA_URL_SIGNING_SECRET must have at least {MIN_SIGNING_SECRET_CHARS} "
                "characters (e.g. `openssl rand -hex 32`)"
            )
        return self


def load_settings() -> GatewaySettings:
    """Read the settings from the environment."""
    # mypy sees StateSettings' positional Field defaults as required arguments (it does
    # not run the pydantic plugin); they all have defaults, filled from the environment.
    return GatewaySettings()
