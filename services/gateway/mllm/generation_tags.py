"""Find the generation prompts in an MLLM reply.

LLMGA's released checkpoints write `<gen_image> ... </gen_image>`; the paper writes
`<gen_img> ... </gen_img>`. A reply may hold several blocks (one image each), and a reply
cut off by max_tokens may end inside an unterminated block, which still counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An opening tag, the prompt (lazy), then the matching closing tag or the end of the text.
# The backreference makes `<gen_img>` close only with `</gen_img>`.
_BLOCK = re.compile(
    r"<(?P<tag>gen_image|gen_img)\s*>(?P<prompt>.*?)(?:</(?P=tag)\s*>|\Z)",
    re.DOTALL | re.IGNORECASE,
)
# A closing tag with no opening one is model noise: it is dropped from the shown text.
_STRAY_TAG = re.compile(r"</?(?:gen_image|gen_img)\s*>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True)
class ParsedReply:
    """A reply split into the text shown to the user and the generation prompts."""

    text: str
    prompts: list[str]


def tidy_text(text: str) -> str:
    """Collapse runs of spaces, keep at most one blank line, strip line ends and ends."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def parse_reply(reply: str) -> ParsedReply:
    """Split `reply` into the user-facing text and the non-empty generation prompts."""
    prompts: list[str] = []
    outside: list[str] = []
    position = 0
    for match in _BLOCK.finditer(reply):
        outside.append(reply[position : match.start()])
        prompt = match.group("prompt").strip()
        if prompt:
            prompts.append(prompt)
        position = match.end()
    outside.append(reply[position:])
    outside = [_STRAY_TAG.sub(" ", piece) for piece in outside]
    # Joining the outside pieces with a space keeps "a<gen_img>x</gen_img>b" readable.
    return ParsedReply(text=tidy_text(" ".join(outside)), prompts=prompts)


# Tag names as they may begin in a stream; a chunk boundary can split a tag anywhere.
_TAG_STARTS = ("<gen_image", "<gen_img", "</gen_image", "</gen_img")
_TAG_AT_START = re.compile(r"<(?P<close>/?)(?P<tag>gen_image|gen_img)\s*>", re.IGNORECASE)


def _could_become_tag(text: str) -> bool:
    """Whether `text` (starting with '<') is the beginning of a tag still being streamed."""
    lowered = text.lower()
    for start in _TAG_STARTS:
        if start.startswith(lowered):
            return True
        if lowered.startswith(start) and not lowered[len(start) :].strip():
            return True  # the name is complete; spaces may still come before '>'
    return False


class VisibleTextFilter:
    """The shown text of a reply that arrives in pieces: `feed` each piece, then `flush`.

    Text inside generation blocks is never emitted; a block is replaced by one space and
    a stray closing tag by one space, so the concatenated output, tidied, equals
    `parse_reply(whole reply).text`. Only a possible tag start is held back between
    pieces, so text reaches the client as soon as it is known to be visible.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._inside: str | None = None  # the tag of the open block

    def feed(self, piece: str) -> str:
        """Add a piece of the reply; return the visible text it completes."""
        self._pending += piece
        shown: list[str] = []
        while self._pending:
            if self._inside is not None:
                closing = re.search(rf"</{self._inside}\s*>", self._pending, re.IGNORECASE)
                if closing is None:
                    # Keep only what may be the start of the closing tag.
                    start = self._pending.rfind("<")
                    tail = self._pending[start:] if start >= 0 else ""
                    self._pending = tail if _could_become_tag(tail) else ""
                    break
                self._pending = self._pending[closing.end() :]
                self._inside = None
                continue
            start = self._pending.find("<")
            if start < 0:
                shown.append(self._pending)
                self._pending = ""
                break
            shown.append(self._pending[:start])
            self._pending = self._pending[start:]
            tag = _TAG_AT_START.match(self._pending)
            if tag is not None:
                shown.append(" ")  # a block or a stray closing tag becomes one space
                if not tag.group("close"):
                    self._inside = tag.group("tag").lower()
                self._pending = self._pending[tag.end() :]
            elif _could_become_tag(self._pending):
                break  # wait for the next piece
            else:
                shown.append("<")
                self._pending = self._pending[1:]
        return "".join(shown)

    def flush(self) -> str:
        """The end of the reply: text held back as a possible tag start was visible after
        all, unless it is inside an (unterminated) block."""
        rest, self._pending = ("" if self._inside is not None else self._pending), ""
        return rest
