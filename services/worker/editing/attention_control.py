"""Prompt-to-prompt attention control (Hertz et al., "Prompt-to-Prompt Image Editing with
Cross Attention Control"), as diffusers attention processors.

The source and target branches of an edit run through the UNet in one batch. For the
first part of the schedule the target branch uses the source branch's attention maps:
its self-attention maps (the layout of the image) and, for the tokens both captions share,
its cross-attention maps (where each shared word is drawn). New tokens keep the target's
own maps; that is where the edit happens. Afterwards the target branch runs on its own.

Captions are encoded in chunks of 77 positions (prompt_encoding.py); the token alignment
maps positions in that layout, so long captions of several chunks are controlled too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

# Prompt-to-prompt's defaults as PnP Inversion runs them with Direct Inversion: the target
# follows the source's cross-attention for the first 40% of the steps and its
# self-attention for the first 60%.
CROSS_REPLACE_FRACTION = 0.4
SELF_REPLACE_FRACTION = 0.6
# Self-attention maps are replaced only at layers of at most 16x16 latent pixels, as in
# prompt-to-prompt: the maps of larger layers are too big to materialize (64x64 latents:
# 4096^2 weights per head) and carry detail rather than layout.
MAX_SELF_ATTENTION_TOKENS = 16 * 16


def align_tokens(source_ids: list[int], target_ids: list[int]) -> dict[int, int]:
    """Target token index -> source token index for the tokens the captions share, by
    difflib's longest matching blocks on the token ids (prompt-to-prompt's refinement
    mapping)."""
    matcher = difflib.SequenceMatcher(a=source_ids, b=target_ids, autojunk=False)
    pairs: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            pairs[block.b + offset] = block.a + offset
    return pairs


def position_map(
    source_ids: list[int], target_ids: list[int], chunk_size: int, chunk_length: int, chunks: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which source position each target position of the chunked encodings copies its
    cross-attention from. Returns (source position per target position, whether the target
    position copies), both of length `chunks * chunk_length`.

    Token k sits in chunk k // chunk_size at position 1 + k % chunk_size (after BOS). Shared
    tokens copy from their aligned source token; BOS, EOS and padding positions copy from
    the same position of the source (they say nothing about the edit); new tokens keep the
    target's own attention.
    """
    length = chunks * chunk_length
    sources = torch.arange(length)
    copies = torch.ones(length, dtype=torch.bool)

    def position(token: int) -> int:
        return (token // chunk_size) * chunk_length + 1 + token % chunk_size

    pairs = align_tokens(source_ids, target_ids)
    for token in range(len(target_ids)):
        if token in pairs:
            sources[position(token)] = position(pairs[token])
        else:
            copies[position(token)] = False
    return sources, copies


@dataclass
class AttentionController:
    """What the attention processors of one edit share: the step being run, when each kind
    of map is replaced, and the cross-attention position map.

    The batch holds groups of two latents, (source, target); `controlled_groups` says
    which groups are edited. Prompt-to-prompt edits the conditional half only: with
    classifier-free guidance the batch is (uncond source, uncond target, source, target)
    and only group 1 is controlled.
    """

    total_steps: int
    source_positions: torch.Tensor
    copied_positions: torch.Tensor
    controlled_groups: list[int]
    steps_done: int = field(default=0)

    def set_step(self, steps_done: int) -> None:
        """Called before each model evaluation with how many steps have run."""
        self.steps_done = steps_done

    def replaces_cross(self) -> bool:
        """Whether this step's target uses the source's cross-attention maps."""
        return self.steps_done < int(CROSS_REPLACE_FRACTION * self.total_steps)

    def replaces_self(self, keys: int) -> bool:
        """Whether this step's target uses the source's self-attention maps over `keys`."""
        within_window = self.steps_done < int(SELF_REPLACE_FRACTION * self.total_steps)
        return within_window and keys <= MAX_SELF_ATTENTION_TOKENS

    def edit(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        """Attention maps (batch, heads, queries, keys) with the controlled targets' maps
        replaced by their sources'."""
        probs = probs.clone()
        sources = self.source_positions.to(probs.device)
        copied = self.copied_positions.to(probs.device)
        for group in self.controlled_groups:
            source, target = probs[2 * group], probs[2 * group + 1]
            if is_cross:
                target[..., copied] = source[..., sources[copied]]
            else:
                target.copy_(source)
        return probs


class AttentionControlProcessor:
    """An attention processor that lets an `AttentionController` edit the attention maps
    of UNet transformer layers (no spatial or group norm, 3-D hidden states: every SD 1.5
    transformer attention). Steps and layers the controller leaves alone run the fast
    scaled-dot-product processor."""

    def __init__(self, controller: AttentionController) -> None:
        self.controller = controller
        self.fast = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        is_cross = encoder_hidden_states is not None
        keys = (encoder_hidden_states if is_cross else hidden_states).shape[1]  # type: ignore[union-attr]
        controlled = (
            self.controller.replaces_cross() if is_cross else self.controller.replaces_self(keys)
        )
        if not controlled:
            return self.fast(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

        # diffusers' AttnProcessor, with the attention maps materialized and edited.
        batch_size = hidden_states.shape[0]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, keys, batch_size)
        query = attn.to_q(hidden_states)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(attn.head_to_batch_dim(query), key, attention_mask)

        queries = probs.shape[1]
        probs = self.controller.edit(probs.view(batch_size, -1, queries, keys), is_cross)
        out = torch.bmm(probs.view(-1, queries, keys), value)
        out = attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(out)))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


@contextmanager
def attention_control(
    unet: UNet2DConditionModel, controller: AttentionController
) -> Iterator[None]:
    """Run the UNet's transformer attentions under `controller` inside the block, and put
    its own processors back afterwards (the UNet is shared by every job of the worker)."""
    original = unet.attn_processors
    unet.set_attn_processor(
        {name: AttentionControlProcessor(controller) for name in original}  # type: ignore[misc]
    )
    try:
        yield
    finally:
        unet.set_attn_processor(original)
