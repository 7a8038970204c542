"""The servers benchmarks/bench_gateway.py measures besides `python -m services.gateway`,
served by uvicorn exactly as services/gateway/__main__.py serves the gateway (factory,
proxy headers, the project's logging, graceful shutdown), on LLMGA_GATEWAY_HOST/PORT:

    python -m benchmarks.bench_apps bare                  # the baseline
    python -m benchmarks.bench_apps gateway --workers 2   # the gateway, several processes

- `bare`: a FastAPI app with one `async def` endpoint, `POST /v1/images`, that parses the
  JSON body and does one `redis.asyncio` SET of a uuid key under `LLMGA_KEY_PREFIX` (the
  least a job submission must do), and `GET /healthz`.
- `gateway`: `services.gateway.app:create_app`. Its factory here also configures logging,
  because with `--workers` above 1 uvicorn builds the app in fresh processes that would
  otherwise drop the access log the real gateway writes.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Request, status

from services.common.logs import configure_logging
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings, load_settings

BARE_KEY_TTL_S = 3600  # the benchmark deletes its keys; the TTL covers a killed run


def bare_app() -> FastAPI:
    """The baseline: parse the body, one SET, answer 202 with the key's id."""
    settings = load_settings()
    configure_logging("bare", settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = aioredis.Redis.from_url(settings.redis_url)
        app.state.redis = client
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(title="bare baseline", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/images", status_code=status.HTTP_202_ACCEPTED)
    async def create_images(body: dict[str, Any], request: Request) -> dict[str, str]:
        job_id = uuid.uuid4().hex
        key = f"{settings.key_prefix}:bare:{job_id}"
        await request.app.state.redis.set(key, b"queued", ex=BARE_KEY_TTL_S)
        return {"id": job_id, "status": "queued"}

    return app


def gateway_app() -> FastAPI:
    """The gateway's app, with the logging `python -m services.gateway` sets up."""
    settings = load_settings()
    configure_logging("gateway", settings.log_format)
    return create_app(settings)


FACTORIES = {
    "bare": "benchmarks.bench_apps:bare_app",
    "gateway": "benchmarks.bench_apps:gateway_app",
}


def serve(factory: str, workers: int, settings: GatewaySettings) -> None:
    """uvicorn with the options of services/gateway/__main__.py, and `workers` processes."""
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        proxy_headers=True,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


def main() -> None:
    """Command line: serve one of FACTORIES."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("app", choices=sorted(FACTORIES))
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    settings = load_settings()
    configure_logging(args.app, settings.log_format)  # the supervisor's own lines
    serve(FACTORIES[args.app], args.workers, settings)


if __name__ == "__main__":
    main()
