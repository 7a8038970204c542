"""Running DiffRIR's U-net tile by tile, with overlapping tiles blended smoothly.

The public DiffRIR code runs the whole image at once; its memory grows with the image (the
first level keeps 64-128 channels at a quarter of the resolution, and the channel attention
builds per-head Gram matrices over all pixels). Large images are therefore cut into tiles of
at most `tile` x `tile` pixels that overlap by at least `overlap` pixels:

- the prior vector is computed once, on the whole image (CPEN pools over the whole image
  anyway), and every tile is modulated by that same prior: tiles differ from the whole
  only in what the U-net sees, not in which correction it was told to make;
- tile sides and tile offsets are multiples of the network's stride (32), so each tile's
  pixel-unshuffle and downsampling grid is the whole image's grid: a pixel far enough from
  every tile border is computed from the same neighbourhood either way;
- in the overlaps, tiles are blended with weights that ramp linearly from each tile's
  inner border over `overlap` pixels (and stay 1 at the image's own borders), divided by
  their sum: seams between tiles fade instead of jumping.

What still differs from an untiled run: the transposed attention normalises queries and
keys over all pixels of its input, so a tile's channel-attention map is computed from the
tile's content, not the image's. tests/unit/test_worker_diffrir_tiling.py measures that
difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from services.worker.diffrir.network import STRIDE

# Tile sizes below this would leave a 1x1 latent level: the largest size the U-net needs.
MIN_TILE = 2 * STRIDE


@dataclass(frozen=True)
class Tiling:
    """Tile side and minimum overlap in pixels, both multiples of the network's stride."""

    tile: int = 512
    overlap: int = 64

    def __post_init__(self) -> None:
        if self.tile < MIN_TILE or self.tile % STRIDE:
            raise ValueError(
                f"tile must be a multiple of {STRIDE} and at least {MIN_TILE}, got {self.tile}"
            )
        if self.overlap < 0 or self.overlap % STRIDE or self.overlap >= self.tile:
            raise ValueError(
                f"overlap must be a multiple of {STRIDE} in [0, tile), got {self.overlap} "
                f"(tile {self.tile})"
            )


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles of side min(tile, length) covering [0, length), consecutive tiles
    overlapping by at least `overlap`; the last tile ends at `length`. With `length`, `tile`
    and `overlap` multiples of the stride, so is every offset."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def ramp(length: int, overlap: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """1-D blend weights of a tile: 1 inside, rising linearly over `overlap` pixels from a
    faded side (one shared with a neighbouring tile). Always > 0, so every pixel has weight."""
    position = torch.arange(length, dtype=torch.float32)
    weight = torch.ones(length)
    if overlap:
        if fade_start:
            weight = torch.minimum(weight, (position + 0.5) / overlap)
        if fade_end:
            weight = torch.minimum(weight, (length - position - 0.5) / overlap)
    return weight


def run_tiled(
    run: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, tiling: Tiling
) -> torch.Tensor:
    """`run` (B, C, h, w) -> (B, C', h, w) applied to `inputs` (B, C, H, W; H and W
    multiples of the stride) tile by tile, overlaps blended (module docstring). An input
    no larger than one tile is run whole."""
    height, width = inputs.shape[-2:]
    if height <= tiling.tile and width <= tiling.tile:
        return run(inputs)
    rows = tile_starts(height, tiling.tile, tiling.overlap)
    columns = tile_starts(width, tiling.tile, tiling.overlap)
    tile_h, tile_w = min(tiling.tile, height), min(tiling.tile, width)
    output: torch.Tensor | None = None
    weights = torch.zeros(height, width, device=inputs.device)
    for row_index, top in enumerate(rows):
        rows_weight = ramp(tile_h, tiling.overlap, row_index > 0, row_index < len(rows) - 1)
        for column_index, left in enumerate(columns):
            columns_weight = ramp(
                tile_w, tiling.overlap, column_index > 0, column_index < len(columns) - 1
            )
            weight = (rows_weight[:, None] * columns_weight[None, :]).to(inputs.device)
            window = (..., slice(top, top + tile_h), slice(left, left + tile_w))
            result = run(inputs[window])
            if output is None:
                output = result.new_zeros((*result.shape[:-2], height, width))
            output[window] += result * weight.to(result.dtype)
            weights[window] += weight
    assert output is not None  # at least one tile per axis
    return output / weights.to(output.dtype)
