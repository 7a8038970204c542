"""`python -m services.gateway`: serve the gateway with uvicorn on the configured address."""

from __future__ import annotations

import uvicorn

from services.common.logs import configure_logging
from services.gateway.settings import load_settings


def main() -> None:
    """Run uvicorn with the app factory and the settings' host and port."""
    settings = load_settings()
    configure_logging("gateway", settings.log_format)
    uvicorn.run(
        "services.gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        proxy_headers=True,
        log_config=None,  # keep configure_logging's handler (uvicorn's loggers propagate)
        # SIGTERM: stop accepting, let in-flight requests finish (up to this long), then
        # run the lifespan shutdown. Streams and waits end at their own bounds.
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


if __name__ == "__main__":
    main()
