"""Training pairs for DiffRIR: random masks, the paper's degradations, synthetic images.

A pair is built from one clean image x (B, 3, H, W in [0, 1]), as in the reference
training (`DiffRIRS2Model.feed_data`, `DiffRIRYMaskDataset`):

- a mask of the "generated" region: irregular brush strokes, boxes, or outpainting borders
  (probabilities 0.35 / 0.3 / 0.35 and sizes of the reference's x1 options, given there for
  256 px crops and scaled here to the crop size);
- the degraded image: a simplified Real-ESRGAN second-order degradation (two rounds of
  Gaussian blur, Gaussian noise and JPEG), then the colour degradation x * c1 + c2 with
  c1 = 1 + U(-gain_error, gain_error) (0.08 in the x1 stage-2 options, 0.06 in stage 1)
  and c2 = U(-bias_error, bias_error) (0.05), one (c1, c2) per image, clamped and rounded
  to 8 bits. Like the reference, the whole image is degraded; the network sees the reference
  only outside the mask, and the loss is taken on the output blended with the clean image,
  so only the masked region is learned.

Left out of the Real-ESRGAN degradation, for brevity: random resizing, Poisson noise,
anisotropic / generalised / plateau blur kernels and the final sinc filter.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

# The reference's x1 mask options are given for 256 px training crops.
REFERENCE_CROP = 256


@dataclass(frozen=True)
class Degradation:
    """Strengths of the degradations; the defaults are the reference x1 stage-2 options."""

    gain_error: float = 0.08  # c1 = 1 + U(-gain_error, gain_error)
    bias_error: float = 0.05  # c2 = U(-bias_error, bias_error)
    second_order: bool = True  # blur / noise / JPEG before the colour change
    blur_sigma: tuple[tuple[float, float], tuple[float, float]] = ((0.2, 3.0), (0.2, 1.5))
    second_blur_prob: float = 0.8
    noise_sigma: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 30.0), (1.0, 25.0))
    gray_noise_prob: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 95)


# -- masks -------------------------------------------------------------------------------


def irregular_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """1-4 brush strokes of 1-5 segments each (reference: max_len 240, max_width 100)."""
    scale = size / REFERENCE_CROP
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in range(rng.integers(1, 5)):
        x, y = float(rng.integers(size)), float(rng.integers(size))
        for _ in range(1 + rng.integers(5)):
            angle = 0.01 + rng.integers(4)
            if stroke % 2 == 0:
                angle = 2 * math.pi - angle
            length = (10 + rng.integers(240)) * scale
            width = max(1, round((5 + rng.integers(100)) * scale))
            end_x = float(np.clip(x + length * math.sin(angle), 0, size - 1))
            end_y = float(np.clip(y + length * math.cos(angle), 0, size - 1))
            draw.line([(x, y), (end_x, end_y)], fill=255, width=width)
            x, y = end_x, end_y
    return np.asarray(canvas) > 0


def box_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """1-4 boxes of 35-160 px sides, 10 px from the border (reference sizes at 256 px)."""
    scale = size / REFERENCE_CROP
    margin = round(10 * scale)
    smallest = max(1, round(35 * scale))
    largest = max(smallest + 1, min(round(160 * scale), size - 2 * margin))
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(1, 5)):
        height, width = rng.integers(smallest, largest, size=2)
        top = rng.integers(margin, size - margin - height + 1)
        left = rng.integers(margin, size - margin - width + 1)
        mask[top : top + height, left : left + width] = True
    return mask


def outpainting_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Borders of 15-40 % of the side, each side with probability 0.5 (at least one)."""
    sides = rng.random(4) < 0.5
    if not sides.any():
        sides[rng.integers(4)] = True
    widths = (rng.uniform(0.15, 0.4, size=4) * size).astype(int)
    mask = np.zeros((size, size), dtype=bool)
    top, bottom, left, right = (int(w) if on else 0 for w, on in zip(widths, sides, strict=True))
    mask[:top] = True
    mask[size - bottom :] = True
    mask[:, :left] = True
    mask[:, size - right :] = True
    return mask


def random_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """One training mask (H, W bool, True = generated), never empty."""
    while True:
        kind = rng.choice(3, p=[0.35, 0.3, 0.35])
        mask = (irregular_mask, box_mask, outpainting_mask)[kind](size, rng)
        if mask.any():
            return mask


# -- degradations ------------------------------------------------------------------------


def gaussian_blur(image: torch.Tensor, sigma: float, kernel_size: int = 21) -> torch.Tensor:
    """Isotropic Gaussian blur of (3, H, W), reflect-padded."""
    position = torch.arange(kernel_size, dtype=image.dtype) - kernel_size // 2
    profile = torch.exp(-(position**2) / (2 * sigma**2))
    kernel = torch.outer(profile, profile)
    kernel = (kernel / kernel.sum()).expand(image.shape[0], 1, kernel_size, kernel_size)
    padded = F.pad(image[None], [kernel_size // 2] * 4, mode="reflect")
    return F.conv2d(padded, kernel, groups=image.shape[0])[0]


def gaussian_noise(
    image: torch.Tensor, sigma: float, gray: bool, generator: torch.Generator
) -> torch.Tensor:
    """Add N(0, sigma / 255) noise, the same in every channel when `gray`."""
    shape = (1, *image.shape[1:]) if gray else image.shape
    noise = torch.randn(shape, generator=generator) * sigma / 255
    return (image + noise).clamp(0, 1)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A JPEG round trip of (3, H, W) at `quality`."""
    pixels = (image.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(decoded).permute(2, 0, 1)


def second_order(
    image: torch.Tensor, options: Degradation, rng: np.random.Generator, generator: torch.Generator
) -> torch.Tensor:
    """Two rounds of blur, noise and JPEG (the simplified Real-ESRGAN pipeline)."""
    for round_index in range(2):
        if round_index == 0 or rng.random() < options.second_blur_prob:
            image = gaussian_blur(image, float(rng.uniform(*options.blur_sigma[round_index])))
        sigma = float(rng.uniform(*options.noise_sigma[round_index]))
        image = gaussian_noise(
            image, sigma, bool(rng.random() < options.gray_noise_prob), generator
        )
        image = jpeg(image, int(rng.integers(*options.jpeg_quality, endpoint=True)))
    return image


def colour_shift(image: torch.Tensor, gain: float, bias: float) -> torch.Tensor:
    """DiffRIR's colour degradation: x * c1 + c2, clamped to [0, 1]."""
    return (image * gain + bias).clamp(0, 1)


def degrade(
    images: torch.Tensor, options: Degradation, rng: np.random.Generator, generator: torch.Generator
) -> torch.Tensor:
    """Each image of (B, 3, H, W) degraded (module docstring), rounded to 8 bits."""
    degraded = []
    for image in images:
        if options.second_order:
            image = second_order(image, options, rng, generator)
        gain = 1 + rng.uniform(-options.gain_error, options.gain_error)
        bias = rng.uniform(-options.bias_error, options.bias_error)
        degraded.append(colour_shift(image, float(gain), float(bias)))
    return (torch.stack(degraded) * 255).round() / 255


# -- synthetic images --------------------------------------------------------------------


def synthetic_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) uint8 image with the structure the restorer must keep: smooth
    colour gradients, a few flat shapes with edges, and fine texture."""
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        field = rng.uniform(0.3, 0.7) * np.ones((size, size))
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.5, 4), rng.uniform(0.5, 4), rng.uniform(0, 2 * np.pi)
            field += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
        channels.append(field)
    image = Image.fromarray((np.clip(np.stack(channels, -1), 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 6)):
        corner = rng.integers(0, size, 2)
        box = [*corner, *(corner + rng.integers(size // 8, size // 2, 2))]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([int(v) for v in box], fill=colour)
    texture = rng.normal(0, rng.uniform(2, 10), (size, size, 3))
    return np.clip(np.asarray(image, dtype=np.float64) + texture, 0, 255).astype(np.uint8)
