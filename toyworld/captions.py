"""Captions of a scene: a short one ("a red circle in the center on a blue background")
and a detailed one of 120-200 tokens in the style of LLMGA's generation prompts.

The detailed caption names every object's colour, shape, size and position and the
background, but states some of them only after the 75th token, where a text encoder
that truncates to 77 positions (BOS + 75 + EOS) never sees them. Which ones is recorded
with the caption (`DetailedCaption.late`), so the evaluation can score attributes stated
before and after token 75 apart.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from toyworld.scenes import Scene, SceneObject

# A chunk of the text encoder: 77 positions less BOS and EOS.
CHUNK_TOKENS = 75
DETAILED_MIN_TOKENS = 120
DETAILED_MAX_TOKENS = 200

POSITION_PHRASES = {
    "top left": "in the top left",
    "top": "at the top",
    "top right": "in the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right",
}
# An attribute the detailed caption may state late: (object index, "size" | "position"),
# or (-1, "background").
Attribute = tuple[int, str]

# CLIP's pre-tokenization (lower-cased): words, single digits, runs of other symbols. The
# world's tokenizer has every world word as one token, so this counts its tokens.
_PRETOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

OPENINGS = (
    "The image is a simple digital illustration with flat colors and crisp clean edges.",
    "The image shows a minimal geometric composition, drawn in a flat graphic style.",
    "This picture is a clean and simple drawing of basic shapes, like a page from a "
    "children's book about shapes.",
    "The image features a tidy arrangement of geometric shapes in a flat, modern style.",
)
BRIDGES = (
    "The composition is calm and balanced, with plenty of empty space between the shapes, "
    "and every shape is drawn with a single solid color and no outline.",
    "Each shape is filled with one solid color, without shading, shadows or outlines, and "
    "the shapes do not touch or overlap one another.",
    "The style is flat and graphic, with no gradients, no shadows and no outlines, so each "
    "shape stands out clearly against what lies behind it.",
)
CLOSINGS = (
    "The overall atmosphere is clear, orderly and playful, with strong contrast between "
    "the shapes and the background.",
    "Overall, the scene feels simple and bright, like a clean diagram, with sharp edges "
    "and bold colors.",
    "The picture has a cheerful, minimal look, with high contrast and nothing else in the "
    "frame besides these shapes.",
    "There is no text, no people and no other objects in the image, only these simple "
    "shapes in their places.",
)


@dataclass(frozen=True)
class DetailedCaption:
    """A detailed caption and the attributes it states only after token 75."""

    text: str
    late: frozenset[Attribute]
    tokens: int


def count_tokens(text: str) -> int:
    """The text's token count in the world's tokenizer (BOS/EOS not counted)."""
    return len(_PRETOKEN.findall(text.lower()))


def _a(phrase: str) -> str:
    """`phrase` with its indefinite article."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _background_phrase(scene: Scene) -> str:
    texture = "striped" if scene.textured else "plain"
    return _a(f"{texture} {scene.background} background")


def _object_phrase(obj: SceneObject, with_size: bool) -> str:
    size = f"{obj.size} " if with_size else ""
    return f"{_a(f'{size}{obj.colour} {obj.shape}')} {POSITION_PHRASES[obj.position]}"


def short_caption(scene: Scene, with_size: bool = False) -> str:
    """'a red circle in the center on a blue background' (several objects joined with
    commas and 'and'). Sizes and texture only when asked: a short caption is a partial
    description, as a user's prompt is."""
    phrases = [_object_phrase(obj, with_size) for obj in scene.objects]
    objects = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{objects} on {_a(scene.background)} background"


def _ordinal(index: int) -> str:
    return ("first", "second", "third")[index]


def detailed_caption(scene: Scene, rng: random.Random) -> DetailedCaption:
    """A 120-200 token description naming every attribute of the scene. Each object's
    colour and shape come early; its size and position, and the background's colour, are
    each stated early or (drawn by `rng`) in a later paragraph that starts after token 75."""
    deferred: set[Attribute] = set()
    for index in range(len(scene.objects)):
        for attribute in ("size", "position"):
            if rng.random() < 0.5:
                deferred.add((index, attribute))
    if rng.random() < 0.3:
        deferred.add((-1, "background"))

    early: list[str] = []
    if (-1, "background") not in deferred:
        early.append(f"It is set on {_background_phrase(scene)}.")
    count = len(scene.objects)
    early.append(f"There {'is one shape' if count == 1 else f'are {count} shapes'} in the picture.")
    for index, obj in enumerate(scene.objects):
        size = "" if (index, "size") in deferred else f"{obj.size} "
        where = "" if (index, "position") in deferred else f" {POSITION_PHRASES[obj.position]}"
        shape = _a(f"{size}{obj.colour} {obj.shape}")
        early.append(f"The {_ordinal(index)} shape is {shape}{where}.")

    late: list[str] = []
    for index, obj in enumerate(scene.objects):
        parts = []
        if (index, "size") in deferred:
            parts.append(f"is {obj.size}")
        if (index, "position") in deferred:
            parts.append(f"sits {POSITION_PHRASES[obj.position]}")
        if parts:
            late.append(f"The {obj.colour} {obj.shape} {' and '.join(parts)}.")
    if (-1, "background") in deferred:
        late.append(f"Behind the shapes there is {_background_phrase(scene)}.")

    # The longest opening that keeps the early part within the first chunk.
    body = " ".join(early)
    openings = [o for o in OPENINGS if count_tokens(o + " " + body) <= CHUNK_TOKENS]
    text = f"{rng.choice(openings)} {body}" if openings else body
    # Fill between the two parts until the late part starts after token 75, then close.
    bridges = list(BRIDGES)
    rng.shuffle(bridges)
    while count_tokens(text) < CHUNK_TOKENS and bridges:
        text += " " + bridges.pop()
    late_start = count_tokens(text)
    if late:
        text += " " + " ".join(late)
    closings = list(CLOSINGS)
    rng.shuffle(closings)
    while count_tokens(text) < DETAILED_MIN_TOKENS and closings:
        text += " " + closings.pop()
    tokens = count_tokens(text)
    # A late attribute is one stated only after token 75.
    late_attributes = frozenset(deferred) if late_start >= CHUNK_TOKENS else frozenset()
    return DetailedCaption(text=text, late=late_attributes, tokens=tokens)


def world_words(samples: int = 2000, seed: int = 0) -> list[str]:
    """Every word the captions use (sorted): the tokenizer gives each one token."""
    from toyworld.scenes import sample_scene

    rng = random.Random(seed)
    words: set[str] = set()
    for _ in range(samples):
        scene = sample_scene(rng)
        for text in (short_caption(scene, with_size=True), detailed_caption(scene, rng).text):
            words.update(_PRETOKEN.findall(text.lower()))
    return sorted(words)
