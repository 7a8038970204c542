"""Caption encoding for training, laid out exactly as the worker encodes a prompt at
inference (services/worker/prompt_encoding.py, whose tokenizing and chunking functions this
reuses): tokenized whole, cut into 75-token chunks, each wrapped in BOS/EOS and padded to
77, encoded on its own, the chunks concatenated along the sequence axis. A batch's captions
are brought to the same number of chunks with empty chunks, as the worker brings a prompt
and its negative prompt together.

`truncate=True` is the stock alternative for the ablation: only the first 75 tokens (one
chunk), what a 77-token text encoder without chunking sees.
"""

from __future__ import annotations

import torch
from transformers import CLIPTextModel, PreTrainedTokenizerBase

from services.worker.prompt_encoding import chunk_input_ids, split_into_chunks, tokenize_untruncated


def caption_chunks(
    tokenizer: PreTrainedTokenizerBase, captions: list[str], truncate: bool = False
) -> list[list[list[int]]]:
    """Each caption's 75-token chunks, padded with empty chunks to the batch's longest."""
    chunk_size = tokenizer.model_max_length - 2
    chunks = []
    for caption in captions:
        ids = tokenize_untruncated(tokenizer, caption)
        chunks.append(split_into_chunks(ids[:chunk_size] if truncate else ids, chunk_size))
    count = max(len(c) for c in chunks)
    return [c + [[]] * (count - len(c)) for c in chunks]


def encode_captions(
    tokenizer: PreTrainedTokenizerBase,
    text_encoder: CLIPTextModel,
    captions: list[str],
    truncate: bool = False,
) -> torch.Tensor:
    """(B, chunks * 77, hidden): every chunk of every caption through the text encoder in
    one batch (gradients flow, for training the encoder), as the worker's `encode_chunks`
    computes them one by one: an attention mask only for encoders configured to use one,
    the last hidden state."""
    device = text_encoder.device
    per_caption = caption_chunks(tokenizer, captions, truncate)
    pairs = [chunk_input_ids(tokenizer, chunk) for chunks in per_caption for chunk in chunks]
    input_ids = torch.cat([ids for ids, _ in pairs]).to(device)
    use_mask = bool(getattr(text_encoder.config, "use_attention_mask", False))
    mask = torch.cat([m for _, m in pairs]).to(device) if use_mask else None
    hidden = text_encoder(input_ids, attention_mask=mask)[0]
    return hidden.reshape(len(captions), -1, hidden.shape[-1])
