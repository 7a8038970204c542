"""Webhooks: per-job notifications of state changes, signed and retried (docs/api.md)."""
