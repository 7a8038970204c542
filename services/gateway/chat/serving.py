"""Logic of `POST /v1/chat`: history -> mllm -> generation prompts -> jobs -> stored turns.

Nothing is written before the mllm has answered: the user turn is stored only together
with the reply, so a failed mllm call (502/503/504) leaves the conversation unchanged and
the client can simply retry.
"""

from __future__ import annotations

import time

from services.common.contract import Task
from services.common.ids import new_id
from services.gateway.assistant import ask_mllm
from services.gateway.chat.protocol import ChatRequest, ChatResponse, UsageView
from services.gateway.conversation_store import StoredConversation, StoredTurn
from services.gateway.errors import invalid, not_found, not_implemented
from services.gateway.generation_tags import parse_reply
from services.gateway.job_submitter import checked_params
from services.gateway.jobs.serving import job_view
from services.gateway.mllm_client import ChatMessage
from services.gateway.state import GatewayState
from services.gateway.uploads import decode_image


def history_messages(conversation: StoredConversation | None, limit: int) -> list[ChatMessage]:
    """The last `limit` earlier turns as OpenAI messages; assistant turns are the raw
    replies (with their tags), exactly as the model produced them."""
    if conversation is None or limit == 0:
        return []
    messages = [
        ChatMessage(turn.role, turn.raw if turn.role == "assistant" and turn.raw else turn.text)
        for turn in conversation.turns
    ]
    messages = messages[-limit:]
    # A history must not start with an assistant turn (chat templates reject that).
    while messages and messages[0].role != "user":
        messages.pop(0)
    return messages


def _check_images(state: GatewayState, tenant: str, request: ChatRequest) -> None:
    """Input images are checked (413/422 for a bad one, 404 for an unknown id) before a
    task is refused as not implemented: bad input is the client's error, whatever the task.
    Nothing is stored."""
    for index, image in enumerate(request.images):
        field = f"images[{index}]"
        if image.b64 is not None:
            decode_image(image.b64, f"{field}.b64", state.image_limits)
        elif image.id is not None and state.blobs.get(tenant, image.id) is None:
            raise not_found(f"{field}.id: image {image.id!r} not found")


def _check_supported(request: ChatRequest) -> None:
    """501 for what this version does not serve yet, before anything is stored."""
    task = request.task or ("similar" if request.images else "t2i")
    if task != "t2i":
        raise not_implemented(f"task {task!r} is not implemented yet", "task")
    if request.images:
        raise not_implemented("chat with input images is not implemented yet", "images")


def chat_turn(state: GatewayState, tenant: str, request: ChatRequest) -> ChatResponse:
    """Answer one user turn and start one t2i job per generation prompt in the reply."""
    settings = state.settings
    if len(request.message) > settings.max_message_chars:
        raise invalid(f"message is longer than {settings.max_message_chars} characters", "message")
    params = checked_params(request, settings)
    _check_images(state, tenant, request)
    _check_supported(request)

    conversation: StoredConversation | None = None
    if request.conversation_id is not None:
        conversation = state.conversations.get(tenant, request.conversation_id)
        if conversation is None:
            raise not_found(f"conversation {request.conversation_id!r} not found")
    conversation_id = request.conversation_id or new_id("conv")

    user_at = time.time()
    messages = history_messages(conversation, settings.chat_history_messages)
    messages.append(ChatMessage("user", request.message))
    result = ask_mllm(state, messages)
    parsed = parse_reply(result.content)

    records = [
        state.submitter.submit(
            tenant=tenant,
            task=Task.TASK_T2I,
            prompt=prompt,
            params=params,
            conversation_id=conversation_id,
        )
        for prompt in parsed.prompts
    ]
    job_ids = [record.request.job_id for record in records]
    state.conversations.append(
        tenant,
        conversation_id,
        [
            StoredTurn(role="user", text=request.message, created_at=user_at),
            StoredTurn(
                role="assistant",
                text=parsed.text,
                raw=result.content,
                generation_prompts=parsed.prompts,
                job_ids=job_ids,
                created_at=time.time(),
            ),
        ],
    )
    return ChatResponse(
        conversation_id=conversation_id,
        reply=parsed.text,
        generation_prompts=parsed.prompts,
        jobs=[job_view(record) for record in records],
        usage=UsageView(
            prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens
        ),
    )
