"""The mapping network: LLM hidden states to the UNet's cross-attention features."""

from __future__ import annotations

import torch
from torch import nn

# The paper's hidden width: 4096 (LLaMA-2-7B) -> 512 -> 768 (SD v1.4's CLIP ViT-L/14).
MAPPING_HIDDEN_SIZE = 512


class MappingNetwork(nn.Module):
    """A two-layer MLP applied at every sequence position: (..., llm) -> (..., cross)."""

    def __init__(
        self, llm_hidden_size: int, cross_attention_dim: int, hidden_size: int = MAPPING_HIDDEN_SIZE
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(llm_hidden_size, hidden_size),
            nn.GELU(),
            nn.Linear(hidden_size, cross_attention_dim),
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Map the LLM's hidden states to conditioning features."""
        mapped: torch.Tensor = self.net(hidden_states)
        return mapped
