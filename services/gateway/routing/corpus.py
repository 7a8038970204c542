"""The router's labelled corpus (corpus.tsv next to this module) and its fixed split.

One instruction per line: `label<TAB>source<TAB>text`, label `generate` or `chat`, source
`template` (written by corpus_templates.py) or `hand` (a hand-written hard case).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

CORPUS_PATH = Path(__file__).with_name("corpus.tsv")
LABELS = ("chat", "generate")
# One instruction in HELD_OUT_EVERY goes to the held-out split.
HELD_OUT_EVERY = 5


@dataclass(frozen=True)
class Example:
    """One labelled instruction."""

    label: str
    source: str
    text: str


def is_held_out(text: str) -> bool:
    """Whether `text` belongs to the held-out split: decided by a hash of the lower-cased
    text, so the split does not depend on the corpus' order or on a random seed."""
    digest = hashlib.sha256(text.lower().encode()).digest()
    return int.from_bytes(digest[:4], "big") % HELD_OUT_EVERY == 0


def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """(training, held-out) examples."""
    train = [e for e in examples if not is_held_out(e.text)]
    held_out = [e for e in examples if is_held_out(e.text)]
    return train, held_out


def format_tsv(examples: list[Example]) -> str:
    """The corpus file's text."""
    return "".join(f"{e.label}\t{e.source}\t{e.text}\n" for e in examples)


def read_corpus(path: Path = CORPUS_PATH) -> list[Example]:
    """The examples of a corpus file; ValueError naming the line for a malformed one."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] not in LABELS or not fields[2].strip():
            raise ValueError(f"{path}:{number}: expected 'label<TAB>source<TAB>text'")
        examples.append(Example(*fields))
    return examples
