"""DiffRIR as the worker's learned restorer: a loaded network and how to run it on images.

`DiffRIRRestorer.restore` follows the reference inference (`inference_diffrir.py`, x1):

1. inputs: concat(generated RGB, (1 - mask) * reference RGB) in [0, 1], 6 channels;
2. reflect-pad to multiples of the network's stride (32) on the right and bottom;
3. the prior: 4 DDPM steps from seeded Gaussian noise, conditioned on the whole image;
4. the U-net, tile by tile for images larger than a tile (tiling.py), cropped back;
5. blend: restored * mask + (1 - mask) * reference, rounded to 8 bits; pixels outside the
   mask are then copied from the reference, so they come back bit for bit.

The network runs in float32 on the worker's device: it is small (27 M parameters) next to
the diffusion pipelines, and its output is a correction of a few percent, which half
precision would round away.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from services.worker.diffrir.checkpoint import load_network
from services.worker.diffrir.network import STRIDE, DiffRIR
from services.worker.diffrir.tiling import Tiling, run_tiled

logger = logging.getLogger(__name__)


def to_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, C) uint8 -> (1, C, H, W) float32 in [0, 1]; (H, W) bool -> (1, 1, H, W)."""
    # A copy: arrays of PIL images are read-only, which torch.from_numpy warns about.
    tensor = torch.from_numpy(np.array(pixels)).to(device=device, dtype=torch.float32)
    if tensor.ndim == 2:
        return tensor[None, None]
    return tensor.permute(2, 0, 1)[None] / 255.0


def pad_to_stride(inputs: torch.Tensor) -> torch.Tensor:
    """`inputs` reflect-padded on the right and bottom to multiples of `STRIDE`."""
    height, width = inputs.shape[-2:]
    pad_h, pad_w = -height % STRIDE, -width % STRIDE
    if not pad_h and not pad_w:
        return inputs
    return F.pad(inputs, (0, pad_w, 0, pad_h), mode="reflect")


def prior_noise(seed: int, prior_dim: int, device: torch.device) -> torch.Tensor:
    """The DDPM's starting noise (1, prior_dim), drawn on the CPU so a seed means the same
    noise on every device."""
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((1, prior_dim), generator=generator).to(device)


class DiffRIRRestorer:
    """A DiffRIR network loaded once per worker process; `name` goes into job records."""

    name = "diffrir"

    def __init__(
        self, network: DiffRIR, device: torch.device, tiling: Tiling, revision: str = ""
    ) -> None:
        self.network = network.to(device=device, dtype=torch.float32).eval()
        self.device = device
        self.tiling = tiling
        self.revision = revision

    @classmethod
    def load(cls, path: Path, device: torch.device, tiling: Tiling) -> DiffRIRRestorer:
        """The restorer with the weights of `path` (checkpoint.py reads the formats);
        its revision is `diffrir-` and the file's sha256 prefix."""
        started = time.perf_counter()
        network, checkpoint = load_network(path)
        logger.info(
            "loaded DiffRIR %s (sha256 %s) in %.1f s", path, checkpoint.sha256[:12],
            time.perf_counter() - started,
        )  # fmt: skip
        return cls(network, device, tiling, revision=f"diffrir-{checkpoint.sha256[:12]}")

    @torch.no_grad()
    def restore(
        self, generated: np.ndarray, reference: np.ndarray, mask: np.ndarray, seed: int = 0
    ) -> np.ndarray:
        """Restore `generated` (H, W, 3 uint8) inside `mask` (H, W bool, True = generated)
        against `reference` (H, W, 3 uint8); the DDPM starts from the noise of `seed`.
        Returns H, W, 3 uint8, equal to `reference` outside the mask bit for bit."""
        height, width = mask.shape
        reference_t = to_tensor(reference, self.device)
        mask_t = to_tensor(mask, self.device)

        # Steps 1-2: the network's input, padded to whole strides.
        inputs = torch.cat([to_tensor(generated, self.device), (1 - mask_t) * reference_t], 1)
        inputs = pad_to_stride(inputs)

        # Step 3: the prior, once for the whole image.
        noise = prior_noise(seed, self.network.config.prior_dim, self.device)
        prior = self.network.prior(inputs, noise)

        # Step 4: the U-net, tiled when the image is larger than a tile.
        restored = run_tiled(lambda tile: self.network.G(tile, prior), inputs, self.tiling)
        restored = restored[..., :height, :width]

        # Step 5: blend with the reference and return 8-bit pixels.
        blended = restored * mask_t + (1 - mask_t) * reference_t
        pixels = (blended[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8)
        result = pixels.cpu().numpy()
        result[~mask] = reference[~mask]  # bit for bit, whatever float rounding did
        return result
