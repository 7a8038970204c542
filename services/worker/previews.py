"""Previews while denoising: the current latents made into a small RGB image without the
VAE, by a fixed linear map of the latent channels (the widely used "latent RGB factors"),
stored as a JPEG blob with a short TTL and announced on the job's event channel
(services/common/job_previews.py).

The map costs one 4x3 matrix product over the latent pixels (64x64 for a 512x512 SD 1.5
image, 128x128 for 1024x1024 SDXL) and a JPEG of that size: well under a millisecond of
arithmetic and a few kilobytes, against a UNet evaluation of tens of milliseconds or more.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import redis
import torch
from PIL import Image

from services.common.blob_store import BlobStore
from services.common.job_previews import PreviewEntry, stage_preview
from services.common.redis_keys import RedisKeys

logger = logging.getLogger(__name__)

# Rows: latent channels; columns: R, G, B. Applied to the latents as the UNet sees them
# (scaled by the VAE's scaling_factor), they give roughly [-1, 1] RGB.
SD15_LATENT_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SD15_LATENT_RGB_BIAS = (0.0, 0.0, 0.0)
SDXL_LATENT_RGB = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_LATENT_RGB_BIAS = (0.1084, -0.0175, -0.0011)

PREVIEW_MAX_SIDE = 128  # a larger latent is scaled down to this longest side
PREVIEW_QUALITY = 75


def latents_to_rgb(latents: torch.Tensor, sdxl: bool) -> torch.Tensor:
    """One image's latents (channels, h, w) -> uint8 RGB (h, w, 3), on the CPU.

    A model whose latents do not have 4 channels (none of the supported profiles) shows
    its first three channels as they are."""
    values = latents.detach().to(device="cpu", dtype=torch.float32)
    if values.shape[0] == 4:
        factors = torch.tensor(SDXL_LATENT_RGB if sdxl else SD15_LATENT_RGB)
        bias = torch.tensor(SDXL_LATENT_RGB_BIAS if sdxl else SD15_LATENT_RGB_BIAS)
        rgb = torch.einsum("chw,cr->hwr", values, factors) + bias
    else:
        rgb = values[:3].permute(1, 2, 0)
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def preview_jpeg(latents: torch.Tensor, sdxl: bool) -> tuple[bytes, int, int]:
    """A JPEG of one image's latents, at the latent size (one pixel per latent pixel)
    shrunk to PREVIEW_MAX_SIDE; returns (bytes, width, height)."""
    image = Image.fromarray(latents_to_rgb(latents, sdxl).numpy(), mode="RGB")
    image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=PREVIEW_QUALITY)
    return buffer.getvalue(), image.width, image.height


@dataclass
class PreviewWriter:
    """Stores a preview every `every` denoising steps of each image (0: never)."""

    client: redis.Redis
    keys: RedisKeys
    blobs: BlobStore  # with the preview TTL
    every: int
    ttl_s: int

    def wants(self, image_step: int) -> bool:
        """Whether step `image_step` (1-based, within its image) gets a preview."""
        return self.every > 0 and image_step % self.every == 0

    def write(
        self,
        tenant: str,
        job_id: str,
        step: int,
        total: int,
        image_index: int,
        latents: torch.Tensor,
        sdxl: bool,
    ) -> None:
        """Store and announce one preview. A failure is logged, never the job's."""
        try:
            data, width, height = preview_jpeg(latents, sdxl)
            image_id = self.blobs.put(tenant, data, "image/jpeg")
            entry = PreviewEntry(step, total, image_index, image_id, width, height)
            with self.client.pipeline() as pipe:
                stage_preview(pipe, self.keys, tenant, job_id, entry, self.ttl_s)
                pipe.execute()
        except Exception:
            logger.warning("job %s: preview at step %d not stored", job_id, step, exc_info=True)
