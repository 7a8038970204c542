"""The committed judge reads rendered scenes back, and the evaluation's metrics score what
they should (a perfect image scores perfectly, a wrong one does not)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.metrics import (
    Tally,
    frechet_distance,
    outside_errors,
    real_metric_status,
    score_scene,
    seam_error,
)
from evaluation.protocols import colour_shifted, edited, eval_scenes
from evaluation.report import write_report
from toyworld.judge import Judge, accuracy, held_out_scenes
from toyworld.scenes import Scene, SceneObject, object_mask, render


@pytest.fixture(scope="module")
def judge() -> Judge:
    return Judge.load()


def test_judge_reads_held_out_scenes(judge: Judge) -> None:
    scenes = held_out_scenes(200)
    rates = accuracy(judge, scenes, [render(s) for s in scenes])
    assert rates["background"] >= 0.95
    assert rates["colour"] >= 0.95
    assert rates["cell_shape"] >= 0.9
    assert rates["shape"] >= 0.95  # of each object, small circles and squares included


def test_judge_reads_the_issues_example(judge: Judge) -> None:
    scene = Scene((SceneObject("circle", "red", "medium", "center"),), "blue", False)
    seen = judge.read([render(scene)])[0]
    assert seen.background == "blue"
    assert [(o.shape, o.colour, o.position) for o in seen.objects] == [("circle", "red", "center")]


def test_adherence_is_full_for_the_truth_and_not_for_another_scene(judge: Judge) -> None:
    scene = Scene((SceneObject("square", "yellow", "large", "top left"),), "purple", False)
    right, wrong = Tally.empty(), Tally.empty()
    score_scene(scene, judge.read([render(scene)])[0], right)
    other = replace(scene, objects=(replace(scene.objects[0], position="bottom right"),))
    score_scene(scene, judge.read([render(other)])[0], wrong)
    assert all(v == 1.0 for v in right.rates().values())
    assert wrong.rates()["position"] == 0.0 and wrong.rates()["background"] == 1.0


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_shift() -> None:
    features = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(features, features)) < 1e-6
    assert frechet_distance(features, features + 1.0) == pytest.approx(8.0, rel=1e-6)


def test_seam_and_outside_errors_see_a_colour_shift() -> None:
    scene = eval_scenes(1)[0]
    truth = render(scene)
    mask = object_mask(scene, 0, margin=0.08)
    shifted = colour_shifted(truth, mask, np.random.default_rng(0))
    assert seam_error(truth, truth, mask) == 0.0
    assert seam_error(shifted, truth, mask) > 0.01
    assert outside_errors(shifted, truth, mask)["max_levels"] == 0.0  # only inside changed


def test_an_edit_changes_one_attribute_of_one_object() -> None:
    import random

    scene = eval_scenes(1)[0]
    target, attribute = edited(scene, random.Random(0))
    assert getattr(target.objects[0], attribute) != getattr(scene.objects[0], attribute)
    assert target.objects[1:] == scene.objects[1:]


def test_report_writes_json_markdown_and_charts(tmp_path: Path) -> None:
    status = real_metric_status()
    assert all(v.startswith(("available", "unavailable: ")) for v in status.values())
    md = write_report(tmp_path, {"t2i": {"adherence_colour": 0.9, "frechet_judge": 3.0}}, status)
    assert "| adherence_colour | 0.9000 |" in md.read_text()
    assert (
        json.loads((tmp_path / "report.json").read_text())["sections"]["t2i"]["frechet_judge"]
        == 3.0
    )
    assert (tmp_path / "t2i.png").stat().st_size > 0
