"""The Redis key schema (docs/redis.md). Every key of tenant data carries the tenant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Builds keys under one prefix, so deployments and test runs never collide."""

    prefix: str = "llmga"

    def job(self, tenant: str, job_id: str) -> str:
        return f"{self.prefix}:{tenant}:job:{job_id}"

    def job_events(self, tenant: str, job_id: str) -> str:
        """Pub/sub channel: a notification after every change of the job's record."""
        return f"{self.prefix}:{tenant}:job-events:{job_id}"

    def job_previews(self, tenant: str, job_id: str) -> str:
        """List: the job's previews while it denoises, oldest first (JSON entries,
        services/common/job_previews.py); its TTL the preview TTL from the newest."""
        return f"{self.prefix}:{tenant}:job-previews:{job_id}"

    def job_index(self, tenant: str) -> str:
        """Sorted set: the tenant's job ids scored by creation time (Unix seconds), for
        listing; written with the record, its TTL the job TTL from the newest job."""
        return f"{self.prefix}:{tenant}:jobs"

    def conversation(self, tenant: str, conversation_id: str) -> str:
        return f"{self.prefix}:{tenant}:conv:{conversation_id}"

    def conversation_index(self, tenant: str) -> str:
        """Sorted set: the tenant's conversation ids scored by their last update (Unix
        seconds), for listing; its TTL the conversation TTL from the latest turn."""
        return f"{self.prefix}:{tenant}:convs"

    def blob_refs(self, tenant: str, blob_id: str) -> str:
        """Set of the conversations whose turns refer to an uploaded image."""
        return f"{self.prefix}:{tenant}:blobrefs:{blob_id}"

    def idempotency(self, tenant: str, key: str) -> str:
        """A client's `Idempotency-Key` and the response it was answered with."""
        return f"{self.prefix}:{tenant}:idem:{key}"

    def blob(self, tenant: str, blob_id: str) -> str:
        return f"{self.prefix}:{tenant}:blob:{blob_id}"

    def webhook_outbox(self) -> str:
        """Stream: job state changes a webhook asked for (services/common/webhook_outbox.py),
        delivered by the gateway's dispatcher through the consumer group `webhooks`."""
        return f"{self.prefix}:webhooks:outbox"

    def webhook_dead_letters(self) -> str:
        """Stream (capped): webhook events given up after their last attempt."""
        return f"{self.prefix}:webhooks:dead"

    def webhook_secret(self, tenant: str) -> str:
        """Hash `{current, previous, rotated_at}`: the secrets that sign the tenant's webhook
        deliveries (`whsec_...`); `previous` signs too for LLMGA_WEBHOOK_ROTATION_GRACE_S
        after `rotated_at` (Unix seconds). Created on first use (services/gateway/webhooks/
        tenants.py)."""
        return f"{self.prefix}:{tenant}:webhook-secret"

    def webhook_hosts(self, tenant: str) -> str:
        """Set: hosts (or `*.domain` patterns) the tenant's webhook URLs may use on top of
        LLMGA_WEBHOOK_ALLOWED_HOSTS (`llmga-keys webhook-hosts`)."""
        return f"{self.prefix}:{tenant}:webhook-hosts"

    def apikey_limits(self, key_digest: str) -> str:
        """Hash `{requests, window_ms}`: an API key's own request rate limit, if it has one
        (by the key's SHA-256, as `{prefix}:apikey:{sha256}`)."""
        return f"{self.prefix}:apikey-limits:{key_digest}"

    def rate_limit(self, identity: str) -> str:
        """GCRA state of one API key (or tenant) for the request-rate limit."""
        return f"{self.prefix}:ratelimit:{identity}"

    def image_quota(self, tenant: str, day: str) -> str:
        """Images queued by a tenant on one UTC day (`YYYYMMDD`)."""
        return f"{self.prefix}:{tenant}:quota:images:{day}"

    def tenant_in_flight(self, tenant: str) -> str:
        """Set (on the broker): the tenant's job ids admitted to the queue and not yet
        released, queued or running (services/common/tenant_slots.py); its TTL the job
        TTL from the newest admission."""
        return f"{self.prefix}:{tenant}:in-flight"

    def tenant_held(self, tenant: str) -> str:
        """List (on the broker): the tenant's job ids held back beyond its in-flight cap,
        oldest first; its TTL the job TTL from the newest."""
        return f"{self.prefix}:{tenant}:held"

    def tenant_held_messages(self, tenant: str) -> str:
        """Hash (on the broker): held job id -> its task message, pushed unchanged onto the
        queue when the job is admitted."""
        return f"{self.prefix}:{tenant}:held-messages"

    def tenants_holding(self) -> str:
        """Set (on the broker): the tenants with held jobs (their held lists are summed
        into the queue depth)."""
        return f"{self.prefix}:tenants-holding"

    def workers(self) -> str:
        """Sorted set: worker name -> last heartbeat (Unix seconds)."""
        return f"{self.prefix}:workers"

    def worker_info(self, worker: str) -> str:
        return f"{self.prefix}:worker:{worker}"
