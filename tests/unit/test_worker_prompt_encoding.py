"""Long prompts are encoded in 75-token chunks, and short ones exactly as diffusers does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.worker.prompt_encoding import (
    chunk_input_ids,
    encode_long_prompt,
    split_into_chunks,
    tokenize_untruncated,
)
from services.worker.testing.tiny_models import CORPUS, build_tiny_sd15

CPU = torch.device("cpu")
WORDS = sorted(set(CORPUS.lower().replace(",", " ").replace(".", " ").split()))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from diffusers import StableDiffusionPipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small shared CPUs: one thread is much faster than two fighting
    path = build_tiny_sd15(tmp_path_factory.mktemp("models") / "tiny-sd15")
    yield StableDiffusionPipeline.from_pretrained(path, safety_checker=None)
    torch.set_num_threads(threads)


def encode(pipeline: Any, prompt: str, negative: str = "", guidance: bool = True) -> Any:
    return encode_long_prompt(
        pipeline.tokenizer, pipeline.text_encoder, prompt, negative, CPU, guidance
    )


def prompt_of(pipeline: Any, num_tokens: int, seed: int = 0) -> str:
    """A prompt of exactly `num_tokens` tokens (single-token words from the corpus)."""
    singles = [w for w in WORDS if len(pipeline.tokenizer.tokenize(w)) == 1]
    words = [singles[(seed + 7 * i) % len(singles)] for i in range(num_tokens)]
    text = " ".join(words)
    assert len(tokenize_untruncated(pipeline.tokenizer, text)) == num_tokens
    return text


@pytest.mark.parametrize("num_tokens", [0, 1, 40, 75])
def test_short_prompts_encode_exactly_as_the_stock_pipeline(pipeline: Any, num_tokens: int) -> None:
    prompt = prompt_of(pipeline, num_tokens)
    negative = prompt_of(pipeline, 10, seed=3)
    stock, stock_negative = pipeline.encode_prompt(prompt, CPU, 1, True, negative)
    ours = encode(pipeline, prompt, negative)
    assert ours.chunks == 1 and ours.prompt_tokens == num_tokens
    assert torch.equal(ours.prompt_embeds, stock)
    assert torch.equal(ours.negative_prompt_embeds, stock_negative)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(words=st.lists(st.sampled_from(WORDS), max_size=25), guidance=st.booleans())
def test_any_short_prompt_matches_the_stock_pipeline(
    pipeline: Any, words: list[str], guidance: bool
) -> None:
    prompt = " ".join(words)
    if len(tokenize_untruncated(pipeline.tokenizer, prompt)) > 75:
        return
    stock, stock_negative = pipeline.encode_prompt(prompt, CPU, 1, guidance, "ugly, blurry")
    ours = encode(pipeline, prompt, "ugly, blurry", guidance)
    assert torch.equal(ours.prompt_embeds, stock)
    if guidance:
        assert torch.equal(ours.negative_prompt_embeds, stock_negative)
    else:
        assert ours.negative_prompt_embeds is None and stock_negative is None


def test_chunks_are_padded_like_the_stock_tokenizer(pipeline: Any) -> None:
    tokenizer = pipeline.tokenizer
    prompt = prompt_of(pipeline, 30)
    stock = tokenizer(prompt, padding="max_length", max_length=77, truncation=True)
    ids, _ = chunk_input_ids(tokenizer, tokenize_untruncated(tokenizer, prompt))
    assert ids[0].tolist() == stock.input_ids


def test_a_200_token_prompt_is_three_chunks_and_nothing_is_truncated(pipeline: Any) -> None:
    prompt = prompt_of(pipeline, 200)
    encoded = encode(pipeline, prompt, "blurry")
    assert encoded.prompt_tokens == 200 and encoded.chunks == 3
    assert encoded.prompt_embeds.shape == (1, 3 * 77, 32)
    # The negative prompt is padded with empty chunks to the same shape.
    assert encoded.negative_prompt_embeds.shape == encoded.prompt_embeds.shape
    empty = encode(pipeline, "", "").prompt_embeds
    assert torch.equal(encoded.negative_prompt_embeds[:, 77:], empty.repeat(1, 2, 1))
    # The first chunk is the stock encoding of the first 75 tokens.
    head = pipeline.tokenizer.decode(tokenize_untruncated(pipeline.tokenizer, prompt)[:75])
    assert torch.equal(encoded.prompt_embeds[:, :77], encode(pipeline, head).prompt_embeds)


def test_a_word_after_token_150_changes_only_the_last_chunk(pipeline: Any) -> None:
    words = prompt_of(pipeline, 200).split()
    changed = list(words)
    changed[180] = next(w for w in (words[0], words[1]) if w != words[180])
    before = encode(pipeline, " ".join(words)).prompt_embeds
    after = encode(pipeline, " ".join(changed)).prompt_embeds
    assert torch.equal(before[:, : 2 * 77], after[:, : 2 * 77])
    assert not torch.equal(before[:, 2 * 77 :], after[:, 2 * 77 :])


def test_a_long_negative_prompt_pads_the_prompt(pipeline: Any) -> None:
    encoded = encode(pipeline, "a cat", prompt_of(pipeline, 100))
    assert encoded.chunks == 2
    assert encoded.prompt_embeds.shape == encoded.negative_prompt_embeds.shape == (1, 154, 32)


@given(n=st.integers(min_value=0, max_value=400), size=st.integers(min_value=1, max_value=80))
def test_chunking_keeps_every_token_in_order(n: int, size: int) -> None:
    ids = list(range(n))
    chunks = split_into_chunks(ids, size)
    assert [t for c in chunks for t in c] == ids
    assert all(0 < len(c) <= size for c in chunks) or chunks == [[]]
    assert len(chunks) == max(1, -(-n // size))


def test_clip_skip_uses_an_earlier_layer(pipeline: Any) -> None:
    last = encode_long_prompt(pipeline.tokenizer, pipeline.text_encoder, "a cat", "", CPU, False)
    skipped = encode_long_prompt(
        pipeline.tokenizer, pipeline.text_encoder, "a cat", "", CPU, False, clip_skip=1
    )
    assert skipped.prompt_embeds.shape == last.prompt_embeds.shape
    assert not torch.equal(skipped.prompt_embeds, last.prompt_embeds)
