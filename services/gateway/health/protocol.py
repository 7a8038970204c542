"""Response schemas of the health area."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class DependencyCheck(BaseModel):
    """The state of one dependency."""

    ok: bool
    detail: str = Field(description="What was checked, or what went wrong.")


class Readiness(BaseModel):
    """Whether the gateway can serve, dependency by dependency."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, DependencyCheck] = Field(
        description="redis (PING), mllm (GET <base>/models), workers (live heartbeats)."
    )
