"""Logic of `POST /v1/chat`: history -> route (chat or image) -> mllm -> generation
prompts -> jobs -> stored turns. Whether the turn generates, and what that does to the
mllm's call and reply, is turn_routing.py's.

Nothing is written before the mllm has answered: the user turn is stored only together
with the reply, so a failed mllm call (502/503/504) leaves the conversation unchanged and
the client can simply retry. A streamed turn (`stream: true`) is the same turn: its jobs
are created and its turns stored once the whole reply has arrived.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from typing import Any

from sse_starlette import ServerSentEvent

from services.common.contract import Webhook
from services.common.ids import new_id
from services.gateway.chat.protocol import (
    ChatCompletionChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    ChunkDelta,
    UsageView,
)
from services.gateway.chat.turn_routing import (
    TurnRoute,
    route_turn,
    routed_reply,
    writes_prompt_only,
)
from services.gateway.conversations.lineage import latest_result_image
from services.gateway.http.errors import (
    ApiError,
    error_body,
    invalid,
    mllm_error_status,
    not_found,
)
from services.gateway.jobs.serving import job_view
from services.gateway.mllm.assistant import (
    ask_mllm,
    prompt_instruction,
    record_mllm_failure,
    record_mllm_success,
    start_mllm_stream,
)
from services.gateway.mllm.client import ChatMessage, ChatResult, ChatStream, MllmError
from services.gateway.mllm.generation_tags import VisibleTextFilter, tidy_text
from services.gateway.protocol import ImageInput
from services.gateway.state import GatewayState
from services.gateway.stores.conversations import StoredConversation, StoredTurn
from services.gateway.stores.job_submitter import GenerationParams, checked_params
from services.gateway.tasks import edit
from services.gateway.tasks.base import CheckedInputs, ImageTask, MllmRole, TaskArgs
from services.gateway.tasks.inputs import TaskInputs
from services.gateway.tasks.table import TASKS, check_task_fields
from services.gateway.webhooks.targets import accepted_webhook

logger = logging.getLogger(__name__)


def history_messages(conversation: StoredConversation | None, limit: int) -> list[ChatMessage]:
    """The last `limit` earlier turns as OpenAI messages; assistant turns are the raw
    replies (with their tags), exactly as the model produced them."""
    if conversation is None:
        return []
    return trimmed_history(
        [
            ChatMessage(turn.role, turn.raw if turn.role == "assistant" and turn.raw else turn.text)
            for turn in conversation.turns
        ],
        limit,
    )


def trimmed_history(messages: list[ChatMessage], limit: int) -> list[ChatMessage]:
    """The last `limit` of `messages`, starting with a user message."""
    if limit == 0:
        return []
    messages = messages[-limit:]
    # A history must not start with an assistant turn (chat templates reject that).
    while messages and messages[0].role != "user":
        messages.pop(0)
    return messages


def turn_task(request: ChatRequest) -> str:
    """The turn's task: as named, or inferred from the inputs (a mask: inpaint, an
    outpaint extension: outpaint, edit_method: edit, control: controlnet, images alone:
    similar, nothing: t2i); whether the inputs are complete is checked afterwards
    (`check_task_fields`). An instruction is never taken for an edit by its wording:
    "make it night" next to an image could as well ask for a similar image at night."""
    if request.task is not None:
        return request.task
    if request.mask is not None:
        return "inpaint"
    if request.outpaint is not None:
        return "outpaint"
    if request.edit_method is not None:
        return "edit"
    if request.control is not None:
        return "controlnet"
    return "similar" if request.images else "t2i"


async def turn_source(
    state: GatewayState,
    tenant: str,
    request: ChatRequest,
    task: ImageTask,
    conversation: StoredConversation | None,
) -> tuple[ImageInput | None, str]:
    """The image the turn works on and the field to name in errors about it: `images[0]`,
    or (no `images`, an image task, in a conversation) the first image of the
    conversation's most recent succeeded job; 409 if none has succeeded yet."""
    if request.images:
        if len(request.images) > 1:
            raise invalid(
                f"{task.name} takes exactly one image, not {len(request.images)}", "images"
            )
        return request.images[0], "images[0]"
    if conversation is None or not task.works_on_latest_image:
        return None, "images"
    image_id = await latest_result_image(state, tenant, conversation)
    if image_id is None:
        raise ApiError(
            409,
            "no_result_image",
            f"{task.name} without `images` works on the conversation's latest result image, "
            "but no job of this conversation has succeeded yet; wait for a job to "
            "succeed or name the image in `images`",
            "images",
        )
    return ImageInput(id=image_id), "images (the conversation's latest result)"


async def check_turn_inputs(
    state: GatewayState,
    tenant: str,
    request: ChatRequest,
    conversation: StoredConversation | None,
) -> tuple[ImageTask, CheckedInputs | None]:
    """The turn's task and its checked image inputs (None for t2i). Fields that do not
    fit the task are 422 (so is a task chat does not serve: restore has no mllm step,
    POST /v1/images serves it); input images are checked (413/422 for a bad one, 404 for
    an unknown id). Nothing is stored."""
    name = turn_task(request)
    if TASKS[name].not_in_chat:
        raise invalid(TASKS[name].not_in_chat, "task")
    implicit = not request.images and conversation is not None and TASKS[name].works_on_latest_image
    task = check_task_fields(
        name,
        image_field="images",
        has_image=bool(request.images) or implicit,
        given={
            "mask": request.mask,
            "outpaint": request.outpaint,
            "strength": request.strength,
            "restore": request.restore,
            "edit_method": request.edit_method,
            "control": request.control,
        },
        width=request.width,
        height=request.height,
        n=request.n,
    )
    source, field_name = await turn_source(state, tenant, request, task, conversation)
    if source is None or task.prepare is None:
        return task, None
    args = TaskArgs(options=request, mask=request.mask, instruction=request.message)
    return task, await task.prepare(state, tenant, source, field_name, args)


@dataclass(frozen=True)
class PreparedTurn:
    """A checked user turn, ready for the mllm."""

    conversation_id: str
    messages: list[ChatMessage]
    params: GenerationParams
    user_at: float
    task: int
    # image tasks: checked, stored (once) with the turn; edit: with its source caption
    inputs: CheckedInputs | None
    # whether the turn generates (turn_routing.py)
    route: TurnRoute
    # every job of the turn notifies it (allow-listed before the mllm is asked)
    webhook: Webhook | None = None
    # added to the system message (plain protocol, a generating turn: write the prompt
    # alone, the reply is not shown)
    instruction: str | None = None

    @property
    def prompt_only(self) -> bool:
        """Whether the mllm's reply is a generation prompt rather than a reply to show."""
        return self.instruction is not None


async def prepare_turn(
    state: GatewayState,
    tenant: str,
    request: ChatRequest,
    history: list[ChatMessage] | None = None,
) -> PreparedTurn:
    """Check the request (4xx before anything is stored) and build the messages. The
    earlier messages are the stored conversation's (`conversation_id`), else `history`
    as given (the OpenAI dialect: the client sends the whole exchange), else none."""
    settings = state.settings
    if len(request.message) > settings.max_message_chars:
        raise invalid(f"message is longer than {settings.max_message_chars} characters", "message")
    params = checked_params(request, settings)
    webhook = await accepted_webhook(request.webhook, settings, state.redis, state.keys, tenant)

    conversation: StoredConversation | None = None
    if request.conversation_id is not None:
        conversation = await state.conversations.get(tenant, request.conversation_id)
        if conversation is None:
            raise not_found(f"conversation {request.conversation_id!r} not found")
    task, inputs = await check_turn_inputs(state, tenant, request, conversation)
    route = route_turn(state, request, task.name)
    # After validation, before the mllm is asked; one job's images: the reply may hold more.
    await state.quota.admit(tenant, params.n)
    if inputs is not None and inputs.output_size is not None:
        params = replace(params, width=inputs.output_size[0], height=inputs.output_size[1])
    if conversation is not None or history is None:
        messages = history_messages(conversation, settings.chat_history_messages)
    else:
        messages = list(history)
    # The current turn carries its image (inpaint/outpaint: masked, holes black); the
    # history stays text (images by id only).
    if task.mllm is MllmRole.CAPTIONS_IMAGE and inputs is not None:
        # The mllm describes the image first (the source caption), then answers the
        # message right after that description (tasks/edit.py); only the turn is stored.
        captioned = await edit.with_source_caption(state, inputs)
        inputs = captioned
        messages.extend(
            edit.target_caption_messages(
                await captioned.preview_data_uri(), captioned.source_caption, request.message
            )
        )
    else:
        images = (await inputs.preview_data_uri(),) if inputs is not None else ()
        messages.append(ChatMessage("user", request.message, image_urls=images))
    return PreparedTurn(
        conversation_id=request.conversation_id or new_id("conv"),
        messages=messages,
        params=params,
        user_at=time.time(),
        task=task.contract_task,
        inputs=inputs,
        route=route,
        webhook=webhook,
        instruction=prompt_instruction(state) if writes_prompt_only(settings, route) else None,
    )


async def complete_turn(
    state: GatewayState, tenant: str, request: ChatRequest, turn: PreparedTurn, result: ChatResult
) -> ChatResponse:
    """Route the reply (`routed_reply`: the guard, a re-ask, a plain-protocol prompt),
    then start one job of the turn's task per generation prompt (inpaint,
    outpaint, controlnet: each on the turn's image; edit: each prompt a target caption of
    the turn's image; similar: t2i jobs recording the image they describe; the image
    stored once) and store both turns with the source image."""
    reply = await routed_reply(state, turn.route, turn.messages, result)
    inputs: TaskInputs | None = None
    if turn.inputs is not None:
        inputs = await turn.inputs.store(state, tenant)
    records = [
        await state.submitter.submit(
            tenant=tenant,
            task=turn.task,
            prompt=prompt,
            params=turn.params,
            conversation_id=turn.conversation_id,
            inputs=inputs,
            webhook=turn.webhook,
        )
        for prompt in reply.prompts
    ]
    image_ids: list[str] = []
    source_image_id: str | None = None
    if inputs is not None:
        image_ids = [*inputs.input_image_ids, *filter(None, [inputs.mask_image_id])]
        source_image_id = inputs.input_image_ids[0]
    job_ids = [record.request.job_id for record in records]
    await state.conversations.append(
        tenant,
        turn.conversation_id,
        [
            StoredTurn(
                role="user",
                text=request.message,
                image_ids=image_ids,
                source_image_id=source_image_id,
                created_at=turn.user_at,
            ),
            StoredTurn(
                role="assistant",
                text=reply.text,
                raw=reply.raw,
                generation_prompts=reply.prompts,
                job_ids=job_ids,
                source_image_id=source_image_id,
                created_at=time.time(),
            ),
        ],
    )
    return ChatResponse(
        conversation_id=turn.conversation_id,
        reply=reply.text,
        generation_prompts=reply.prompts,
        jobs=[job_view(record, state.links(tenant)) for record in records],
        source_image_id=source_image_id,
        source_caption=turn.inputs.source_caption if turn.inputs is not None else None,
        usage=UsageView(
            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens
        ),
        finish_reason=result.finish_reason or "stop",
    )


async def chat_turn(
    state: GatewayState,
    tenant: str,
    request: ChatRequest,
    history: list[ChatMessage] | None = None,
) -> ChatResponse:
    """Answer one user turn and start one job per generation prompt in the reply."""
    turn = await prepare_turn(state, tenant, request, history)
    result = await ask_mllm(state, turn.messages, turn.instruction)
    return await complete_turn(state, tenant, request, turn, result)


def _sse_data(data: str, event: str | None = None) -> ServerSentEvent:
    """One server-sent event (lines end with LF alone)."""
    return ServerSentEvent(data=data, event=event, sep="\n")


def _result_events(last: ChatCompletionChunk, answer: ChatResponse) -> list[ServerSentEvent]:
    """POST /v1/chat: the last chunk (finish_reason), then `event: chat.result`."""
    return [
        _sse_data(last.model_dump_json()),
        _sse_data(answer.model_dump_json(), event="chat.result"),
    ]


def _error_event(status: int, body: dict[str, Any]) -> ServerSentEvent:
    """POST /v1/chat: a failure after the stream started, as `event: error`."""
    return _sse_data(json.dumps(body), event="error")


@dataclass(frozen=True)
class StreamStyle:
    """How a streamed turn ends, for each API dialect: the chunks of the visible reply
    are the same (`chat.completion.chunk`), the closing events and errors differ."""

    # the chunks' `model`; None: the mllm's
    model: str | None = None
    # the events after the reply, given its last chunk (finish_reason) and the answer
    # (jobs queued, turns stored); `data: [DONE]` follows
    closing: Callable[[ChatCompletionChunk, ChatResponse], list[ServerSentEvent]] = _result_events
    # a failure after the stream started, given its HTTP status and the gateway's body
    error: Callable[[int, dict[str, Any]], ServerSentEvent] = _error_event


async def start_chat_stream(
    state: GatewayState,
    tenant: str,
    request: ChatRequest,
    history: list[ChatMessage] | None = None,
    style: StreamStyle | None = None,
) -> AsyncGenerator[ServerSentEvent, None]:
    """Check the turn and start the mllm's stream; errors up to here are ordinary HTTP
    errors (4xx, 502/503/504). Returns the server-sent events of the turn."""
    turn = await prepare_turn(state, tenant, request, history)
    stream = await start_mllm_stream(state, turn.messages, turn.instruction)
    return _chat_events(state, tenant, request, turn, stream, style or StreamStyle())


async def _chat_events(
    state: GatewayState,
    tenant: str,
    request: ChatRequest,
    turn: PreparedTurn,
    stream: ChatStream,
    style: StreamStyle,
) -> AsyncGenerator[ServerSentEvent, None]:
    """Chunks of the visible reply as the mllm writes it, then the turn's result (jobs,
    stored turns) and `[DONE]`. A failure after the stream started is reported in band
    (the status line has been sent); nothing is stored then if the mllm failed."""
    chunk_id, created = new_id("chatcmpl"), int(time.time())
    visible = VisibleTextFilter()
    shown: list[str] = []
    first = True

    def chunk(content: str | None, finish_reason: str | None = None) -> ChatCompletionChunk:
        nonlocal first
        delta = ChunkDelta(role="assistant" if first else None, content=content)
        first = False
        return ChatCompletionChunk(
            id=chunk_id,
            created=created,
            model=style.model or stream.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)],
        )

    started = time.perf_counter()
    try:
        async with stream:
            async for piece in stream:
                # A generation prompt alone (plain protocol) is not the reply to show.
                text = "" if turn.prompt_only else visible.feed(piece)
                if text:
                    shown.append(text)
                    yield _sse_data(chunk(text).model_dump_json())
        assert stream.result is not None  # set once the stream is read to its end
        result = stream.result
        record_mllm_success(state, result)
        rest = "" if turn.prompt_only else visible.flush()
        if rest:
            shown.append(rest)
            yield _sse_data(chunk(rest).model_dump_json())
        answer = await complete_turn(state, tenant, request, turn, result)
        if answer.reply and not tidy_text("".join(shown)):
            # The reply was made after the stream (plain protocol: from the prompt; a
            # suppressed reply that was nothing but a generation block): send it whole.
            yield _sse_data(chunk(answer.reply).model_dump_json())
        last = chunk(None, result.finish_reason or "stop")
        for event in style.closing(last, answer):
            yield event
        yield _sse_data("[DONE]")
    except MllmError as error:
        record_mllm_failure(state, error, started)
        status, kind = mllm_error_status(error)
        yield style.error(status, error_body(kind, str(error)))
    except ApiError as error:
        yield style.error(error.status_code, error_body(error.type, error.message, error.field))
    except Exception:  # a bug: log it, tell the client no more than the API would
        logger.exception("chat stream failed")
        yield style.error(500, error_body("internal_error", "internal server error"))
