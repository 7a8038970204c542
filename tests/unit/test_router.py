"""The chat-or-image router: naive Bayes arithmetic, the model file, the committed corpus
and model, its held-out accuracy, and the `llmga-router` command."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from services.gateway.routing.classifier import MODEL_PATH, NaiveBayes, features, load_model
from services.gateway.routing.cli import evaluate, main, train_model
from services.gateway.routing.corpus import CORPUS_PATH, format_tsv, read_corpus, split
from services.gateway.routing.corpus_templates import build_corpus
from tests.support.processes import REPO_ROOT


def test_features_are_unigrams_and_bigrams_with_a_start_marker() -> None:
    assert features("Now, make it NIGHT!") == [
        "now",
        "make",
        "it",
        "night",
        "<s> now",
        "now make",
        "make it",
        "it night",
    ]


def test_log_odds_follow_laplace_smoothed_counts() -> None:
    model = NaiveBayes.train([("generate", "draw cat"), ("chat", "hello cat")], alpha=1.0)
    # Each class has 4 feature occurrences; the vocabulary has 7 features. "draw" and
    # "<s> draw" occur once in generate, never in chat: each contributes
    # log((1 + 1) / (4 + 7)) - log((0 + 1) / (4 + 7)) = log 2; the priors are equal.
    assert model.log_odds("draw") == pytest.approx(2 * math.log(2))
    assert model.predict("draw") == "generate"
    assert model.log_odds("hello") == pytest.approx(-2 * math.log(2))
    # "cat" is in both classes equally, "zebra" in neither: no evidence, a tie is chat.
    assert model.log_odds("cat zebra") == pytest.approx(0.0)
    assert model.predict("cat zebra") == "chat"


def test_priors_count_documents() -> None:
    model = NaiveBayes.train(
        [("generate", "a"), ("generate", "b"), ("generate", "c"), ("chat", "d")]
    )
    assert model.log_odds("unseen") == pytest.approx(math.log(3))


def test_model_json_round_trip_scores_the_same() -> None:
    model = train_model(read_corpus())
    loaded = NaiveBayes.from_json(model.to_json())
    assert loaded.to_json() == model.to_json()
    for example in read_corpus()[:50]:
        assert loaded.log_odds(example.text) == model.log_odds(example.text)


@pytest.mark.parametrize("text", ["[]", '{"format": 99}', '{"alpha": 1}'])
def test_a_file_that_is_not_a_model_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="router model"):
        NaiveBayes.from_json(text)


def test_committed_corpus_is_what_the_templates_write() -> None:
    assert CORPUS_PATH.read_text(encoding="utf-8") == format_tsv(build_corpus())


def test_committed_model_is_the_corpus_training_split_retrained() -> None:
    assert MODEL_PATH.read_text(encoding="utf-8") == train_model(read_corpus()).to_json()


def test_corpus_is_large_balanced_and_has_no_duplicates() -> None:
    corpus = read_corpus()
    labels = [e.label for e in corpus]
    assert len(corpus) >= 600
    assert min(labels.count("generate"), labels.count("chat")) >= 250
    assert len({e.text.lower() for e in corpus}) == len(corpus)
    assert sum(e.source == "hand" for e in corpus) >= 100


def test_split_is_deterministic_and_disjoint() -> None:
    corpus = read_corpus()
    train, held_out = split(corpus)
    assert split(list(reversed(corpus)))[1] == list(reversed(held_out))
    assert not {e.text for e in train} & {e.text for e in held_out}
    assert 0.15 < len(held_out) / len(corpus) < 0.25


def test_held_out_accuracy_is_at_least_95_percent() -> None:
    _, held_out = split(read_corpus())
    result = evaluate(load_model(), held_out)
    assert result.total == len(held_out)
    assert result.accuracy >= 0.95, [example.text for example, _ in result.errors]


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        ("write me a haiku about autumn", "chat"),
        ("what colours go with navy", "chat"),
        ("explain how diffusion works", "chat"),
        ("now make it night", "generate"),
        ("extend it to the left", "generate"),
        ("draw a red fox sleeping in the snow", "generate"),
    ],
)
def test_the_issue_examples(text: str, decision: str) -> None:
    assert load_model().predict(text) == decision


def test_evaluate_prints_accuracy_and_confusion_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    main(["evaluate"])
    out = capsys.readouterr().out
    assert "held-out split:" in out and "accuracy 0.9" in out
    assert "confusion matrix" in out
    _, held_out = split(read_corpus())
    result = evaluate(load_model(), held_out)
    chat_row = f"{'chat':>10} {result.confusion[('chat', 'chat')]:>9}"
    assert chat_row in out


def test_llmga_router_answers_one_line_per_instruction() -> None:
    lines = ["draw a lighthouse in a storm", "what is the capital of peru", "", "remove the hat"]
    done = subprocess.run(
        [sys.executable, "-m", "services.gateway.routing"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines() == ["generate", "chat", "chat", "generate"]


def test_llmga_router_log_odds_and_model_option(tmp_path: Path) -> None:
    model = NaiveBayes.train([("generate", "paint"), ("chat", "explain")])
    path = tmp_path / "model.json"
    path.write_text(model.to_json())
    done = subprocess.run(
        [sys.executable, "-m", "services.gateway.routing", "--model", str(path), "--log-odds"],
        input="paint\nexplain\n",
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    decisions = [line.split("\t") for line in done.stdout.splitlines()]
    assert [d[0] for d in decisions] == ["generate", "chat"]
    assert float(decisions[0][1]) == pytest.approx(model.log_odds("paint"), abs=1e-3)
