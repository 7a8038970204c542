"""DiffRIR checkpoint files: the released format, read and written.

The released checkpoints (basicsr's format, read by the reference `inference_diffrir.py`)
are `torch.save`d dicts whose `params_ema` entry is the state dict to serve (`params`, the
raw training weights, may be there too). A `.safetensors` file holds the state dict itself
(e.g. `params_ema` converted). Our training entry point writes the same dict plus a
`config` entry with the network's sizes (the reference loader ignores it); files without
one are taken to be the released x1 config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open

from services.worker.diffrir.network import DiffRIR, DiffRIRConfig

EMA_KEY = "params_ema"
RAW_KEY = "params"
CONFIG_KEY = "config"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's weights, the config they fit and a short content hash."""

    state_dict: dict[str, torch.Tensor]
    config: DiffRIRConfig = field(default_factory=DiffRIRConfig)
    sha256: str = ""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: Path) -> Checkpoint:
    """The weights in `path` (.pth/.pt: a dict with `params_ema`, else `params`, else a
    bare state dict; .safetensors: a state dict, its sizes in the `config` metadata if
    any). Raises ValueError when the file holds no state dict."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        config = json.loads(metadata[CONFIG_KEY]) if CONFIG_KEY in metadata else None
        state_dict = load_file(str(path))
    else:
        # weights_only: a checkpoint is data; never run code from a downloaded pickle.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict")
        config = loaded.get(CONFIG_KEY)
        entry: dict[str, Any] = next(
            (loaded[key] for key in (EMA_KEY, RAW_KEY) if key in loaded), loaded
        )
        state_dict = {k: v for k, v in entry.items() if k != CONFIG_KEY}
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} holds no DiffRIR state dict (expected '{EMA_KEY}')")
    return Checkpoint(
        state_dict=state_dict,
        config=DiffRIRConfig.from_dict(config) if config else DiffRIRConfig(),
        sha256=file_sha256(path),
    )


def load_network(path: Path) -> tuple[DiffRIR, Checkpoint]:
    """A DiffRIR network with the weights of `path`, loaded strictly (every name and
    shape must match: a checkpoint of another architecture fails here, not mid-job)."""
    checkpoint = read_checkpoint(path)
    network = DiffRIR(checkpoint.config)
    network.load_state_dict(checkpoint.state_dict, strict=True)
    return network.eval(), checkpoint


def save_checkpoint(path: Path, ema: DiffRIR, raw: DiffRIR) -> None:
    """Write the released format: `params_ema` (served), `params` (raw) and our `config`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            EMA_KEY: ema.state_dict(),
            RAW_KEY: raw.state_dict(),
            CONFIG_KEY: ema.config.to_dict(),
        },
        path,
    )
