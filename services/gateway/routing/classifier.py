"""Multinomial naive Bayes over unigrams and bigrams, in pure Python (the gateway scores
it on every chat turn and never imports numerical libraries).

The model keeps raw feature counts per class (exact integers, so its JSON is
reproducible); the Laplace-smoothed log probabilities are derived when it is loaded:

    log P(f | c) = log((count(f, c) + alpha) / (total(c) + alpha * |V|))
    score(c | x) = log P(c) + sum over the features f of x of log P(f | c)

Features never seen in training are ignored (they carry no evidence either way).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MODEL_PATH = Path(__file__).with_name("model.json")
FORMAT_VERSION = 1
CHAT, GENERATE = "chat", "generate"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Marks the start of an instruction, so "<s> now" (a follow-up) differs from "now".
_START = "<s>"


def features(text: str) -> list[str]:
    """The instruction's unigrams and bigrams (lower-cased words; bigrams include the
    start marker, `<s> draw`)."""
    words = _WORD.findall(text.lower())
    bigrams = [f"{a} {b}" for a, b in zip([_START, *words], words, strict=False)]
    return words + bigrams


@dataclass
class NaiveBayes:
    """A trained two-class model: `log_odds(text) > 0` means generate."""

    alpha: float
    class_counts: dict[str, int]
    # feature -> (count in chat, count in generate)
    feature_counts: dict[str, tuple[int, int]]
    _log_prior: dict[str, float] = field(init=False, repr=False)
    _log_likelihood: dict[str, tuple[float, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        documents = sum(self.class_counts.values())
        self._log_prior = {
            label: math.log(self.class_counts[label] / documents) for label in (CHAT, GENERATE)
        }
        vocabulary = len(self.feature_counts)
        totals = [sum(counts[i] for counts in self.feature_counts.values()) for i in (0, 1)]
        denominators = [math.log(total + self.alpha * vocabulary) for total in totals]
        self._log_likelihood = {
            feature: (
                math.log(counts[0] + self.alpha) - denominators[0],
                math.log(counts[1] + self.alpha) - denominators[1],
            )
            for feature, counts in self.feature_counts.items()
        }

    @classmethod
    def train(cls, examples: Iterable[tuple[str, str]], alpha: float = 1.0) -> NaiveBayes:
        """Count features per class over (label, text) pairs."""
        class_counts = {CHAT: 0, GENERATE: 0}
        counts: dict[str, Counter[str]] = {CHAT: Counter(), GENERATE: Counter()}
        for label, text in examples:
            class_counts[label] += 1
            counts[label].update(features(text))
        vocabulary = sorted(set(counts[CHAT]) | set(counts[GENERATE]))
        return cls(
            alpha=alpha,
            class_counts=class_counts,
            feature_counts={f: (counts[CHAT][f], counts[GENERATE][f]) for f in vocabulary},
        )

    def log_odds(self, text: str) -> float:
        """log P(generate | text) - log P(chat | text)."""
        odds = self._log_prior[GENERATE] - self._log_prior[CHAT]
        for feature in features(text):
            likelihood = self._log_likelihood.get(feature)
            if likelihood is not None:
                odds += likelihood[1] - likelihood[0]
        return odds

    def predict(self, text: str) -> str:
        """`generate` or `chat` (a tie is chat: no job without evidence for one)."""
        return GENERATE if self.log_odds(text) > 0 else CHAT

    def to_json(self) -> str:
        """The model file's text: sorted, one line per feature, so diffs stay readable."""
        lines = [
            f'{{"format": {FORMAT_VERSION}, "alpha": {json.dumps(self.alpha)}, '
            f'"class_counts": {json.dumps(self.class_counts, sort_keys=True)}, '
            '"feature_counts": {'
        ]
        items = sorted(self.feature_counts.items())
        for i, (feature, (chat, generate)) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            lines.append(f"{json.dumps(feature)}: [{chat}, {generate}]{comma}")
        lines.append("}}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_json(cls, text: str) -> NaiveBayes:
        """A model from `to_json`'s text; ValueError if it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            raise ValueError(f"not a router model of format {FORMAT_VERSION}")
        return cls(
            alpha=float(data["alpha"]),
            class_counts={label: int(data["class_counts"][label]) for label in (CHAT, GENERATE)},
            feature_counts={
                str(feature): (int(counts[0]), int(counts[1]))
                for feature, counts in data["feature_counts"].items()
            },
        )


def load_model(path: Path = MODEL_PATH) -> NaiveBayes:
    """The model shipped with the gateway (or another file of the same format)."""
    return NaiveBayes.from_json(path.read_text(encoding="utf-8"))
