"""Response schemas of the conversations area."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TurnView(BaseModel):
    """One turn of a conversation."""

    role: Literal["user", "assistant"]
    text: str = Field(description="User message, or the reply shown (tags removed).")
    image_ids: list[str]
    generation_prompts: list[str]
    job_ids: list[str] = Field(description="Jobs this turn started (GET /v1/jobs/{id}).")
    created_at: float = Field(description="Unix seconds.")


class ConversationView(BaseModel):
    """A conversation; it expires LLMGA_CONVERSATION_TTL_S after its last turn."""

    id: str
    created_at: float
    updated_at: float
    turns: list[TurnView]
