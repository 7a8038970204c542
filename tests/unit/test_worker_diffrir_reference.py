"""Our DiffRIR computes what the reference implementation computes, not only with the same
names: weights, inputs and prior noise defined by formulas (reproducible anywhere, no file
of weights) give the outputs the reference `DiffRIRS2` gave for them.

tests/fixtures/diffrir_reference_outputs.json was made by running the reference arch file
(Zj-BinXia/DiffRIR) outside this repository on `formula_state` / `formula_inputs` below, at
a small config (the reference fixes the prior width at 64 features, so `prior_feats` is 64
here); it holds the prior vector (256 numbers) and a 3 x 8 x 8 sample of the output.
With these weights the output moves by ~0.08 when the prior's noise doubles and by ~0.007
when one CPEN convolution is scaled by 1.1: far beyond the tolerance, so every part
(CPEN, denoiser, DDPM schedule, U-net) is checked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from services.worker.diffrir.network import DiffRIR, DiffRIRConfig

FIXTURE = Path(__file__).parents[1] / "fixtures" / "diffrir_reference_outputs.json"
# The reference's constructor arguments, and ours for the same network.
REFERENCE_CONFIG = {
    "n_encoder_res": 1,
    "dim": 8,
    "scale": 1,
    "num_blocks": [1, 1, 1, 1],
    "num_refinement_blocks": 1,
    "heads": [1, 1, 2, 2],
    "ffn_expansion_factor": 2.2,
    "LayerNorm_type": "BiasFree",
}
CONFIG = DiffRIRConfig(
    dim=8,
    num_blocks=(1, 1, 1, 1),
    num_refinement_blocks=1,
    heads=(1, 1, 2, 2),
    n_encoder_res=1,
    prior_feats=64,
)
SIZE = 64
SAMPLE = (0, slice(None), slice(None, None, 8), slice(None, None, 8))  # 3 x 8 x 8 pixels
# float32 kernels may sum in another order on another CPU; outputs are of order 1.
TOLERANCE = 1e-4


def hash_uniform(count: int, seed: int) -> torch.Tensor:
    """`count` numbers in [-1, 1) that look random (the classic sin-hash, in float64: the
    same on every machine), unlike a plain sinusoid, whose dot products cancel."""
    position = torch.arange(count, dtype=torch.float64)
    return torch.frac(torch.sin(position * 12.9898 + seed * 78.233).abs() * 43758.5453) * 2 - 1


def formula_state(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights for every learned tensor of `template` from a formula of its name's order:
    `hash_uniform` scaled to unit gain for matrices and kernels (5x for the prior's
    scale-and-shift maps, so the prior matters), small around 1 for norm weights and
    temperatures, small around 0 for biases. Schedule buffers are kept."""
    state = {}
    learned = [name for name in template if not _is_schedule(name)]
    for name, tensor in template.items():
        if _is_schedule(name):
            state[name] = tensor.clone()
            continue
        # The two names of one shared module (diffusion.model = denoise, ...) get one value.
        index = learned.index(_canonical(name))
        wave = hash_uniform(tensor.numel(), index)
        if name.endswith("temperature") or ".norm" in name:
            values = 1 + 0.1 * wave
        elif tensor.ndim == 1:
            values = 0.01 * wave
        elif ".kernel." in name:
            # The prior's scale-and-shift maps, large enough for the prior to matter.
            values = 5 * wave / math.sqrt(tensor[0].numel())
        else:
            values = 1.7 * wave / math.sqrt(tensor[0].numel())  # unit gain: sqrt(3) ~ 1.7
        state[name] = values.reshape(tensor.shape).to(torch.float32)
    return state


def formula_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 6, 64, 64) input in [0.1, 0.9] and the prior's starting noise (1, 256)."""
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    channels = [0.5 + 0.4 * torch.sin(x / (5 + c) + y / (7 + 2 * c) + c) for c in range(6)]
    noise = hash_uniform(256, seed=-1).float()[None] * 1.7  # about unit variance
    return torch.stack(channels)[None].float(), noise


def _is_schedule(name: str) -> bool:
    return name.startswith("diffusion.") and not name.startswith(
        ("diffusion.model.", "diffusion.condition.")
    )


def _canonical(name: str) -> str:
    for alias, owner in (("diffusion.model.", "denoise."), ("diffusion.condition.", "condition.")):
        if name.startswith(alias):
            return owner + name.removeprefix(alias)
    return name


def test_prior_and_output_equal_the_reference_implementations() -> None:
    expected = json.loads(FIXTURE.read_text())
    assert expected["config"] == REFERENCE_CONFIG
    network = DiffRIR(CONFIG).eval()
    network.load_state_dict(formula_state(network.state_dict()), strict=True)
    inputs, noise = formula_inputs()
    with torch.no_grad():
        prior = network.prior(inputs, noise)
        output = network.G(inputs, prior)
    # The prior is of order 0.01-0.1 here: compared 10x more tightly than the output.
    assert torch.allclose(prior[0], torch.tensor(expected["prior"]), atol=TOLERANCE / 10)
    sample = output[SAMPLE].flatten()
    reference = torch.tensor(expected["output"])
    assert (sample - reference).abs().max() <= TOLERANCE, (sample - reference).abs().max()
    # The check has teeth: the output is not just the input's RGB passed through.
    assert (sample - inputs[SAMPLE].flatten()[: sample.numel()]).abs().max() > 0.01
