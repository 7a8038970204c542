"""`llmga-router` (also `python -m services.gateway.routing`): classify instructions, and
rebuild, train and evaluate the router.

    llmga-router < instructions.txt      # one `generate` or `chat` per input line
    llmga-router --log-odds < ...        # with the log-odds: `generate<TAB>4.210`
    llmga-router corpus                  # rewrite corpus.tsv from corpus_templates.py
    llmga-router train                   # train on the training split, write model.json
    llmga-router evaluate                # held-out accuracy and confusion matrix
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from services.gateway.routing.classifier import CHAT, GENERATE, MODEL_PATH, NaiveBayes, load_model
from services.gateway.routing.corpus import CORPUS_PATH, Example, format_tsv, read_corpus, split
from services.gateway.routing.corpus_templates import build_corpus


def train_model(corpus: list[Example]) -> NaiveBayes:
    """The router model: naive Bayes (alpha 1) on the corpus' training split."""
    train, _ = split(corpus)
    return NaiveBayes.train((e.label, e.text) for e in train)


@dataclass(frozen=True)
class Evaluation:
    """How a model does on a set of examples."""

    total: int
    correct: int
    # (true label, predicted label) -> count
    confusion: dict[tuple[str, str], int]
    errors: list[tuple[Example, float]]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def evaluate(model: NaiveBayes, examples: list[Example]) -> Evaluation:
    """Accuracy, confusion matrix and misclassified examples (with their log-odds)."""
    confusion = {(t, p): 0 for t in (CHAT, GENERATE) for p in (CHAT, GENERATE)}
    errors = []
    for example in examples:
        odds = model.log_odds(example.text)
        predicted = GENERATE if odds > 0 else CHAT
        confusion[(example.label, predicted)] += 1
        if predicted != example.label:
            errors.append((example, odds))
    correct = confusion[(CHAT, CHAT)] + confusion[(GENERATE, GENERATE)]
    return Evaluation(len(examples), correct, confusion, errors)


def _report(name: str, result: Evaluation, out: TextIO) -> None:
    out.write(f"{name}: {result.correct}/{result.total} correct, accuracy {result.accuracy:.4f}\n")


def _evaluate_command(model_path: Path, corpus_path: Path, out: TextIO) -> None:
    corpus = read_corpus(corpus_path)
    train, held_out = split(corpus)
    model = load_model(model_path)
    out.write(
        f"corpus: {len(corpus)} instructions ({sum(e.label == GENERATE for e in corpus)} "
        f"generate, {sum(e.label == CHAT for e in corpus)} chat); training split {len(train)}, "
        f"held-out split {len(held_out)}\n"
    )
    _report("training split", evaluate(model, train), out)
    result = evaluate(model, held_out)
    _report("held-out split", result, out)
    _report(
        "held-out, hand-written only",
        evaluate(model, [e for e in held_out if e.source == "hand"]),
        out,
    )
    out.write("confusion matrix (held-out; rows: true label, columns: predicted)\n")
    out.write(f"{'':>10} {CHAT:>9} {GENERATE:>9}\n")
    for true in (CHAT, GENERATE):
        chat, generate = result.confusion[(true, CHAT)], result.confusion[(true, GENERATE)]
        out.write(f"{true:>10} {chat:>9} {generate:>9}\n")
    for example, odds in result.errors:
        out.write(f"misclassified ({example.label}, log-odds {odds:+.2f}): {example.text}\n")


def _classify_command(model_path: Path, with_log_odds: bool, stdin: TextIO, out: TextIO) -> None:
    model = load_model(model_path)
    for line in stdin:
        odds = model.log_odds(line)
        decision = GENERATE if odds > 0 else CHAT
        out.write(f"{decision}\t{odds:.3f}\n" if with_log_odds else f"{decision}\n")
        out.flush()  # one answer per line as it is read (a pipe may wait for it)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="llmga-router",
        description="Say for each instruction on stdin (one per line) whether it asks for "
        "an image (`generate`) or a text answer (`chat`).",
    )
    parser.add_argument("--model", type=Path, default=MODEL_PATH, help="model file (JSON)")
    parser.add_argument("--log-odds", action="store_true", help="also print the log-odds")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("corpus", help="rewrite the corpus from its templates")
    train = commands.add_parser("train", help="train on the training split, write the model")
    evaluation = commands.add_parser("evaluate", help="accuracy and confusion matrix")
    for sub in (train, evaluation):
        sub.add_argument("--corpus", type=Path, default=CORPUS_PATH, help="corpus file (TSV)")
    args = parser.parse_args(argv)

    if args.command == "corpus":
        CORPUS_PATH.write_text(format_tsv(build_corpus()), encoding="utf-8")
        print(f"wrote {CORPUS_PATH}")
    elif args.command == "train":
        args.model.write_text(train_model(read_corpus(args.corpus)).to_json(), encoding="utf-8")
        print(f"wrote {args.model}")
        _evaluate_command(args.model, args.corpus, sys.stdout)
    elif args.command == "evaluate":
        _evaluate_command(args.model, args.corpus, sys.stdout)
    else:
        _classify_command(args.model, args.log_odds, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
