"""HTTP concerns, the same for every API area: request ids, body size, API keys, rate
limits, backpressure, idempotency, waits, event streams, error bodies and responses."""
