"""The DiffRIR network (DiffIR stage-2 style) at scale x1, with the released checkpoints' names.

Reference-based restoration of an inpainted or outpainted image: the generated image and
the preserved reference go in, a restored image comes out. Three parts, named as in the
released `params_ema` state dicts (Zj-BinXia/DiffRIR, `DiffRIRS2`), so those load strictly:

- `condition` (CPEN, the prior encoder): the 6-channel input, pixel-unshuffled by 4 to 96
  channels, through convolutions and residual blocks, globally average-pooled and passed
  through an MLP: one prior vector of `4 * prior_feats` (256) numbers per image;
- `denoise` and `diffusion`: a 4-step DDPM over that prior vector. It starts from Gaussian
  noise and, at each step, the denoiser MLP predicts the clean prior (x0) from the noisy
  one, the step index and the CPEN vector; the step's posterior mean is the next state;
- `G` (DIRformer): a Restormer-like 4-level U-net on the pixel-unshuffled input, in which
  every transformer block scales and shifts its features by a linear map of the prior
  (`kernel`); a pixel-shuffle tail returns to full resolution, added to the generated RGB.

`diffusion.model` and `diffusion.condition` are the same modules as `denoise` and
`condition`, so each of their parameters appears under two names, as in the checkpoints.
The DDPM's schedule is stored as buffers (`diffusion.betas`, ...), also as in the
checkpoints.

The U-net downsamples 4 (pixel unshuffle) x 2 x 2 x 2 = 32 times: sides must be multiples
of `STRIDE`; restorer.py pads by reflection to get there (as the reference inference does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 32  # pixel unshuffle 4, then three 2x downsamplings
UNSHUFFLE = 4
IMAGE_CHANNELS = 3


@dataclass(frozen=True)
class DiffRIRConfig:
    """Sizes of the network. The defaults are the released x1 checkpoints' (the reference
    `inference_diffrir.py`); small values make a network for tests and quick training runs."""

    dim: int = 64
    num_blocks: tuple[int, int, int, int] = (13, 1, 1, 1)
    num_refinement_blocks: int = 13
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.2
    n_encoder_res: int = 9
    # CPEN and denoiser width (fixed at 64 in the reference); the prior has 4x as many numbers.
    prior_feats: int = 64
    n_denoise_res: int = 1
    timesteps: int = 4
    linear_start: float = 0.1
    linear_end: float = 0.99

    @property
    def prior_dim(self) -> int:
        """Length of the prior vector that modulates every transformer block."""
        return 4 * self.prior_feats

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for a checkpoint's `config` entry."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiffRIRConfig:
        """The config a checkpoint's `config` entry describes."""
        tuples = {"num_blocks", "heads"}  # lists once stored as JSON
        fields: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in values.items()}
        return cls(**fields)


# -- DIRformer ---------------------------------------------------------------------------


class BiasFreeLayerNorm(nn.Module):
    """LayerNorm over channels without mean subtraction or bias (Restormer's BiasFree)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.var(dim=1, keepdim=True, unbiased=False)
        return x / torch.sqrt(variance + 1e-5) * self.weight[:, None, None]


class ChannelNorm(nn.Module):
    """Per-pixel normalisation over channels of an NCHW tensor (`body` as in the checkpoints)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = BiasFreeLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def modulate(x: torch.Tensor, prior: torch.Tensor, kernel: nn.Module) -> torch.Tensor:
    """x * scale + shift, both per channel, a linear map (`kernel`) of the prior vector."""
    scale, shift = kernel(prior)[:, :, None, None].chunk(2, dim=1)
    return x * scale + shift


class PriorKernel(nn.Sequential):
    """prior (B, prior_dim) -> per-channel scale and shift (B, 2 * channels): `kernel.0`."""

    def __init__(self, prior_dim: int, channels: int) -> None:
        super().__init__(nn.Linear(prior_dim, 2 * channels, bias=False))


class GatedFeedForward(nn.Module):
    """Restormer's gated depthwise-conv feed-forward, after prior modulation."""

    def __init__(self, channels: int, expansion: float, prior_dim: int) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.project_in = nn.Conv2d(channels, 2 * hidden, kernel_size=1, bias=False)
        self.dwconv = nn.Conv2d(
            2 * hidden, 2 * hidden, kernel_size=3, padding=1, groups=2 * hidden, bias=False
        )
        self.project_out = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)
        self.kernel = PriorKernel(prior_dim, channels)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        x = self.project_in(modulate(x, prior, self.kernel))
        gate, value = self.dwconv(x).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class ChannelAttention(nn.Module):
    """Restormer's transposed (channel) self-attention, after prior modulation.

    The attention map is channels x channels per head, from queries and keys normalised
    over all pixels: it sees the whole input at once (the reason tiled runs differ a little
    from untiled ones, tiling.py)."""

    def __init__(self, channels: int, heads: int, prior_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.kernel = PriorKernel(prior_dim, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1, bias=False)
        self.qkv_dwconv = nn.Conv2d(
            3 * channels, 3 * channels, kernel_size=3, padding=1, groups=3 * channels, bias=False
        )
        self.project_out = nn.Conv2d(channels, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        qkv = self.qkv_dwconv(self.qkv(modulate(x, prior, self.kernel)))
        q, k, v = (t.reshape(batch, self.heads, -1, height * width) for t in qkv.chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attention = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = (attention @ v).reshape(batch, channels, height, width)
        return self.project_out(out)


class TransformerBlock(nn.Module):
    """Pre-norm attention and feed-forward, both modulated by the prior."""

    def __init__(self, channels: int, heads: int, expansion: float, prior_dim: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(channels)
        self.attn = ChannelAttention(channels, heads, prior_dim)
        self.norm2 = ChannelNorm(channels)
        self.ffn = GatedFeedForward(channels, expansion, prior_dim)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), prior)
        return x + self.ffn(self.norm2(x), prior)


class TransformerStage(nn.ModuleList):
    """Blocks run in order, each with the same prior (keys `<stage>.<i>.…`)."""

    def __init__(
        self, count: int, channels: int, heads: int, expansion: float, prior_dim: int
    ) -> None:
        super().__init__(
            TransformerBlock(channels, heads, expansion, prior_dim) for _ in range(count)
        )

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        for block in self:
            x = block(x, prior)
        return x


class PatchEmbed(nn.Module):
    """3x3 convolution into the first level's width (`proj`)."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: conv to C/2, pixel unshuffle 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1, bias=False),
            nn.PixelUnshuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: conv to 2C, pixel shuffle 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=False),
            nn.PixelShuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A biased 3x3 convolution that keeps the size."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class DIRformer(nn.Module):
    """The prior-modulated Restormer U-net at x1: input (B, 6, H, W), output (B, 3, H, W)."""

    def __init__(self, config: DiffRIRConfig) -> None:
        super().__init__()
        dim, heads, blocks = config.dim, config.heads, config.num_blocks
        expansion, prior_dim = config.ffn_expansion_factor, config.prior_dim

        def stage(count: int, channels: int, level_heads: int) -> TransformerStage:
            return TransformerStage(count, channels, level_heads, expansion, prior_dim)

        self.pixel_unshuffle = nn.PixelUnshuffle(UNSHUFFLE)
        self.patch_embed = PatchEmbed(2 * IMAGE_CHANNELS * UNSHUFFLE**2, dim)
        self.encoder_level1 = stage(blocks[0], dim, heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(blocks[1], dim * 2, heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(blocks[2], dim * 4, heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(blocks[3], dim * 8, heads[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=False)
        self.decoder_level3 = stage(blocks[2], dim * 4, heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=False)
        self.decoder_level2 = stage(blocks[1], dim * 2, heads[1])
        self.up2_1 = Upsample(dim * 2)
        # Level 1 keeps the concatenated 2 * dim channels (no reduction), as in Restormer.
        self.decoder_level1 = stage(blocks[0], dim * 2, heads[0])
        self.refinement = stage(config.num_refinement_blocks, dim * 2, heads[0])
        # Back to full resolution: two (conv to 4C, pixel shuffle 2), then conv to RGB.
        self.tail = nn.Sequential(
            nn.Sequential(
                conv3x3(dim * 2, dim * 8),
                nn.PixelShuffle(2),
                conv3x3(dim * 2, dim * 8),
                nn.PixelShuffle(2),
            ),
            conv3x3(dim * 2, IMAGE_CHANNELS),
        )

    def forward(self, inputs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        level1 = self.encoder_level1(self.patch_embed(self.pixel_unshuffle(inputs)), prior)
        level2 = self.encoder_level2(self.down1_2(level1), prior)
        level3 = self.encoder_level3(self.down2_3(level2), prior)
        latent = self.latent(self.down3_4(level3), prior)

        x = self.reduce_chan_level3(torch.cat([self.up4_3(latent), level3], dim=1))
        x = self.decoder_level3(x, prior)
        x = self.reduce_chan_level2(torch.cat([self.up3_2(x), level2], dim=1))
        x = self.decoder_level2(x, prior)
        x = self.decoder_level1(torch.cat([self.up2_1(x), level1], dim=1), prior)
        x = self.refinement(x, prior)
        # A residual on the generated image: the network learns a correction of it.
        return self.tail(x) + inputs[:, :IMAGE_CHANNELS]


# -- prior: CPEN, denoiser, DDPM ---------------------------------------------------------


class ResBlock(nn.Module):
    """conv, LeakyReLU, conv, plus the input (`body.0`, `body.2`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels), nn.LeakyReLU(0.1), conv3x3(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class PriorEncoder(nn.Module):
    """CPEN: (B, 6, H, W) -> the conditioning vector (B, 4 * feats), pooled over the image."""

    def __init__(self, feats: int, n_res: int) -> None:
        super().__init__()
        self.pixel_unshuffle = nn.PixelUnshuffle(UNSHUFFLE)
        self.E = nn.Sequential(
            conv3x3(2 * IMAGE_CHANNELS * UNSHUFFLE**2, feats),
            nn.LeakyReLU(0.1),
            *(ResBlock(feats) for _ in range(n_res)),
            conv3x3(feats, feats * 2),
            nn.LeakyReLU(0.1),
            conv3x3(feats * 2, feats * 2),
            nn.LeakyReLU(0.1),
            conv3x3(feats * 2, feats * 4),
            nn.LeakyReLU(0.1),
            nn.AdaptiveAvgPool2d(1),
        )
        self.mlp = nn.Sequential(
            nn.Linear(feats * 4, feats * 4),
            nn.LeakyReLU(0.1),
            nn.Linear(feats * 4, feats * 4),
            nn.LeakyReLU(0.1),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.E(self.pixel_unshuffle(inputs)).flatten(1))


class ResMLP(nn.Module):
    """Linear + LeakyReLU (`resmlp.0`); no skip, despite the name, as in the reference."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.resmlp = nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resmlp(x)


class PriorDenoiser(nn.Module):
    """Predicts the clean prior from [condition, t / (10 * timesteps), noisy prior]."""

    def __init__(self, prior_dim: int, n_res: int, timesteps: int) -> None:
        super().__init__()
        self.max_period = timesteps * 10
        self.resmlp = nn.Sequential(
            nn.Linear(2 * prior_dim + 1, prior_dim),
            nn.LeakyReLU(0.1),
            *(ResMLP(prior_dim) for _ in range(n_res)),
        )

    def forward(
        self, noisy: torch.Tensor, step: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        t = (step.to(noisy.dtype) / self.max_period).view(-1, 1)
        return self.resmlp(torch.cat([condition, t, noisy], dim=1))


def linear_schedule(config: DiffRIRConfig) -> dict[str, torch.Tensor]:
    """The DDPM's buffers for a "linear" beta schedule (betas evenly spaced in sqrt), under
    the checkpoints' names. Sampling uses the two posterior-mean coefficients; the rest are
    stored because the released state dicts carry them."""
    betas = np.linspace(config.linear_start**0.5, config.linear_end**0.5, config.timesteps) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    values = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "log_one_minus_alphas_cumprod": np.log(1.0 - alphas_cumprod),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev)
        * np.sqrt(1.0 - betas)
        / (1.0 - alphas_cumprod),
    }
    return {name: torch.tensor(value, dtype=torch.float32) for name, value in values.items()}


class PriorDiffusion(nn.Module):
    """The DDPM over the prior vector: x0-prediction, deterministic posterior means."""

    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    def __init__(
        self, denoiser: PriorDenoiser, encoder: PriorEncoder, config: DiffRIRConfig
    ) -> None:
        super().__init__()
        self.model = denoiser
        self.condition = encoder
        for name, value in linear_schedule(config).items():
            self.register_buffer(name, value)

    def forward(self, inputs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The prior for `inputs` (B, 6, H, W), sampled from `noise` (B, prior_dim)."""
        return self.sample(self.condition(inputs), noise)

    def sample(self, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Run the reverse chain from `noise` to the prior, conditioned on the CPEN vector.
        Like the reference, each step takes the posterior mean and adds no noise."""
        prior = noise
        for step in reversed(range(self.posterior_mean_coef1.shape[0])):
            steps = torch.full((prior.shape[0],), step, device=prior.device)
            clean = self.model(prior, steps, condition)
            prior = (
                self.posterior_mean_coef1[step] * clean + self.posterior_mean_coef2[step] * prior
            )
        return prior


class DiffRIR(nn.Module):
    """The whole network: `G`, `condition`, `denoise` and `diffusion`, as in the checkpoints.

    `forward(inputs, noise)` maps (B, 6, H, W) inputs in [0, 1] (generated RGB, then
    (1 - mask) * reference RGB; H, W multiples of `STRIDE`) to the restored RGB (B, 3, H, W),
    not yet blended with the reference."""

    def __init__(self, config: DiffRIRConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiffRIRConfig()
        self.G = DIRformer(self.config)
        self.condition = PriorEncoder(self.config.prior_feats, self.config.n_encoder_res)
        self.denoise = PriorDenoiser(
            self.config.prior_dim, self.config.n_denoise_res, self.config.timesteps
        )
        self.diffusion = PriorDiffusion(self.denoise, self.condition, self.config)

    def prior(self, inputs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The prior vector (B, prior_dim) of whole inputs: computed once per image."""
        return self.diffusion(inputs, noise)

    def forward(self, inputs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.G(inputs, self.prior(inputs, noise))
