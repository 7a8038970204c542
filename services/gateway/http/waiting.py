"""Bounded waits: `Prefer: wait=N` (RFC 7240, as Replicate uses it) or `?wait=N` ask the
gateway to answer as soon as the job ends, or after N seconds at most.

N is a whole number of seconds, 0..LLMGA_MAX_WAIT_S. A value over the cap is refused (422
naming `wait` or `Prefer`) rather than silently shortened, so a client never believes it
waited longer than it did. The query parameter wins when both are given; other
preferences in `Prefer` are ignored, as RFC 7240 asks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Response

from services.gateway.deps import StateDep
from services.gateway.http.errors import invalid

PREFER_FIELD = "Prefer"


def parse_prefer_wait(prefer: str) -> str | None:
    """The raw value of the `wait` preference in a Prefer header, if any."""
    for preference in prefer.split(","):
        # A preference may carry parameters after ';' (none are defined for wait).
        name, _, value = preference.split(";")[0].strip().partition("=")
        if name.strip().lower() == "wait":
            return value.strip().strip('"')
    return None


async def wait_seconds(
    state: StateDep,
    wait: Annotated[
        int | None,
        Query(
            ge=0,
            description="Answer when the job ends or after this many seconds, at most "
            "LLMGA_MAX_WAIT_S (60). Same as the header `Prefer: wait=N`; this wins if both.",
        ),
    ] = None,
    prefer: Annotated[
        str | None,
        Header(description="RFC 7240 preferences; `wait=N` asks for a bounded wait (see `wait`)."),
    ] = None,
) -> int | None:
    """FastAPI dependency: the requested wait in seconds, or None; 422 over the cap."""
    limit = state.settings.max_wait_s
    field = "wait"
    if wait is None and prefer is not None:
        raw = parse_prefer_wait(prefer)
        if raw is None:
            return None
        field = PREFER_FIELD
        if not raw.isdigit():
            raise invalid(f"Prefer: wait must be a whole number of seconds, not {raw!r}", field)
        wait = int(raw)
    if wait is not None and wait > limit:
        raise invalid(f"{field}: wait must be at most {limit} seconds, not {wait}", field)
    return wait


WaitSeconds = Annotated[int | None, Depends(wait_seconds)]


def mark_applied(response: Response, wait: int | None) -> None:
    """Tell the client its wait was honoured (`Preference-Applied: wait=N`)."""
    if wait is not None:
        response.headers["Preference-Applied"] = f"wait={wait}"
