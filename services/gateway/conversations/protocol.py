"""Response schemas of the conversations area."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from services.gateway.protocol import TaskName


class TurnView(BaseModel):
    """One turn of a conversation."""

    role: Literal["user", "assistant"]
    text: str = Field(description="User message, or the reply shown (tags removed).")
    image_ids: list[str]
    generation_prompts: list[str]
    job_ids: list[str] = Field(description="Jobs this turn started (GET /v1/jobs/{id}).")
    source_image_id: str | None = Field(
        default=None,
        description="The image this turn (and its pair) started from: inpaint, outpaint, "
        "similar; null for t2i and plain chat.",
    )
    created_at: float = Field(description="Unix seconds.")


class LineageStep(BaseModel):
    """One link of an image's lineage: the image, the job that made it, its source."""

    image_id: str
    job_id: str | None = Field(
        description="The job of this conversation that produced the image; null for an "
        "image no job of it produced (an upload: the root), or whose job expired."
    )
    task: TaskName | None = Field(description="That job's task ('similar' jobs show 't2i').")
    source_image_id: str | None = Field(
        description="The image that job started from (the next step); null for t2i."
    )
    turn_index: int | None = Field(
        description="Index in `turns` of the assistant turn that started the job."
    )


class ConversationView(BaseModel):
    """A conversation; it expires LLMGA_CONVERSATION_TTL_S after its last turn."""

    id: str
    created_at: float
    updated_at: float
    turns: list[TurnView]
    lineage: list[LineageStep] | None = Field(
        default=None,
        description="Only with `?image_id=`: that image's chain back to the first turn, "
        "the image itself first, each step's source next, ending at an image made without "
        "a source (t2i) or not made by this conversation (an upload).",
    )


class ConversationSummary(BaseModel):
    """A conversation in a listing (its turns: GET /v1/conversations/{id})."""

    id: str
    created_at: float = Field(description="Unix seconds.")
    updated_at: float = Field(description="Unix seconds: the latest turn.")
    turn_count: int = Field(description="Turns so far (user and assistant).")
    title: str = Field(
        description="The first user message, cut at 80 characters ('' if there is none)."
    )


class ConversationList(BaseModel):
    """A page of the tenant's conversations, most recently updated first."""

    data: list[ConversationSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null after the last page. A page "
        "may hold fewer than `limit` items (expired conversations) while this is set."
    )
