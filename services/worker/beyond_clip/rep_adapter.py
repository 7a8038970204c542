"""RepAdapter (Luo et al. 2023, "Towards Efficient Visual Adaption via Structural
Re-parameterization"): a small linear adapter placed in front of a linear layer, trained
while the layer stays frozen, then folded into that layer's weight and bias so inference
runs exactly the original architecture at the original cost.

The adapter maps x to x + s * B(A(x)): A projects down to `hidden_dim` (grouped, dense by
default as in the released code), B projects back up group-wise (a block-diagonal matrix:
each of `up_groups` groups of the hidden units drives its own slice of the output), s is a
fixed scale. B starts at zero, so a fresh adapter is the identity and training starts from
the frozen model's behaviour. Dropout sits between A and B while training.

Because the adapter is linear and the layer after it is linear, W(x + s*B(Ax + a) + b) + c
equals W'x + c' with W' = W (I + s B A) and c' = c + s W (B a + b): `merge_rep_adapters`
computes exactly that and puts back a plain `nn.Linear`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RepAdapterConfig:
    """The shape of every adapter of a model (one per wrapped linear layer)."""

    hidden_dim: int = 8
    # Groups of the down (A) and up (B) projections; the paper's adapter is dense-to-sparse.
    down_groups: int = 1
    up_groups: int = 2
    scale: float = 1.0
    dropout: float = 0.1


class RepAdapter(nn.Module):
    """x -> x + scale * up(dropout(down(x))), with grouped 1x1 projections (module docstring)."""

    def __init__(self, features: int, config: RepAdapterConfig) -> None:
        super().__init__()
        for groups in (config.down_groups, config.up_groups):
            if features % groups or config.hidden_dim % groups:
                raise ValueError(
                    f"adapter groups ({groups}) must divide both the features ({features}) "
                    f"and the hidden size ({config.hidden_dim})"
                )
        # Grouped 1x1 convolutions over the feature axis are grouped linear maps.
        self.down = nn.Conv1d(features, config.hidden_dim, 1, groups=config.down_groups)
        self.up = nn.Conv1d(config.hidden_dim, features, 1, groups=config.up_groups)
        self.dropout = nn.Dropout(config.dropout)
        self.scale = config.scale
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(_bias(self.down))
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(_bias(self.up))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Adapt `x` of shape (..., features)."""
        flat = x.reshape(-1, x.shape[-1], 1)  # (N, features, 1): Conv1d's layout
        delta = self.up(self.dropout(self.down(flat))) * self.scale
        return x + delta.reshape(x.shape)

    def as_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The adapter as (M, v) with adapter(x) = M x + v at inference (no dropout)."""
        down = _dense(self.down)  # (hidden, features)
        up = _dense(self.up)  # (features, hidden)
        eye = torch.eye(up.shape[0], dtype=up.dtype, device=up.device)
        matrix = eye + self.scale * up @ down
        offset = self.scale * (up @ _bias(self.down) + _bias(self.up))
        return matrix, offset


def _bias(conv: nn.Conv1d) -> torch.Tensor:
    """The projection's bias (every adapter projection has one)."""
    assert conv.bias is not None
    return conv.bias


def _dense(conv: nn.Conv1d) -> torch.Tensor:
    """A grouped 1x1 Conv1d as the block-diagonal (out, in) matrix it multiplies by."""
    weight = conv.weight[..., 0]  # (out, in / groups)
    groups = conv.groups
    out_per_group = conv.out_channels // groups
    return torch.block_diag(
        *(weight[g * out_per_group : (g + 1) * out_per_group] for g in range(groups))
    )


class AdaptedLinear(nn.Module):
    """A frozen linear layer with a RepAdapter in front of it."""

    def __init__(self, linear: nn.Linear, config: RepAdapterConfig) -> None:
        super().__init__()
        # In float32 whatever the frozen layer's dtype: an optimiser updating half-precision
        # weights loses small steps.
        self.adapter = RepAdapter(linear.in_features, config).to(device=linear.weight.device)
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The linear layer applied to the adapted input."""
        adapted = self.adapter(x.to(self.adapter.down.weight.dtype))
        return self.linear(adapted.to(x.dtype))

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """One plain `nn.Linear` computing what this module computes at inference."""
        linear = self.linear
        # Folded in float32: a float16 product of two matrices would lose the small update.
        weight = linear.weight.float()
        matrix, offset = (t.float() for t in self.adapter.as_affine())
        bias = weight @ offset
        if linear.bias is not None:
            bias = bias + linear.bias.float()
        merged = nn.Linear(linear.in_features, linear.out_features, bias=True)
        merged.to(device=linear.weight.device)
        merged.weight.copy_(weight @ matrix)
        merged.bias.copy_(bias)
        return merged.to(dtype=linear.weight.dtype).requires_grad_(False)


def add_rep_adapters(
    model: nn.Module, config: RepAdapterConfig, skip: Iterable[str] = ()
) -> list[str]:
    """Put a RepAdapter in front of every `nn.Linear` of `model` (in place), except those
    whose qualified name is in `skip`. Returns the wrapped layers' names."""
    skipped = set(skip)
    wrapped = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in skipped
    ]
    for name in wrapped:
        parent, child = _parent(model, name)
        setattr(parent, child, AdaptedLinear(getattr(parent, child), config))
    return wrapped


def merge_rep_adapters(model: nn.Module) -> int:
    """Fold every adapter of `model` into its linear layer (in place); returns how many."""
    names = [name for name, module in model.named_modules() if isinstance(module, AdaptedLinear)]
    for name in names:
        parent, child = _parent(model, name)
        setattr(parent, child, getattr(parent, child).merged())
    return len(names)


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights only (what stage 2 trains), keyed by qualified name."""
    return {name: tensor for name, tensor in model.state_dict().items() if ".adapter." in name}


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapters' trainable parameters."""
    return [param for name, param in model.named_parameters() if ".adapter." in name]


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child
