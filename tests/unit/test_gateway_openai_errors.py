"""OpenAI's error body on the OpenAI-compatible routes only (openai_chat/errors.py), and
the in-band error of their streams."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.testclient import TestClient

from services.gateway.http.errors import error_body
from services.gateway.openai_chat.errors import OpenAIErrorMiddleware, openai_error_body
from services.gateway.openai_chat.serving import stream_error


def test_the_gateway_body_in_openai_shape() -> None:
    body = error_body("invalid_request", "n: too big", "n", details=[{"field": "n"}])
    assert openai_error_body(422, body) == {
        "error": {
            "message": "n: too big",
            "type": "invalid_request_error",
            "param": "n",
            "code": "invalid_request",
            "details": [{"field": "n"}],
        }
    }
    kinds = {
        status: openai_error_body(status, error_body("x", "y"))["error"]["type"]
        for status in (400, 401, 404, 409, 429, 500, 502, 503)
    }
    assert kinds == {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        409: "conflict_error",
        429: "rate_limit_error",
        500: "server_error",
        502: "server_error",
        503: "server_error",
    }


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse(
            error_body("queue_full", "full"), status_code=429, headers={"Retry-After": "10"}
        )

    @app.get("/v1/jobs")
    async def jobs() -> JSONResponse:
        return JSONResponse(error_body("queue_full", "full"), status_code=429)

    @app.post("/v1/chat/completions")
    async def ok() -> PlainTextResponse:
        return PlainTextResponse("fine")

    @app.post("/v1/images/generations")
    async def broken() -> PlainTextResponse:
        raise RuntimeError("a bug")

    @app.post("/v1/images")
    async def broken_elsewhere() -> PlainTextResponse:
        raise RuntimeError("a bug")

    app.add_middleware(OpenAIErrorMiddleware)
    return app


def test_the_middleware_rewrites_errors_of_its_routes_only() -> None:
    with TestClient(_app()) as client:
        response = client.get("/v1/models")
        assert response.status_code == 429 and response.headers["Retry-After"] == "10"
        assert response.json() == {
            "error": {
                "message": "full",
                "type": "rate_limit_error",
                "param": None,
                "code": "queue_full",
            }
        }
        assert int(response.headers["content-length"]) == len(response.content)
        assert client.get("/v1/jobs").json() == error_body("queue_full", "full")
        assert client.post("/v1/chat/completions").text == "fine"


def test_an_unhandled_error_of_its_routes_is_a_500_in_openai_shape() -> None:
    with TestClient(_app(), raise_server_exceptions=False) as client:
        response = client.post("/v1/images/generations")
        assert response.status_code == 500
        assert response.json() == {
            "error": {
                "message": "internal server error",
                "type": "server_error",
                "param": None,
                "code": "internal_error",
            }
        }
        # Elsewhere Starlette's own 500 stands (the gateway's handler words it there).
        assert client.post("/v1/images").status_code == 500


def test_a_stream_error_is_a_data_event_the_openai_package_raises_on() -> None:
    event = stream_error(503, error_body("service_unavailable", "down"))
    assert event.event is None
    assert isinstance(event.data, str)
    assert json.loads(event.data)["error"] == {
        "message": "down",
        "type": "server_error",
        "param": None,
        "code": "service_unavailable",
    }
