"""Unguessable identifiers with a readable kind prefix."""

import secrets


def new_id(kind: str) -> str:
    """e.g. new_id("job") -> "job_3q2v...": 128 random bits, URL-safe."""
    return f"{kind}_{secrets.token_hex(16)}"
