"""The text conditioning of an edit: source caption, target caption and negative prompt
encoded without truncation (prompt_encoding.py) to one common number of 77-position chunks.

The source and target branches of an edit run through the UNet in one batch, so their
encodings must have the same length; the shorter caption is brought up with encodings of
empty chunks, exactly as the negative prompt is for a generation. The inversion uses the
same source encoding as the edit, so the padding cannot break exact reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import CLIPTextModel, PreTrainedTokenizerBase

from services.worker.prompt_encoding import encode_chunks, split_into_chunks, tokenize_untruncated


@dataclass(frozen=True)
class EncodedCaptions:
    """Embeddings of shape (1, chunks * 77, hidden) each, and the captions' token ids
    (without BOS/EOS) for aligning them."""

    source_embeds: torch.Tensor
    target_embeds: torch.Tensor
    # None when classifier-free guidance is off.
    negative_embeds: torch.Tensor | None
    source_ids: list[int]
    target_ids: list[int]
    chunks: int
    chunk_size: int  # tokens per chunk (75)
    chunk_length: int  # positions per chunk (77)


@torch.no_grad()
def encode_captions(
    tokenizer: PreTrainedTokenizerBase,
    text_encoder: CLIPTextModel,
    source_caption: str,
    target_caption: str,
    negative_prompt: str,
    device: torch.device,
    do_classifier_free_guidance: bool,
) -> EncodedCaptions:
    """Encode both captions (and the negative prompt when guidance is on) to the same
    number of chunks."""
    chunk_length = tokenizer.model_max_length
    chunk_size = chunk_length - 2
    source_ids = tokenize_untruncated(tokenizer, source_caption)
    target_ids = tokenize_untruncated(tokenizer, target_caption)
    texts = [split_into_chunks(source_ids, chunk_size), split_into_chunks(target_ids, chunk_size)]
    if do_classifier_free_guidance:
        texts.append(
            split_into_chunks(tokenize_untruncated(tokenizer, negative_prompt), chunk_size)
        )
    chunks = max(len(text) for text in texts)
    embeds = [
        encode_chunks(tokenizer, text_encoder, text + [[]] * (chunks - len(text)), device, None)
        for text in texts
    ]
    return EncodedCaptions(
        source_embeds=embeds[0],
        target_embeds=embeds[1],
        negative_embeds=embeds[2] if do_classifier_free_guidance else None,
        source_ids=source_ids,
        target_ids=target_ids,
        chunks=chunks,
        chunk_size=chunk_size,
        chunk_length=chunk_length,
    )
