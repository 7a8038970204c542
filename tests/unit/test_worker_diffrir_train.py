"""DiffRIR training: the paper's colour degradation, random masks, and a few CPU steps of a
tiny network whose checkpoint then loads into the worker's restorer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from services.worker.diffrir.checkpoint import read_checkpoint
from services.worker.diffrir.restorer import DiffRIRRestorer
from services.worker.diffrir.synthesis import Degradation, degrade, random_mask, synthetic_image
from services.worker.diffrir.tiling import Tiling
from services.worker.diffrir.train import TINY_CONFIG, TrainOptions, main, train
from tests.support.torch_threads import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def test_the_colour_degradation_stays_within_the_papers_ranges() -> None:
    # Grey 0.5 everywhere: x * c1 + c2 is a constant, c1 in 1 +- 0.08 and c2 in +- 0.05.
    grey = torch.full((64, 3, 8, 8), 0.5)
    options = Degradation(second_order=False)
    shifted = degrade(grey, options, np.random.default_rng(0), torch.Generator().manual_seed(0))
    values = shifted[:, 0, 0, 0]
    assert torch.equal(shifted, values[:, None, None, None].expand_as(shifted))  # per image
    low, high = 0.5 * 0.92 - 0.05, 0.5 * 1.08 + 0.05
    assert ((values >= low - 1 / 255) & (values <= high + 1 / 255)).all()
    assert values.std() > 0.01  # and it does vary between images


def test_masks_are_never_empty_and_every_kind_is_drawn() -> None:
    rng = np.random.default_rng(0)
    masks = [random_mask(64, rng) for _ in range(60)]
    assert all(mask.shape == (64, 64) and mask.any() for mask in masks)
    touches_border = [m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any() for m in masks]
    assert any(touches_border) and not all(touches_border)  # outpainting and inner masks


def test_a_few_steps_train_and_the_checkpoint_loads_into_the_restorer(tmp_path: Path) -> None:
    output = tmp_path / "diffrir_tiny.pth"
    losses = train(TrainOptions(output=output, steps=3, batch_size=2, crop=64, config=TINY_CONFIG))
    assert len(losses) == 3 and all(np.isfinite(losses)) and all(loss > 0 for loss in losses)

    checkpoint = read_checkpoint(output)
    assert checkpoint.config == TINY_CONFIG
    assert "params_ema" in torch.load(output, weights_only=True)  # the released layout

    restorer = DiffRIRRestorer.load(output, torch.device("cpu"), Tiling())
    rng = np.random.default_rng(1)
    reference = synthetic_image(64, rng)
    mask = np.zeros((64, 64), dtype=bool)
    mask[16:48, 16:48] = True
    generated = np.clip(reference * 1.1, 0, 255).astype(np.uint8)
    restored = restorer.restore(generated, reference, mask)
    assert restored.shape == reference.shape
    assert np.array_equal(restored[~mask], reference[~mask])


def test_the_command_line_trains_on_a_folder_of_images(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for index, size in enumerate((48, 80)):  # one smaller than the crop: scaled up
        Image.fromarray(synthetic_image(size, rng)).save(folder / f"{index}.png")
    output = tmp_path / "out" / "net.pth"
    main(["--images", str(folder), "--output", str(output), "--tiny", "--steps", "1",
          "--batch-size", "1", "--crop", "64", "--colour-only"])  # fmt: skip
    assert read_checkpoint(output).config == TINY_CONFIG

    with pytest.raises(ValueError, match="no images"):
        main(["--images", str(tmp_path / "out"), "--output", str(output), "--tiny"])
