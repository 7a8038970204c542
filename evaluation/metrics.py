"""Metrics: adherence read by the judge, a Fréchet distance on the judge's features, pixel
errors inside, outside and along a mask's seam; and the papers' real-weights metrics as
optional plug-ins.

Real-weights metrics (FID on Inception, CLIP score, DINO, LPIPS through `torchmetrics`)
need the package and weights on disk; `real_metric_status` says for each whether it can
run, and the report lists those that cannot as "unavailable" with the reason.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from toyworld.scenes import Scene


@dataclass
class Tally:
    """Right / asked counts per attribute."""

    right: dict[str, int]
    asked: dict[str, int]

    @classmethod
    def empty(cls) -> Tally:
        return cls({}, {})

    def add(self, attribute: str, ok: bool) -> None:
        self.right[attribute] = self.right.get(attribute, 0) + int(ok)
        self.asked[attribute] = self.asked.get(attribute, 0) + 1

    def rates(self) -> dict[str, float]:
        return {k: self.right[k] / self.asked[k] for k in sorted(self.asked)}


def score_scene(
    asked: Scene, seen: Scene, tally: Tally, sizes: bool = False, late: frozenset = frozenset()
) -> None:
    """Add to `tally` whether each asked attribute is what the judge saw: for each asked
    object, whether a shape of its kind (`shape`), of its colour (`colour`) and size
    (`size`, with `sizes`) is at its position (`position`: any shape there), and the
    background. Attributes in `late` (object index, name) are tallied under `<name>_late`,
    the others under `<name>_early` as well."""
    tally.add("background", seen.background == asked.background)
    for index, obj in enumerate(asked.objects):
        got = seen.object_at(obj.position)
        checks = {
            "position": got is not None,
            "shape": got is not None and got.shape == obj.shape,
            "colour": got is not None and got.colour == obj.colour,
        }
        if sizes:
            checks["size"] = got is not None and got.size == obj.size
        for name, ok in checks.items():
            tally.add(name, ok)
            if late or sizes:
                when = "late" if (index, name) in late else "early"
                if name in ("size", "position"):
                    tally.add(f"{name}_{when}", ok)
    if late:
        when = "late" if (-1, "background") in late else "early"
        tally.add(f"background_{when}", seen.background == asked.background)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to feature sets (N, D): FID's formula,
    the matrix square root by eigendecomposition (no scipy)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # tr(sqrt(A B)) = tr(sqrt(sqrt(A) B sqrt(A))), all symmetric PSD.
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * middle
    return float(distance)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.float64) / 255


def _mask(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask.convert("L")) >= 128


def masked_errors(output: Image.Image, truth: Image.Image, region: np.ndarray) -> dict[str, float]:
    """L1 and L2 (mean absolute / squared error, pixels in [0, 1]) over `region`."""
    if not region.any():
        return {"l1": 0.0, "l2": 0.0}
    diff = _pixels(output) - _pixels(truth)
    return {"l1": float(np.abs(diff[region]).mean()), "l2": float((diff[region] ** 2).mean())}


def seam_band(mask: Image.Image, width: int = 2) -> np.ndarray:
    """The pixels inside the mask within `width` pixels of its edge."""
    size = 2 * width + 1
    eroded = _mask(mask.convert("L").filter(ImageFilter.MinFilter(size)))
    return _mask(mask) & ~eroded


def seam_error(output: Image.Image, truth: Image.Image, mask: Image.Image) -> float:
    """Mean absolute error against the truth in the band just inside the mask's edge,
    where a generated region meets the kept one: colour shifts and seams show here."""
    return masked_errors(output, truth, seam_band(mask))["l1"]


def outside_errors(output: Image.Image, truth: Image.Image, mask: Image.Image) -> dict[str, float]:
    """L1/L2 outside the mask, and the largest difference there in 0..255 levels."""
    outside = ~_mask(mask)
    errors = masked_errors(output, truth, outside)
    diff = np.abs(_pixels(output) - _pixels(truth))[outside]
    errors["max_levels"] = float(diff.max() * 255) if diff.size else 0.0
    return errors


# The papers' metrics that need real weights: name -> (module, what it needs).
REAL_METRICS = {
    "fid_inception": ("torchmetrics.image.fid", "torchmetrics + torch-fidelity Inception weights"),
    "clip_score": ("torchmetrics.multimodal.clip_score", "torchmetrics + CLIP weights on disk"),
    "lpips": ("torchmetrics.image.lpip", "torchmetrics + LPIPS weights on disk"),
    "dino": ("transformers", "DINO weights on disk"),
}


def real_metric_status() -> dict[str, str]:
    """For each real-weights metric: "available" or "unavailable: <why>"."""
    status = {}
    for name, (module, needs) in REAL_METRICS.items():
        root = module.split(".")[0]
        if importlib.util.find_spec(root) is None:
            status[name] = f"unavailable: {root} is not installed (needs {needs})"
        else:
            status[name] = f"unavailable: no weights given (needs {needs})"
    return status
