"""The webhook outbox: the job state changes a webhook asked for, as entries of one Redis
Stream (`RedisKeys.webhook_outbox`).

`JobStore.update` appends an entry in the same MULTI as the record write that changed the
status, so an event exists exactly when its state change does (a crash between "write the
record" and "queue the notification" cannot lose one). The gateway's dispatcher
(services/gateway/webhooks/dispatcher.py) reads the stream through a consumer group and
delivers each entry; the entry stays pending until it is delivered or given up, so a
dispatcher that dies leaves its entries for another one to reclaim.

Each entry carries the record as it was at the change, so a `started` delivery that is
retried after the job succeeded still describes the job as it was when it started.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.contract import JobRecord, JobStatus
from services.common.ids import new_id

# The event of each status a job can change to (the names a webhook may ask for: the
# gateway's WebhookEventName).
_EVENT_OF_STATUS = {
    JobStatus.JOB_STATUS_RUNNING: "started",
    JobStatus.JOB_STATUS_SUCCEEDED: "succeeded",
    JobStatus.JOB_STATUS_FAILED: "failed",
    JobStatus.JOB_STATUS_CANCELED: "canceled",
}


def transition_event(before: int, record: JobRecord) -> str | None:
    """The webhook event of a write that took the job from status `before` to
    `record.status`; None when the status did not change, the job has no webhook, or its
    webhook did not ask for this event (an empty `events` list asks for all)."""
    webhook = record.request.webhook
    if record.status == before or not webhook.url:
        return None
    event = _EVENT_OF_STATUS.get(record.status)  # type: ignore[call-overload]
    if event is None or (webhook.events and event not in webhook.events):
        return None
    return event


@dataclass(frozen=True)
class OutboxEntry:
    """One event to deliver: its id (the receiver's dedupe key, the same on every
    attempt), its name, when it happened and the job record as it was then."""

    event_id: str
    event: str
    occurred_at: float
    record: JobRecord

    @classmethod
    def new(cls, event: str, record: JobRecord) -> OutboxEntry:
        """An entry with a fresh event id, stamped now."""
        return cls(new_id("evt"), event, time.time(), record)

    def fields(self) -> dict[str, bytes]:
        """The stream entry's fields (XADD)."""
        return {
            "event_id": self.event_id.encode(),
            "event": self.event.encode(),
            "occurred_at": repr(self.occurred_at).encode(),
            "record": self.record.SerializeToString(),
        }

    @classmethod
    def parse(cls, fields: Mapping[bytes, bytes]) -> OutboxEntry:
        """Inverse of `fields` (raises KeyError / ValueError on a malformed entry)."""
        record = JobRecord()
        record.ParseFromString(fields[b"record"])
        return cls(
            event_id=fields[b"event_id"].decode(),
            event=fields[b"event"].decode(),
            occurred_at=float(fields[b"occurred_at"]),
            record=record,
        )
