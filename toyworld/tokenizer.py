"""The toy world's CLIP tokenizer: CLIP's byte-level BPE format (vocab.json, merges.txt),
with merges learnt on the world's own words so that each of them is one token."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPTokenizer

from services.worker.testing.tiny_models import build_tokenizer, train_clip_bpe
from toyworld.captions import world_words

# Enough merges to join every world word into one token; BPE stops earlier once no pair
# is left to merge.
MAX_MERGES = 4000


def build_world_tokenizer(directory: Path) -> CLIPTokenizer:
    """Write the world's tokenizer to `directory` and return it. Deterministic: the BPE
    trainer breaks ties by order, and the words are sampled from a fixed seed."""
    # Each word twice: a pair must occur at least twice to be merged.
    corpus = "\n".join(world_words() * 2)
    tokenizer = build_tokenizer(directory, bpe=train_clip_bpe(corpus, MAX_MERGES))
    assert isinstance(tokenizer, CLIPTokenizer)
    return tokenizer
