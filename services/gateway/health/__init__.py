"""Health: liveness, readiness and metrics."""
