"""The toy models' architectures: the classes of the real SD 1.5 profile (CLIPTokenizer,
CLIPTextModel, AutoencoderKL, UNet2DConditionModel, a 9-channel inpainting UNet,
ControlNetModel) sized for 64 x 64 images and a CPU.

The VAE downsamples by 4 (three blocks, not SD's four): 16 x 16 x 4 latents keep a small
shape's outline, which 8 x 8 would lose. Cross-attention sits at both UNet levels, since
the prompt says where things are.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

IMAGE_SIZE = 64
LATENT_SIZE = 16
LATENT_CHANNELS = 4
TEXT_HIDDEN_SIZE = 64
MODEL_MAX_LENGTH = 77
INPAINT_IN_CHANNELS = 9  # 4 noisy latent + 1 mask + 4 masked-image latent, as SD inpainting
SEED = 0


def build_vae() -> AutoencoderKL:
    """Three blocks of 16, 32, 64 channels: 64 px images, 16 px latents."""
    torch.manual_seed(SEED + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        # One group: a group norm removes each group's mean and scale, so a group of one
        # or two channels cannot say what colour a flat area is (16 groups of 16 channels
        # decoded every flat background as the same grey-orange).
        norm_num_groups=1,
        # No attention in the middle: flat shapes need no global context to encode.
        mid_block_add_attention=False,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,  # set after training to 1 / the latents' std, as SD's 0.18215
    )
    # The posterior's log-variance starts at -8 (std 0.02), not 0: with unit noise on
    # latents that start near zero the decoder sees only noise and learns the mean colour
    # for hundreds of steps. The small KL weight then keeps it small, so sampled latents
    # (the pipelines sample them) stay close to the mean.
    with torch.no_grad():
        vae.encoder.conv_out.bias[LATENT_CHANNELS:] = -8.0  # type: ignore[attr-defined]
    return vae


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A two-layer CLIP text transformer over the world's vocabulary."""
    torch.manual_seed(SEED + 2)
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_HIDDEN_SIZE,
            intermediate_size=2 * TEXT_HIDDEN_SIZE,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MODEL_MAX_LENGTH,
            projection_dim=TEXT_HIDDEN_SIZE,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def build_unet(in_channels: int = LATENT_CHANNELS) -> UNet2DConditionModel:
    """Two levels (16 and 8 latent pixels) of 32 and 64 channels, cross-attention at both."""
    torch.manual_seed(SEED + 3)
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=in_channels,
        out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=TEXT_HIDDEN_SIZE,
        attention_head_dim=8,
        norm_num_groups=4,  # 8 or 16 channels per group, as SD's 10 (see build_vae)
    )


def inpainting_unet_from(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A 9-channel UNet starting from a text-to-image one, as SD inpainting started from
    SD: the same weights, the input convolution widened with zeros for the mask and the
    masked image's latents (so it first behaves exactly as `unet`)."""
    inpaint = build_unet(INPAINT_IN_CHANNELS)
    state = unet.state_dict()  # type: ignore[attr-defined]
    weight = state["conv_in.weight"]
    widened = torch.zeros(weight.shape[0], INPAINT_IN_CHANNELS, *weight.shape[2:])
    widened[:, : weight.shape[1]] = weight
    state["conv_in.weight"] = widened
    inpaint.load_state_dict(state)  # type: ignore[attr-defined]
    return inpaint


def controlnet_from(unet: UNet2DConditionModel) -> ControlNetModel:
    """A canny ControlNet initialised from `unet` (zero convolutions at zero, as ControlNet
    training starts); conditioning encoder down to the 1/4 latent scale."""
    torch.manual_seed(SEED + 4)
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 32))
