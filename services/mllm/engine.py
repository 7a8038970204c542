"""The local, text-only chat engine: few-shot prompting and streamed generation.

Gemma 3 270M is a base model, so chat messages are rendered into an LLMGA-style
few-shot prompt (``chat_templates/local_fewshot.jinja``) in which every assistant turn
is a single line; generation therefore always stops at the first newline (on top of any
stop sequences a request adds). One generation runs at a time, in a worker thread, so
the event loop stays free; text is streamed back through an asyncio queue.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

TEMPLATES_DIR = Path(__file__).parent / "chat_templates"
LOCAL_TEMPLATE = "local_fewshot.jinja"
DEFAULT_SYSTEM = (
    "Below are conversations between a user and LLMGA, an image generation assistant. "
    "When the user asks for an image, LLMGA answers in one short sentence and then writes "
    "one detailed image description between <gen_image> and </gen_image>."
)
#: Stop sequences the few-shot format itself needs: one line per assistant turn.
FORMAT_STOPS = ("\n",)


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Finished:
    """Last item of a generation stream."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class ChatTurn:
    role: str  # "system", "user" or "assistant"
    content: str


def find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop sequence in ``text``, or -1."""
    hits = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return min(hits) if hits else -1


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that could still grow into a stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class _StopOnText(StoppingCriteria):
    """Stops when the generated text holds a stop sequence, or when cancelled."""

    def __init__(
        self, tokenizer: Any, prompt_len: int, stops: Sequence[str], cancel: threading.Event
    ):
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.stops = stops
        self.cancel = cancel
        self.hit = False

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> Any:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
        self.hit = find_stop(text, self.stops) >= 0
        done = self.hit or self.cancel.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _QueueStreamer(BaseStreamer):
    """Decodes generated tokens incrementally and hands text deltas to an asyncio queue."""

    def __init__(self, tokenizer: Any, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]):
        self.tokenizer = tokenizer
        self.loop = loop
        self.queue = queue
        self.token_ids: list[int] = []
        self.sent = 0
        self.skipped_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self.skipped_prompt:  # generate() first hands over the prompt
            self.skipped_prompt = True
            return
        self.token_ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.token_ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence; wait for the rest
            return
        if len(text) > self.sent:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, text[self.sent :])
            self.sent = len(text)

    def end(self) -> None:
        pass


@dataclass
class LocalEngine:
    """Chat generation with a causal LM loaded by :mod:`services.mllm.model_loader`."""

    model: Any
    tokenizer: Any
    default_system: str = DEFAULT_SYSTEM
    template_name: str = LOCAL_TEMPLATE
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        self._template = env.get_template(self.template_name)

    def render_prompt(self, turns: Sequence[ChatTurn]) -> str:
        messages = [{"role": turn.role, "content": turn.content} for turn in turns]
        return self._template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=self.tokenizer.bos_token or "",
            default_system=self.default_system,
        )

    def encode(self, prompt: str) -> list[int]:
        ids: list[int] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return ids

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[str | Finished]:
        """Yield text deltas, then one :class:`Finished`. Stop sequences are not included.

        Runs one generation at a time; closing the iterator early cancels the generation.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            cancel = threading.Event()
            stops = tuple(dict.fromkeys((*FORMAT_STOPS, *params.stop)))
            prompt_len = len(prompt_ids)
            criteria = _StopOnText(self.tokenizer, prompt_len, stops, cancel)
            streamer = _QueueStreamer(self.tokenizer, loop, queue)
            done = object()
            outcome: dict[str, Any] = {}

            def run() -> None:
                try:
                    outcome["ids"] = self._generate_ids(prompt_ids, params, criteria, streamer)
                except BaseException as error:  # handed to the event loop, re-raised there
                    outcome["error"] = error
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, done)

            thread = threading.Thread(target=run, name="mllm-generate", daemon=True)
            thread.start()
            text, sent, stopped = "", 0, False
            try:
                while (item := await queue.get()) is not done:
                    if stopped:
                        continue
                    text += item
                    if sent == 0:  # the prompt ends in "LLMGA:", so replies start with a space
                        text = text.lstrip(" ")
                    cut = find_stop(text, stops)
                    if cut >= 0:
                        stopped = True
                        end = cut
                    else:
                        end = len(text) - held_back(text, stops)
                    if end > sent:
                        yield text[sent:end]
                        sent = end
                if "error" in outcome:
                    raise outcome["error"]
                if not stopped and len(text) > sent:
                    yield text[sent:]
                generated: list[int] = outcome["ids"]
                eos = self._eos_ids()
                hit_eos = bool(generated) and generated[-1] in eos
                if stopped or hit_eos or criteria.hit or len(generated) < params.max_tokens:
                    reason = "stop"
                else:
                    reason = "length"
                yield Finished(reason, prompt_len, len(generated))
            finally:
                cancel.set()
                await asyncio.to_thread(thread.join)

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else {eos}

    def _generate_ids(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        criteria: _StopOnText,
        streamer: _QueueStreamer,
    ) -> list[int]:
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        sampling: dict[str, Any] = {"do_sample": False}
        if params.temperature > 0:
            sampling = {
                "do_sample": True,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "top_k": 0,
            }
            if params.seed is not None:
                torch.manual_seed(params.seed)  # one generation at a time, so this is safe
        processors = LogitsProcessorList()
        if params.repetition_penalty != 1.0:
            processors.append(
                RepetitionPenaltyLogitsProcessor(
                    params.repetition_penalty, prompt_ignore_length=len(prompt_ids)
                )
            )
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=params.max_tokens,
                stopping_criteria=[criteria],
                logits_processor=processors,
                streamer=streamer,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        generated: list[int] = output[0, len(prompt_ids) :].tolist()
        return generated
