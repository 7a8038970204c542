"""DeepCache-style feature reuse: on most denoising steps run only the UNet's shallowest
blocks and reuse the deep features of the last full step.

Neighbouring denoising steps change the UNet's deep, low-resolution features little (Ma et
al., "DeepCache", 2023). Every `interval` steps the UNet runs whole and the output of its
second-to-last up block is kept; on the steps between, the first down block and the last
up block run (with their skip connections, which carry the fine detail) and everything
deeper returns what it returned on the last full step. With SD 1.5's four levels that
skips about three quarters of the UNet's FLOPs on reuse steps; the image drifts from the
exact one (tests/unit/test_worker_feature_reuse.py measures how much on the tiny model).

It works by wrapping the `forward` of the skipped blocks, so the diffusers UNet and the
pipelines stay stock. A generation starts (a full step, the cache dropped) when the
timestep goes up or the input's shape changes: the timesteps of one generation only go
down (PNDM repeats one, which continues the generation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class FeatureReuse:
    """Makes `unet` (a diffusers UNet2DConditionModel) reuse its deep features between full
    steps every `interval` (>= 2) steps, from construction on."""

    def __init__(self, unet: Any, interval: int) -> None:
        if interval < 2:
            raise ValueError(f"feature reuse needs an interval of at least 2, not {interval}")
        self.interval = interval
        self.full_steps = 0  # UNet calls that ran whole, for tests and logs
        self.reused_steps = 0
        self._step = 0
        self._last_timestep: float | None = None
        self._last_shape: torch.Size | None = None
        self._reusing = False
        self._cache: dict[int, Any] = {}
        deep = [*unet.down_blocks[1:], unet.mid_block, *unet.up_blocks[:-1]]
        for index, block in enumerate(deep):
            block.forward = self._cached(index, block.forward)
        unet.register_forward_pre_hook(self._before_call, with_kwargs=True)

    def _before_call(
        self, _unet: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Decide, before each UNet call, whether this step runs whole."""
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        value = float(timestep.flatten()[0]) if torch.is_tensor(timestep) else float(timestep)
        new_generation = (
            self._last_timestep is None
            or value > self._last_timestep
            or sample.shape != self._last_shape
        )
        if new_generation:
            self._step = 0
            self._cache.clear()
        self._reusing = self._step % self.interval != 0
        self._step += 1
        self._last_timestep, self._last_shape = value, sample.shape
        if self._reusing:
            self.reused_steps += 1
        else:
            self.full_steps += 1

    def _cached(self, index: int, forward: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            if self._reusing:
                return self._cache[index]
            output = forward(*args, **kwargs)
            self._cache[index] = output
            return output

        return run
