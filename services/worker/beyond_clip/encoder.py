"""The LLM text encoder: a prompt to UNet conditioning through LLM -> mapping network.

Sequence layout. A prompt becomes BOS, its tokens, EOS, then the pad token (the tokenizer's,
or EOS when it has none, as LLaMA-2's) up to the sequence length. This mirrors what SD's CLIP
encoder sees (BOS, tokens, EOS, padding to 77), which is what the mapping is trained against
(train.py): position i of the LLM sequence is regressed onto position i of CLIP's.

Length. Training cuts both sides to CLIP's 77 positions. Serving never truncates and never
chunks: the sequence is max(77, prompt + 2) long, so a short prompt gives the UNet the 77
keys it was trained with (the padded tail carries a summary of the whole prompt, as CLIP's
does) and a long prompt simply gives more keys. The one limit is the LLM's context
(`max_length`, its `max_position_embeddings`): a longer prompt is refused.

Classifier-free guidance. The negative prompt goes through the same path, padded to the same
length as the prompt (the longer of the two decides), because the UNet batches both. The LLM
is causal and padding is on the right, so padding changes nothing before it: no attention
mask is needed, and the pad positions are computed exactly as in training.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from services.worker.beyond_clip.mapping import MappingNetwork
from services.worker.prompt_encoding import EncodedPrompts, tokenize_untruncated

# SD's CLIP text encoder sees 77 positions; a prompt shorter than that is padded to it.
CLIP_POSITIONS = 77


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id padding is made of: the tokenizer's pad token, else EOS (LLaMA-2 has no pad)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the LLM tokenizer has neither a pad nor an EOS token")
    return int(pad)


def sequence_ids(tokenizer: PreTrainedTokenizerBase, tokens: list[int], length: int) -> list[int]:
    """BOS + `tokens` + EOS, right-padded with the pad token to `length` (module docstring);
    an LLM without a BOS token (Qwen's, for one) starts with the first token. `tokens` must
    fit: at most length - 2."""
    if len(tokens) + 2 > length:
        raise ValueError(f"{len(tokens)} tokens do not fit a sequence of {length}")
    pad = pad_token_id(tokenizer)
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    eos = pad if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    ids = [*bos, *tokens, eos]
    return ids + [pad] * (length - len(ids))


def aligned_ids(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], length: int = CLIP_POSITIONS
) -> torch.Tensor:
    """Training batches: each text as BOS + its first length - 2 tokens + EOS + padding,
    exactly `length` positions (CLIP's 77) so position i lines up with CLIP's position i."""
    rows = [
        sequence_ids(tokenizer, tokenize_untruncated(tokenizer, text)[: length - 2], length)
        for text in texts
    ]
    return torch.tensor(rows, dtype=torch.long)


class LlmTextEncoder(nn.Module):
    """Prompt -> mapping(LLM last hidden state): the UNet's text conditioning."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        llm: nn.Module,
        mapping: MappingNetwork,
        min_length: int = CLIP_POSITIONS,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        # The decoder stack without the language-model head (transformers' AutoModel).
        self.llm = llm
        self.mapping = mapping
        self.min_length = min_length
        self.max_length = int(getattr(llm.config, "max_position_embeddings", 4096))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Conditioning features (batch, length, cross_attention_dim) of token ids."""
        hidden = self.llm(input_ids=input_ids).last_hidden_state
        features: torch.Tensor = self.mapping(hidden.to(self.mapping.net[0].weight.dtype))
        return features

    @torch.no_grad()
    def encode_prompts(
        self,
        prompt: str,
        negative_prompt: str,
        device: torch.device,
        do_classifier_free_guidance: bool,
    ) -> EncodedPrompts:
        """Encode `prompt` (and `negative_prompt` when guidance is on) for the UNet: the
        `TextConditioner` of LLM-conditioned profiles (prompt_encoding.py)."""
        # Step 1: tokenize whole, both prompts.
        prompt_tokens = tokenize_untruncated(self.tokenizer, prompt)
        negative_tokens: list[int] = []
        if do_classifier_free_guidance:
            negative_tokens = tokenize_untruncated(self.tokenizer, negative_prompt)

        # Step 2: one length for both (module docstring), within the LLM's context.
        length = max(self.min_length, len(prompt_tokens) + 2, len(negative_tokens) + 2)
        if length > self.max_length:
            which = "prompt" if len(prompt_tokens) >= len(negative_tokens) else "negative_prompt"
            raise ValueError(
                f"{which} is {length - 2} tokens; the LLM text encoder takes at most "
                f"{self.max_length - 2}"
            )

        # Step 3: encode both in one batch (rows of a causal LLM without a mask do not see
        # each other): one pass of the LLM, not two.
        rows = [prompt_tokens, negative_tokens] if do_classifier_free_guidance else [prompt_tokens]
        ids = [sequence_ids(self.tokenizer, tokens, length) for tokens in rows]
        embeds = self.forward(torch.tensor(ids, device=device))
        prompt_embeds = embeds[:1]
        negative_embeds = embeds[1:] if do_classifier_free_guidance else None
        return EncodedPrompts(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_embeds,
            prompt_tokens=len(prompt_tokens),
            negative_prompt_tokens=len(negative_tokens),
            chunks=1,  # never chunked
        )
