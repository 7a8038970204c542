"""Build tiny Stable Diffusion 1.5- and SDXL-architecture models with random weights.

`python -m services.worker.testing.tiny_models [--out DIR]` writes a complete
`StableDiffusionPipeline` folder (UNet, VAE, CLIP text encoder, CLIP tokenizer, scheduler)
that loads through the same `from_pretrained` code as the real checkpoints; `--inpainting`
writes the matching `StableDiffusionInpaintPipeline` (SD 1.5 inpainting's 9-channel UNet,
the same other parts); `--all` builds every tiny model under the models directory: those
two, a canny `ControlNetModel` for the SD 1.5 UNet, and the SDXL set
(`StableDiffusionXLPipeline`: two CLIP text encoders, the second with a projection, two
tokenizers, a "text_time" UNet; its 9-channel inpainting variant; its ControlNet), and for
the Beyond CLIP profile a tiny `LlamaForCausalLM` with a Llama-style tokenizer and an
untrained encoder checkpoint (mapping network and RepAdapters) for it. Nothing
is downloaded: even the tokenizer's byte-level BPE vocabulary is trained here on a small
built-in English corpus and written in CLIP's own vocab.json/merges.txt format.

The build is deterministic (seeded) and idempotent: an existing complete build is kept, and
a new one is assembled in a temporary folder and renamed into place, so a crash or two
processes building at once never leave a half-written model behind.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from services.worker.profiles import (
    BUILD_FORMAT,
    MANIFEST_NAME,
    TINY_BEYOND_CLIP_ENCODER_DIRNAME,
    TINY_LLAMA_DIRNAME,
    TINY_SD15_CONTROLNET_DIRNAME,
    TINY_SD15_DIRNAME,
    TINY_SD15_INPAINTING_DIRNAME,
    TINY_SDXL_CONTROLNET_DIRNAME,
    TINY_SDXL_DIRNAME,
    TINY_SDXL_INPAINTING_DIRNAME,
    TOY_SD15_CONTROLNET_DIRNAME,
    TOY_SD15_DIRNAME,
    TOY_SD15_INPAINTING_DIRNAME,
    ModelProfile,
    local_sources,
    read_manifest,
)

if TYPE_CHECKING:
    from diffusers import PNDMScheduler

logger = logging.getLogger(__name__)

# SD 1.5 inpainting's UNet input: 4 noisy latent + 1 mask + 4 masked-image latent channels.
INPAINT_UNET_IN_CHANNELS = 9

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
TEXT_HIDDEN_SIZE = 32
# SDXL's second text encoder (OpenCLIP bigG in the real model) is the wider one; its pooled,
# projected output conditions the UNet together with six size/crop numbers.
SDXL_TEXT_2_HIDDEN_SIZE = 64
SDXL_TIME_EMBED_DIM = 8
# SDXL's tokenizer_2 pads with "!" (id 0), not with EOS as tokenizer 1 does.
SDXL_TOKENIZER_2_PAD_TOKEN = "!"
# ControlNet's conditioning encoder: three stride-2 convolutions take the control image to
# the latent resolution (1/8), as in the real ControlNets, at a fraction of the width.
CONTROLNET_CONDITIONING_CHANNELS = (8, 16, 32, 32)
BPE_MERGES = 1000
SEED = 0
# The tiny LLM (Llama architecture) of the Beyond CLIP profile. Its tokenizer learns fewer
# merges than the CLIP one (120 of its 248), so the two segment a prompt differently, as
# LLaMA's and CLIP's do.
LLM_BOS_TOKEN, LLM_EOS_TOKEN, LLM_UNK_TOKEN = "<s>", "</s>", "<unk>"
LLM_BPE_MERGES = 120
LLM_HIDDEN_SIZE = 64
LLM_CONTEXT = 512

# Prompt-like English for the tokenizer's BPE merges: enough words that common prompt
# vocabulary tokenizes into a few pieces, as with the real CLIP tokenizer.
CORPUS = """
A photo of a cat sitting on a red sofa in a cozy living room, warm evening light.
A majestic lion resting on a rock at sunset, golden hour, highly detailed, 8k.
An astronaut riding a horse on the moon, digital art, trending on artstation.
A watercolor painting of a quiet harbor with small fishing boats and seagulls.
A futuristic city skyline at night with neon lights reflecting on wet streets.
A bowl of fresh fruit on a wooden table: apples, oranges, grapes and a banana.
Portrait of an old man with a white beard, dramatic lighting, oil painting.
A snowy mountain landscape with pine trees and a frozen lake under a blue sky.
A small wooden cabin in the forest, smoke rising from the chimney, autumn leaves.
A cute puppy playing with a ball in the green grass of a sunny garden.
A bustling market street in an old town, people walking, colorful umbrellas.
A dragon flying over a medieval castle, fantasy illustration, epic composition.
A cup of coffee and a croissant on a marble counter, soft morning light.
A vintage car parked in front of a diner, retro style, vibrant colors.
A field of sunflowers under a clear summer sky, wide angle, realistic photo.
A bird perched on a branch covered in cherry blossoms, spring, shallow depth of field.
A robot reading a book in a library full of tall shelves, cinematic lighting.
The quick brown fox jumps over the lazy dog near the river bank.
A beautiful woman wearing a long blue dress standing by the window, studio photo.
A child flying a kite on the beach, waves, clouds, bright and cheerful.
Close-up of a butterfly on a purple flower, macro photography, sharp focus.
A sailing ship on a stormy sea, dark clouds, lightning, dramatic mood.
An ancient temple in the jungle covered with vines, mysterious atmosphere.
A modern kitchen with white cabinets, a large island and pendant lamps.
A steaming bowl of ramen with egg, noodles and green onions, food photography.
A black and white photograph of a busy train station in the rain.
A teddy bear wearing a red scarf sitting on a snowy bench in the park.
Two people walking along a path through a misty forest in the early morning.
A glass of red wine next to a candle on a dark table, low key lighting.
A colorful hot air balloon floating above green hills and a small village.
The image shows a large white building with many windows and a clock tower.
Generate an image of a happy family having a picnic by the lake in summer.
Make it night, add stars to the sky and turn on the lights in the house.
Remove the person on the left and replace the background with a beach.
high quality, masterpiece, best quality, ultra realistic, sharp, detailed texture
low quality, blurry, distorted, deformed, ugly, bad anatomy, watermark, text
"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _clip_text_processing() -> tuple[object, object]:
    """CLIP's normalizer and pre-tokenizer (as transformers' CLIPTokenizer applies them)."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return normalizer, pre_tokenizer


def _clip_words(corpus: str) -> Counter[tuple[str, ...]]:
    """Split `corpus` into words the way transformers' CLIPTokenizer does before BPE, each
    word as byte-level symbols with CLIP's end-of-word suffix on the last one."""
    normalizer, pre_tokenizer = _clip_text_processing()
    words: Counter[tuple[str, ...]] = Counter()
    for line in corpus.splitlines():
        text = normalizer.normalize_str(line)  # type: ignore[attr-defined]
        for piece, _ in pre_tokenizer.pre_tokenize_str(text):  # type: ignore[attr-defined]
            words[(*piece[:-1], piece[-1] + "</w>")] += 1
    return words


def train_clip_bpe(corpus: str, num_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn byte-level BPE merges on `corpus` and lay out CLIP's vocabulary.

    A plain BPE trainer written out here rather than `tokenizers`' trainer, whose
    tie-breaking differs from run to run: the build must be byte-for-byte reproducible.
    Ties go to the lexicographically smallest pair; a pair must occur at least twice.

    Returns (vocab, merges) in CLIP's layout: the 256 byte symbols, the same with the
    end-of-word suffix `</w>`, one token per merge in merge order, then BOS and EOS.
    """
    words = _clip_words(corpus)
    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < 2:
            break
        merges.append(best)
        words = Counter({_merge(word, best): count for word, count in words.items()})

    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(pair) for pair in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):  # a merge re-created an existing token: not CLIP-shaped
        raise RuntimeError("trained BPE merges collide with the byte alphabet")
    return vocab, merges


@functools.cache
def _corpus_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The tokenizer's BPE on the built-in corpus: a pure function taking seconds, computed
    once per process since a worker builds two pipelines with the same tokenizer."""
    return train_clip_bpe(CORPUS, BPE_MERGES)


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`word` with every occurrence of `pair` joined into one symbol."""
    merged: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            merged.append(word[i] + word[i + 1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


def sd15_scheduler() -> PNDMScheduler:
    """SD 1.5's own scheduler configuration (what its pipelines sample with): a
    `PNDMScheduler` (diffusers is imported on use, like every builder here)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_tokenizer(
    directory: Path,
    pad_token: str = EOS_TOKEN,
    bpe: tuple[dict[str, int], list[tuple[str, str]]] | None = None,
) -> object:
    """Write a CLIP tokenizer (vocab.json, merges.txt, configs) to `directory` and return it.
    `bpe`: the (vocab, merges) of `train_clip_bpe`; default: those of the built-in corpus."""
    from transformers import CLIPTokenizer

    vocab, merges = bpe if bpe is not None else _corpus_bpe()
    with tempfile.TemporaryDirectory() as raw:
        raw_dir = Path(raw)
        (raw_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (raw_dir / "merges.txt").write_text(
            "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
        )
        tokenizer = CLIPTokenizer.from_pretrained(
            raw_dir,
            bos_token=BOS_TOKEN,
            eos_token=EOS_TOKEN,
            unk_token=EOS_TOKEN,
            pad_token=pad_token,
            model_max_length=MODEL_MAX_LENGTH,
        )
    tokenizer.save_pretrained(directory)
    # save_pretrained writes tokenizer.json; keep CLIP's slow-format files beside it too.
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    )
    return tokenizer


def _build_unet(
    in_channels: int,
    seed: int,
    cross_attention_dim: int = TEXT_HIDDEN_SIZE,
    **architecture: object,
) -> object:
    """SD 1.5's UNet block kinds at a fraction of the width and depth; `architecture` adds
    SDXL's options."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        # Cross-attention sits at the lower resolution only: at full latent resolution it
        # would triple the CPU time.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
        **architecture,
    )


def _build_sdxl_unet(in_channels: int, seed: int) -> object:
    """The tiny UNet with SDXL's conditioning: cross-attention over both text encoders'
    features concatenated, and the "text_time" addition embedding (the pooled text
    embedding plus original size, crop and target size, six numbers)."""
    return _build_unet(
        in_channels,
        seed,
        cross_attention_dim=TEXT_HIDDEN_SIZE + SDXL_TEXT_2_HIDDEN_SIZE,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * SDXL_TIME_EMBED_DIM + SDXL_TEXT_2_HIDDEN_SIZE,
    )


def _build_controlnet(unet: object, seed: int) -> object:
    """A canny ControlNet for `unet`: initialised from it as ControlNet training starts
    (diffusers' `ControlNetModel.from_unet`), then its zero convolutions get seeded random
    weights. A trained ControlNet's are not zero, and with zeros the control image would
    have no effect at all: no test could tell that from broken wiring."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(
        unet,  # type: ignore[arg-type]
        conditioning_embedding_out_channels=CONTROLNET_CONDITIONING_CHANNELS,
    )
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        conv.reset_parameters()  # type: ignore[operator]
    # The conditioning embedding (eight convolutions with SiLU between them) gets He
    # initialisation, which keeps the signal's scale through them. PyTorch's default
    # initialisation shrinks it about threefold per layer: the control image's share of
    # the embedding fell to 1e-5 of its bias, so moving the image changed a few output
    # pixels by one level or none, depending on rounding.
    for module in controlnet.controlnet_cond_embedding.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    return controlnet


def _build_shared_components(tokenizer: object) -> dict[str, object]:
    """The VAE, text encoder, tokenizer and scheduler: the same (same seeds, same bytes) in
    the text-to-image and the inpainting build, as SD 1.5 inpainting shares SD 1.5's."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    # Each component gets its own seed, so changing one never changes the others' weights.
    vae = _build_vae(scaling_factor=0.18215)  # SD 1.5's latent scale
    torch.manual_seed(SEED + 2)
    vocab_size = len(tokenizer)  # type: ignore[arg-type]
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=TEXT_HIDDEN_SIZE,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MODEL_MAX_LENGTH,
            projection_dim=TEXT_HIDDEN_SIZE,
            bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
            eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
            pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        )
    )
    scheduler = sd15_scheduler()
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def _build_vae(scaling_factor: float) -> object:
    """Four blocks, as SD 1.5's and SDXL's VAE: three downsamplings, so latents are 1/8 of
    the image side."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(SEED + 1)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
        scaling_factor=scaling_factor,
    )


def _build_sdxl_shared_components(tokenizer: object, tokenizer_2: object) -> dict[str, object]:
    """SDXL's VAE, two text encoders, two tokenizers and scheduler: shared byte for byte by
    the text-to-image and the inpainting build, as SDXL inpainting shares SDXL base's."""
    import torch
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def text_config(hidden_size: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=len(tokenizer),  # type: ignore[arg-type]
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MODEL_MAX_LENGTH,
            projection_dim=hidden_size,
            bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
            eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
            pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        )

    vae = _build_vae(scaling_factor=0.13025)  # SDXL's latent scale
    torch.manual_seed(SEED + 4)
    text_encoder = CLIPTextModel(text_config(TEXT_HIDDEN_SIZE))
    torch.manual_seed(SEED + 5)
    text_encoder_2 = CLIPTextModelWithProjection(text_config(SDXL_TEXT_2_HIDDEN_SIZE))
    # SDXL base 1.0's own scheduler configuration.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
        use_karras_sigmas=False,
    )
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "scheduler": scheduler,
    }


def build_pipeline(tokenizer: object) -> object:
    """Assemble a `StableDiffusionPipeline` of tiny seeded random-weight components."""
    from diffusers import StableDiffusionPipeline

    unet = _build_unet(in_channels=4, seed=SEED)
    return StableDiffusionPipeline(unet=unet, **_build_shared_components(tokenizer))


def build_inpaint_pipeline(tokenizer: object) -> object:
    """Assemble a `StableDiffusionInpaintPipeline`: SD 1.5 inpainting's architecture, whose
    UNet takes 9 channels (4 noisy latent + 1 mask + 4 masked-image latent)."""
    from diffusers import StableDiffusionInpaintPipeline

    unet = _build_unet(in_channels=INPAINT_UNET_IN_CHANNELS, seed=SEED + 3)
    return StableDiffusionInpaintPipeline(unet=unet, **_build_shared_components(tokenizer))


def build_sdxl_pipeline(tokenizer: object, tokenizer_2: object) -> object:
    """Assemble a `StableDiffusionXLPipeline` of tiny seeded random-weight components."""
    from diffusers import StableDiffusionXLPipeline

    unet = _build_sdxl_unet(in_channels=4, seed=SEED + 6)
    return StableDiffusionXLPipeline(
        unet=unet, **_build_sdxl_shared_components(tokenizer, tokenizer_2)
    )


def build_sdxl_inpaint_pipeline(tokenizer: object, tokenizer_2: object) -> object:
    """Assemble a `StableDiffusionXLInpaintPipeline` with a 9-channel UNet (SDXL inpainting
    0.1's architecture); like it, no aesthetic-score conditioning."""
    from diffusers import StableDiffusionXLInpaintPipeline

    unet = _build_sdxl_unet(in_channels=INPAINT_UNET_IN_CHANNELS, seed=SEED + 7)
    return StableDiffusionXLInpaintPipeline(
        unet=unet,
        requires_aesthetics_score=False,
        **_build_sdxl_shared_components(tokenizer, tokenizer_2),
    )


def _write_sd15(staging: Path) -> None:
    build_pipeline(build_tokenizer(staging / "tokenizer")).save_pretrained(  # type: ignore[attr-defined]
        staging, safe_serialization=True
    )


def _write_sd15_inpainting(staging: Path) -> None:
    build_inpaint_pipeline(build_tokenizer(staging / "tokenizer")).save_pretrained(  # type: ignore[attr-defined]
        staging, safe_serialization=True
    )


def _write_sd15_controlnet(staging: Path) -> None:
    # The text-to-image UNet rebuilt from its seed: the very weights tiny-sd15 holds.
    controlnet = _build_controlnet(_build_unet(in_channels=4, seed=SEED), seed=SEED + 8)
    controlnet.save_pretrained(staging, safe_serialization=True)  # type: ignore[attr-defined]


def _sdxl_tokenizers(staging: Path) -> tuple[object, object]:
    return (
        build_tokenizer(staging / "tokenizer"),
        build_tokenizer(staging / "tokenizer_2", pad_token=SDXL_TOKENIZER_2_PAD_TOKEN),
    )


def _write_sdxl(staging: Path) -> None:
    build_sdxl_pipeline(*_sdxl_tokenizers(staging)).save_pretrained(  # type: ignore[attr-defined]
        staging, safe_serialization=True
    )


def _write_sdxl_inpainting(staging: Path) -> None:
    build_sdxl_inpaint_pipeline(*_sdxl_tokenizers(staging)).save_pretrained(  # type: ignore[attr-defined]
        staging, safe_serialization=True
    )


def _write_sdxl_controlnet(staging: Path) -> None:
    controlnet = _build_controlnet(_build_sdxl_unet(in_channels=4, seed=SEED + 6), seed=SEED + 9)
    controlnet.save_pretrained(staging, safe_serialization=True)  # type: ignore[attr-defined]


def build_llm_tokenizer(directory: Path) -> object:
    """Write a tiny Llama-style tokenizer (`<unk>`, `<s>`, `</s>` at ids 0-2, no pad token,
    BOS prepended) to `directory` and return it: byte-level BPE learnt on the corpus."""
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab, merges = train_clip_bpe(CORPUS, LLM_BPE_MERGES)
    tokens = [LLM_UNK_TOKEN, LLM_BOS_TOKEN, LLM_EOS_TOKEN]
    tokens += [token for token in vocab if token not in (BOS_TOKEN, EOS_TOKEN)]
    llm_vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(
        models.BPE(
            vocab=llm_vocab, merges=merges, unk_token=LLM_UNK_TOKEN, end_of_word_suffix="</w>"
        )
    )
    backend.normalizer, backend.pre_tokenizer = _clip_text_processing()  # type: ignore[assignment]
    backend.decoder = decoders.BPEDecoder(suffix="</w>")  # type: ignore[assignment]
    backend.post_processor = processors.TemplateProcessing(  # type: ignore[assignment]
        single=f"{LLM_BOS_TOKEN} $A", special_tokens=[(LLM_BOS_TOKEN, 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=LLM_BOS_TOKEN,
        eos_token=LLM_EOS_TOKEN,
        unk_token=LLM_UNK_TOKEN,
        model_max_length=LLM_CONTEXT,
    )
    tokenizer.save_pretrained(directory)
    return tokenizer


def build_tiny_llama(vocab_size: int) -> object:
    """A seeded random-weight `LlamaForCausalLM`: LLaMA-2's architecture (RMSNorm, RoPE,
    SwiGLU, grouped-query attention) at a 64-wide, two-layer size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED + 10)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=LLM_HIDDEN_SIZE,
            intermediate_size=2 * LLM_HIDDEN_SIZE,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=LLM_CONTEXT,
            bos_token_id=1,
            eos_token_id=2,
        )
    )


def _write_tiny_llama(staging: Path) -> None:
    tokenizer = build_llm_tokenizer(staging)
    build_tiny_llama(len(tokenizer)).save_pretrained(staging)  # type: ignore[arg-type,attr-defined]


def _write_tiny_beyond_clip_encoder(staging: Path) -> None:
    """An untrained encoder checkpoint for the tiny Llama and the tiny SD 1.5 UNet: a seeded
    mapping network and RepAdapters whose up-projections get small seeded random weights
    (fresh ones are zero, which would make merging them a no-op no test could tell from
    none)."""
    import torch

    from services.worker.beyond_clip.checkpoint import EncoderConfig, save_checkpoint
    from services.worker.beyond_clip.mapping import MappingNetwork
    from services.worker.beyond_clip.rep_adapter import RepAdapterConfig, add_rep_adapters

    config = EncoderConfig(
        llm_hidden_size=LLM_HIDDEN_SIZE,
        cross_attention_dim=TEXT_HIDDEN_SIZE,
        adapter=RepAdapterConfig(hidden_dim=8, up_groups=2),
    )
    # The tiny Llama rebuilt from its seed: the weights tiny-llama holds. Its vocabulary
    # size is that of the tokenizer, which the LLM build writes.
    vocab_size = len(build_llm_tokenizer(staging / "tokenizer"))  # type: ignore[arg-type]
    shutil.rmtree(staging / "tokenizer")
    llm = build_tiny_llama(vocab_size).model  # type: ignore[attr-defined]
    assert config.adapter is not None
    torch.manual_seed(SEED + 11)
    add_rep_adapters(llm, config.adapter)
    for name, param in llm.named_parameters():
        if name.endswith("adapter.up.weight"):
            torch.nn.init.normal_(param, std=0.02)
    mapping = MappingNetwork(LLM_HIDDEN_SIZE, TEXT_HIDDEN_SIZE)
    save_checkpoint(staging, config, mapping, llm)


# Every tiny model: folder name under the models directory -> what writes it.
TINY_BUILDS: dict[str, Callable[[Path], None]] = {
    TINY_SD15_DIRNAME: _write_sd15,
    TINY_SD15_INPAINTING_DIRNAME: _write_sd15_inpainting,
    TINY_SD15_CONTROLNET_DIRNAME: _write_sd15_controlnet,
    TINY_SDXL_DIRNAME: _write_sdxl,
    TINY_SDXL_INPAINTING_DIRNAME: _write_sdxl_inpainting,
    TINY_SDXL_CONTROLNET_DIRNAME: _write_sdxl_controlnet,
    TINY_LLAMA_DIRNAME: _write_tiny_llama,
    TINY_BEYOND_CLIP_ENCODER_DIRNAME: _write_tiny_beyond_clip_encoder,
}


def toy_weights_dir() -> Path:
    """Where the trained toy models are: toyworld/weights, package data of `toyworld` (so
    an installed worker, as in the images, has them too)."""
    import toyworld

    return Path(toyworld.__file__).resolve().parent / "weights"


def _install_toy(name: str) -> Callable[[Path], None]:
    """A writer that copies the committed toy model `name` (trained by `make toy-train`)."""

    def write(staging: Path) -> None:
        source = toy_weights_dir() / name
        if not (source / "model_index.json").exists() and not (source / "config.json").exists():
            raise FileNotFoundError(f"no trained toy model in {source}; run `make toy-train`")
        shutil.copytree(source, staging, dirs_exist_ok=True)

    return write


# The toy models: copies of committed trained weights, not random builds (`--toy`).
TOY_INSTALLS: dict[str, Callable[[Path], None]] = {
    name: _install_toy(name)
    for name in (TOY_SD15_DIRNAME, TOY_SD15_INPAINTING_DIRNAME, TOY_SD15_CONTROLNET_DIRNAME)
}


def content_hash(directory: Path) -> str:
    """SHA-256 over every file's relative path and bytes (the manifest excluded)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative == MANIFEST_NAME:
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_tiny_sd15(out: Path, force: bool = False) -> Path:
    """Build the tiny SD 1.5 pipeline into `out` unless a complete build is already there."""
    return _build_once(out, _write_sd15, force)


def build_tiny_sd15_inpainting(out: Path, force: bool = False) -> Path:
    """Build the tiny SD 1.5 inpainting pipeline into `out` unless a complete build is there."""
    return _build_once(out, _write_sd15_inpainting, force)


def build_tiny(name: str, models_dir: Path, force: bool = False) -> Path:
    """Build the tiny model called `name` (a `TINY_BUILDS` folder name; or install the toy
    model of a `TOY_INSTALLS` name) under `models_dir` unless a complete build is there;
    ValueError for a name no local model has."""
    builds = {**TINY_BUILDS, **TOY_INSTALLS}
    try:
        write = builds[name]
    except KeyError:
        raise ValueError(f"no local model is called {name!r}; known: {sorted(builds)}") from None
    out = models_dir / name
    if name not in TOY_INSTALLS:
        return _build_once(out, write, force)
    # A toy install is an exact copy: replaced when the committed weights have changed.
    installed = read_manifest(out)
    stale = installed is not None and installed["sha256"] != content_hash(toy_weights_dir() / name)
    return _build_once(out, write, force or stale, kind="toy")


def _build_once(out: Path, write: Callable[[Path], None], force: bool, kind: str = "tiny") -> Path:
    """Let `write` fill a staging folder, add the manifest last (with `kind`, the revision's
    prefix: "tiny" or "toy") and rename it to `out`; an existing complete build is kept
    unless `force`."""
    out = out.expanduser()
    if not force and read_manifest(out) is not None:
        logger.info("tiny models already built in %s", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        write(staging)
        manifest = {"format": BUILD_FORMAT, "sha256": content_hash(staging), "kind": kind}
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it private; the models folder is shared
        if out.exists():  # incomplete, stale or forced: replace it
            shutil.rmtree(out)
        try:
            os.rename(staging, out)
        except OSError:
            # Another process renamed its build into place first; keep that one.
            if read_manifest(out) is None:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("built tiny models in %s in %.1fs", out, time.perf_counter() - started)
    return out


def build_profile_models(profile: ModelProfile, models_dir: Path) -> None:
    """Build (or install, for `toy`) every local model `profile` names under `models_dir`;
    a no-op for those already built and for a profile of hub checkpoints."""
    for source in local_sources(profile):
        build_tiny(source.name, models_dir)


def build_tiny_models(models_dir: Path, force: bool = False) -> list[Path]:
    """Every tiny build (`TINY_BUILDS`) under `models_dir`."""
    return [build_tiny(name, models_dir, force=force) for name in TINY_BUILDS]


def main(argv: list[str] | None = None) -> int:
    """Command line: build one tiny model (default: <models_dir>/tiny-sd15, or with
    --inpainting <models_dir>/tiny-sd15-inpainting), or with --all every one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (default: under models_dir)")
    parser.add_argument(
        "--inpainting", action="store_true", help="build the inpainting pipeline instead"
    )
    parser.add_argument(
        "--all", action="store_true", help="build every tiny model under --models-dir"
    )
    parser.add_argument(
        "--toy", action="store_true", help="install the trained toy models under --models-dir"
    )
    parser.add_argument(
        "--models-dir", type=Path, help="with --all/--toy (default: LLMGA_MODELS_DIR)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a build exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.all or args.toy:
        models_dir = args.models_dir
        if models_dir is None:
            from services.worker.settings import WorkerSettings

            models_dir = WorkerSettings().models_dir
        names = [*(TINY_BUILDS if args.all else ()), *(TOY_INSTALLS if args.toy else ())]
        for name in names:
            print(build_tiny(name, models_dir, force=args.force))
        return 0
    out = args.out
    if out is None:
        from services.worker.settings import WorkerSettings

        dirname = TINY_SD15_INPAINTING_DIRNAME if args.inpainting else TINY_SD15_DIRNAME
        out = WorkerSettings().models_dir / dirname
    build = build_tiny_sd15_inpainting if args.inpainting else build_tiny_sd15
    print(build(out, force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
