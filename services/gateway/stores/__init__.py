"""State in Redis that is the gateway's own: conversations, job submission (record and
queue message in one MULTI), and job events (pub/sub with a polling fallback)."""
