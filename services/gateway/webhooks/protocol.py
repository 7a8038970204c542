"""The `webhook` field of `POST /v1/images` and `POST /v1/chat`, and the body delivered."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.jobs.protocol import JobView

WebhookEventName = Literal["started", "succeeded", "failed", "canceled"]

MAX_WEBHOOK_URL_CHARS = 2048


class WebhookInput(BaseModel):
    """Where to POST signed notifications of the job's state changes (docs/api.md
    "Webhooks")."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_WEBHOOK_URL_CHARS,
        description="https URL (http only if LLMGA_WEBHOOK_ALLOW_HTTP) whose host is in "
        "LLMGA_WEBHOOK_ALLOWED_HOSTS or in the tenant's webhook hosts; otherwise 422. At "
        "most 2048 characters. Deliveries are signed per Standard Webhooks with the "
        "tenant's secret (`webhook-id`, `webhook-timestamp`, `webhook-signature`).",
    )
    events: list[WebhookEventName] = Field(
        default_factory=list,
        max_length=4,
        description="Which changes to send: 'started', 'succeeded', 'failed', 'canceled'; "
        "empty: all of them.",
    )


class WebhookEvent(BaseModel):
    """The JSON body of one delivery."""

    id: str = Field(description="Event id (`evt_…`): the same on every retry; dedupe on it.")
    event: WebhookEventName
    occurred_at: float = Field(description="When the job changed (Unix seconds).")
    job: JobView = Field(description="The job as it was right after the change.")
