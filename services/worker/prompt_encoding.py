"""Long-prompt encoding for Stable Diffusion 1.5 and SDXL, passed to the pipeline as
`prompt_embeds` (SDXL: and `pooled_prompt_embeds`).

SD 1.5's CLIP text encoder sees 77 positions: BOS, 75 tokens, EOS (then padding). LLMGA's
generation prompts often run past 150 tokens and its fine-tuned SD was trained on them, so
nothing may be truncated. A prompt is tokenized whole, its tokens are cut into chunks of
75, each chunk is wrapped in BOS/EOS, padded to 77 exactly as the stock pipeline pads and
encoded on its own, and the chunk encodings are concatenated along the sequence axis. The
negative prompt is brought to the same number of chunks (with encodings of empty chunks),
because classifier-free guidance batches both through the UNet together.

A prompt of at most 75 tokens gives one chunk whose encoding is exactly (bit for bit) what
`StableDiffusionPipeline.encode_prompt` gives, so short prompts behave as with diffusers.

SDXL (`encode_long_prompt_sdxl`) has two CLIP text encoders. Each chunk goes through both;
each gives its penultimate hidden state (`hidden_states[-2]`, no final layer norm, as the
stock SDXL pipeline), and the two are concatenated along the feature axis, then the chunks
along the sequence axis. The UNet also takes one pooled vector per image: the projected
EOS state of encoder 2, taken from the first chunk (see `encode_long_prompt_sdxl` for why).
Up to 75 tokens, all of it equals `StableDiffusionXLPipeline.encode_prompt` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import CLIPTextModel, CLIPTextModelWithProjection, PreTrainedTokenizerBase


@dataclass(frozen=True)
class EncodedPrompts:
    """Text conditioning for one image: embeddings of shape (1, chunks * 77, hidden)."""

    prompt_embeds: torch.Tensor
    # None when classifier-free guidance is off (the stock pipeline's behaviour).
    negative_prompt_embeds: torch.Tensor | None
    # Tokens of each prompt without BOS/EOS, before chunking: what the job encoded.
    prompt_tokens: int
    negative_prompt_tokens: int
    chunks: int
    # SDXL only: text encoder 2's pooled, projected embedding, (1, projection_dim).
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def pipeline_kwargs(self) -> dict[str, Any]:
        """The encodings as keyword arguments of a diffusers pipeline call."""
        kwargs = {
            "prompt_embeds": self.prompt_embeds,
            "negative_prompt_embeds": self.negative_prompt_embeds,
        }
        if self.pooled_prompt_embeds is not None:
            kwargs["pooled_prompt_embeds"] = self.pooled_prompt_embeds
            kwargs["negative_pooled_prompt_embeds"] = self.negative_pooled_prompt_embeds
        return kwargs


class TextConditioner(Protocol):
    """Text conditioning other than the pipeline's own CLIP encoders, chosen by the model
    profile (Beyond CLIP's LLM encoder, beyond_clip/encoder.py): the prompt and, when
    guidance is on, the negative prompt, encoded to the same sequence length."""

    def __call__(
        self,
        prompt: str,
        negative_prompt: str,
        device: torch.device,
        do_classifier_free_guidance: bool,
    ) -> EncodedPrompts: ...


def tokenize_untruncated(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The token ids of `text`, without BOS/EOS and without truncation."""
    # verbose=False: a long prompt is expected here, not worth the tokenizer's warning.
    encoding = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)
    return list(encoding["input_ids"])


def split_into_chunks(token_ids: list[int], chunk_size: int) -> list[list[int]]:
    """`token_ids` in consecutive chunks of at most `chunk_size`; an empty prompt is one
    empty chunk (it still encodes to BOS, EOS and padding, as the stock pipeline does)."""
    if not token_ids:
        return [[]]
    return [token_ids[i : i + chunk_size] for i in range(0, len(token_ids), chunk_size)]


def chunk_input_ids(
    tokenizer: PreTrainedTokenizerBase, chunk: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk as the stock pipeline feeds it to CLIP: BOS + tokens + EOS, right-padded with
    the pad token to `model_max_length`. Returns (input_ids, attention_mask), each (1, 77)."""
    max_length = tokenizer.model_max_length
    ids = [tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id]
    if len(ids) > max_length:
        raise ValueError(f"a chunk holds at most {max_length - 2} tokens, got {len(chunk)}")
    padding = max_length - len(ids)
    mask = [1] * len(ids) + [0] * padding
    ids += [tokenizer.pad_token_id] * padding
    return torch.tensor([ids], dtype=torch.long), torch.tensor([mask], dtype=torch.long)


def encode_chunks(
    tokenizer: PreTrainedTokenizerBase,
    text_encoder: CLIPTextModel,
    chunks: list[list[int]],
    device: torch.device,
    clip_skip: int | None,
) -> torch.Tensor:
    """Encode each chunk on its own and concatenate: (1, len(chunks) * 77, hidden)."""
    # Same choices as the stock `encode_prompt`: an attention mask only for encoders
    # configured to use one; the last hidden state, or with clip_skip an earlier layer's
    # hidden state passed through the final layer norm.
    use_mask = bool(getattr(text_encoder.config, "use_attention_mask", False))
    encoded = []
    for chunk in chunks:
        input_ids, attention_mask = chunk_input_ids(tokenizer, chunk)
        mask = attention_mask.to(device) if use_mask else None
        if clip_skip is None:
            hidden = text_encoder(input_ids.to(device), attention_mask=mask)[0]
        else:
            outputs = text_encoder(
                input_ids.to(device), attention_mask=mask, output_hidden_states=True
            )
            # transformers 5 moved final_layer_norm from `.text_model` onto the model itself.
            final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
            hidden = final_layer_norm(outputs.hidden_states[-(clip_skip + 1)])
        encoded.append(hidden)
    return torch.cat(encoded, dim=1).to(dtype=text_encoder.dtype, device=device)


@torch.no_grad()
def encode_long_prompt(
    tokenizer: PreTrainedTokenizerBase,
    text_encoder: CLIPTextModel,
    prompt: str,
    negative_prompt: str,
    device: torch.device,
    do_classifier_free_guidance: bool,
    clip_skip: int | None = None,
) -> EncodedPrompts:
    """Encode `prompt` (and `negative_prompt` when guidance is on) without truncation.

    Both come out with the same number of 77-token chunks, so they can be passed together
    as `prompt_embeds` / `negative_prompt_embeds` to an SD 1.5 pipeline.
    """
    # Step 1: tokenize whole and cut into chunks of 75 (77 less BOS and EOS).
    chunk_size = tokenizer.model_max_length - 2
    prompt_ids = tokenize_untruncated(tokenizer, prompt)
    prompt_chunks = split_into_chunks(prompt_ids, chunk_size)
    negative_ids: list[int] = []
    negative_chunks: list[list[int]] = []
    if do_classifier_free_guidance:
        negative_ids = tokenize_untruncated(tokenizer, negative_prompt)
        negative_chunks = split_into_chunks(negative_ids, chunk_size)

    # Step 2: bring both to the same number of chunks with empty chunks.
    num_chunks = max(len(prompt_chunks), len(negative_chunks))
    prompt_chunks += [[]] * (num_chunks - len(prompt_chunks))

    # Step 3: encode. The stock pipeline applies clip_skip to the prompt only, never to the
    # negative prompt; do the same so short prompts match it exactly.
    prompt_embeds = encode_chunks(tokenizer, text_encoder, prompt_chunks, device, clip_skip)
    negative_prompt_embeds = None
    if do_classifier_free_guidance:
        negative_chunks += [[]] * (num_chunks - len(negative_chunks))
        negative_prompt_embeds = encode_chunks(
            tokenizer, text_encoder, negative_chunks, device, clip_skip=None
        )
    return EncodedPrompts(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_prompt_embeds,
        prompt_tokens=len(prompt_ids),
        negative_prompt_tokens=len(negative_ids),
        chunks=num_chunks,
    )


def encode_sdxl_chunks(
    tokenizers: tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase],
    text_encoders: tuple[CLIPTextModel, CLIPTextModelWithProjection],
    chunks: tuple[list[list[int]], list[list[int]]],
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode chunks (one list per tokenizer, the same number in each) with both encoders.

    Returns the features (1, len * 77, hidden_1 + hidden_2) and encoder 2's pooled embedding
    of the first chunk (1, projection_dim). As the stock SDXL `encode_prompt`: no attention
    mask, `hidden_states[-2]` of each encoder, encoder 1's features first.
    """
    features = []
    pooled: torch.Tensor | None = None
    for tokenizer, text_encoder, encoder_chunks in zip(
        tokenizers, text_encoders, chunks, strict=True
    ):
        encoded = []
        for chunk in encoder_chunks:
            input_ids, _ = chunk_input_ids(tokenizer, chunk)
            outputs = text_encoder(input_ids.to(device), output_hidden_states=True)
            encoded.append(outputs.hidden_states[-2])
            if pooled is None and isinstance(text_encoder, CLIPTextModelWithProjection):
                pooled = outputs.text_embeds
        features.append(torch.cat(encoded, dim=1))
    if pooled is None:
        raise TypeError("SDXL's second text encoder must be a CLIPTextModelWithProjection")
    dtype = text_encoders[1].dtype
    return torch.cat(features, dim=-1).to(dtype=dtype, device=device), pooled.to(device)


@torch.no_grad()
def encode_long_prompt_sdxl(
    tokenizers: tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase],
    text_encoders: tuple[CLIPTextModel, CLIPTextModelWithProjection],
    prompt: str,
    negative_prompt: str,
    device: torch.device,
    do_classifier_free_guidance: bool,
    zero_empty_negative: bool,
) -> EncodedPrompts:
    """Encode `prompt` (and `negative_prompt` when guidance is on) for SDXL without truncation.

    `zero_empty_negative` (the pipeline's `force_zeros_for_empty_prompt`, true for SDXL
    base): an empty negative prompt is all zeros, features and pooled, as the stock pipeline
    does for a call without a negative prompt; otherwise it is encoded like the prompt.

    The pooled embedding comes from the first chunk. It is one vector per image (added to
    the UNet's timestep embedding), the projection of encoder 2's state at the chunk's EOS.
    The first chunk's (1) makes a prompt of at most 75 tokens encode exactly as the stock
    pipeline; (2) for a longer prompt, is what the stock pipeline computes from the prompt
    truncated to 75 tokens, the conditioning SDXL was trained with; the first chunk holds the
    prompt's subject, and every later token still reaches the UNet through cross-attention
    on the chunked features; (3) an average over chunks is a vector the projection never
    produced in training, and the last chunk may be a short tail of a few words.
    """
    # Step 1: tokenize whole with each tokenizer (SDXL's two share a vocabulary, but each is
    # used as configured) and cut into chunks of 75 (77 less BOS and EOS).
    chunk_size = tokenizers[0].model_max_length - 2
    prompt_ids = [tokenize_untruncated(tokenizer, prompt) for tokenizer in tokenizers]
    prompt_chunks = [split_into_chunks(ids, chunk_size) for ids in prompt_ids]
    encode_negative = do_classifier_free_guidance and not (
        zero_empty_negative and not negative_prompt
    )
    negative_ids: list[list[int]] = []
    negative_chunks: list[list[list[int]]] = []
    if encode_negative:
        negative_ids = [
            tokenize_untruncated(tokenizer, negative_prompt) for tokenizer in tokenizers
        ]
        negative_chunks = [split_into_chunks(ids, chunk_size) for ids in negative_ids]

    # Step 2: bring every chunk list to the same length with empty chunks: the features of
    # both encoders are concatenated chunk by chunk, and guidance batches prompt and
    # negative prompt through the UNet together.
    num_chunks = max(len(chunks) for chunks in prompt_chunks + negative_chunks)
    for chunks in prompt_chunks + negative_chunks:
        chunks += [[]] * (num_chunks - len(chunks))

    # Step 3: encode.
    prompt_embeds, pooled = encode_sdxl_chunks(
        tokenizers, text_encoders, (prompt_chunks[0], prompt_chunks[1]), device
    )
    negative_embeds = negative_pooled = None
    if encode_negative:
        negative_embeds, negative_pooled = encode_sdxl_chunks(
            tokenizers, text_encoders, (negative_chunks[0], negative_chunks[1]), device
        )
    elif do_classifier_free_guidance:
        negative_embeds, negative_pooled = torch.zeros_like(prompt_embeds), torch.zeros_like(pooled)
    return EncodedPrompts(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_embeds,
        prompt_tokens=len(prompt_ids[0]),
        negative_prompt_tokens=len(negative_ids[0]) if negative_ids else 0,
        chunks=num_chunks,
        pooled_prompt_embeds=pooled,
        negative_pooled_prompt_embeds=negative_pooled,
    )
