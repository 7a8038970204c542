"""Generation prompts from a tag-less mllm (protocol `plain`): the system instruction that
asks for a prompt alone, and the cleanup of what comes back.

An LLMGA checkpoint writes its prompts between <gen_image> tags on its own. A stock chat
model does not; asked with this instruction, its whole reply is the prompt. It may still
wrap it (quotes, a "Prompt:" label, a code fence, even tags it has seen in the history):
`clean_prompt` takes those off.
"""

from __future__ import annotations

import re

from services.gateway.mllm.generation_tags import parse_reply, tidy_text

DEFAULT_PROMPT_INSTRUCTION = (
    "You write prompts for a text-to-image diffusion model. Reply with one detailed "
    "description of the image to generate and nothing else: the subject, its setting, "
    "composition, lighting, colours and style, in one paragraph of at most 60 words. If "
    "the user refers to an earlier image or asks to change it, describe the whole new "
    "image with the change applied. If an image is attached and the user asks for a "
    "similar one, describe the attached image. No greeting, no explanation, no quotes."
)

# A label some models put first ("Prompt:", "Image description -"), and wrapping quotes.
_LABEL = re.compile(r"^\s*(?:image\s+)?(?:prompt|description|caption)\s*[:\-]\s*", re.IGNORECASE)
_FENCE = re.compile(r"^```[a-z]*\n?|\n?```$")
_QUOTES = ('"', "'", "“", "”", "‘", "’", "`")


def clean_prompt(reply: str) -> str:
    """The generation prompt of a reply to the prompt-writing instruction: its first
    generation block if it has one, else the whole reply without fences, a leading label
    or wrapping quotes (tidied; "" if nothing is left)."""
    parsed = parse_reply(reply)
    text = parsed.prompts[0] if parsed.prompts else reply
    text = _FENCE.sub("", text.strip()).strip()
    text = _LABEL.sub("", text, count=1).strip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return tidy_text(text)
