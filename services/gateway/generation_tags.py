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
