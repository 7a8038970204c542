"""The encoder checkpoint: the trained mapping network and RepAdapters, in one folder.

Layout (what training writes and the worker loads; the LLM itself is not copied, it is
named by the profile and loaded with `from_pretrained`):

    beyond_clip.json       format, sizes, the adapter configuration (null: no adapters)
    mapping.safetensors    MappingNetwork weights
    adapters.safetensors   RepAdapter weights, keyed by the LLM module they sit in front of
                           (absent when the configuration says no adapters)

`load_text_encoder` puts the adapters on the LLM, loads them and merges them into the linear
weights (rep_adapter.py), so the served LLM has the original architecture and cost.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

from services.worker.beyond_clip.encoder import CLIP_POSITIONS, LlmTextEncoder
from services.worker.beyond_clip.mapping import MAPPING_HIDDEN_SIZE, MappingNetwork
from services.worker.beyond_clip.rep_adapter import (
    RepAdapterConfig,
    adapter_state_dict,
    add_rep_adapters,
    merge_rep_adapters,
)
from services.worker.profiles import BEYOND_CLIP_CONFIG_NAME

CONFIG_NAME = BEYOND_CLIP_CONFIG_NAME
MAPPING_NAME = "mapping.safetensors"
ADAPTERS_NAME = "adapters.safetensors"
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class EncoderConfig:
    """What a checkpoint's weights fit: the LLM's width, the UNet's, and the adapters."""

    llm_hidden_size: int
    cross_attention_dim: int
    mapping_hidden_size: int = MAPPING_HIDDEN_SIZE
    # None: the LLM runs as it is (the "without adapter" ablation).
    adapter: RepAdapterConfig | None = None
    min_length: int = CLIP_POSITIONS

    def to_json(self) -> str:
        """The config file's text."""
        return json.dumps({"format": CHECKPOINT_FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def read(cls, directory: Path) -> EncoderConfig:
        """The config of the checkpoint in `directory`; ValueError if it is not one."""
        try:
            raw = json.loads((directory / CONFIG_NAME).read_text())
        except (OSError, ValueError) as error:
            message = f"{directory} is not a Beyond CLIP encoder checkpoint: {error}"
            raise ValueError(message) from None
        if raw.pop("format", None) != CHECKPOINT_FORMAT:
            raise ValueError(f"{directory / CONFIG_NAME}: unsupported format")
        adapter = raw.pop("adapter")
        return cls(**raw, adapter=RepAdapterConfig(**adapter) if adapter else None)


def save_checkpoint(
    directory: Path, config: EncoderConfig, mapping: MappingNetwork, llm: torch.nn.Module
) -> None:
    """Write the mapping and the LLM's (unmerged) adapters to `directory` (module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(mapping.state_dict()), str(directory / MAPPING_NAME))
    if config.adapter is not None:
        save_file(_contiguous(adapter_state_dict(llm)), str(directory / ADAPTERS_NAME))
    (directory / CONFIG_NAME).write_text(config.to_json())


def checkpoint_revision(directory: Path) -> str:
    """What job records carry for a checkpoint: a hash of its files."""
    digest = hashlib.sha256()
    for name in (CONFIG_NAME, MAPPING_NAME, ADAPTERS_NAME):
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return f"beyond-clip-{digest.hexdigest()[:12]}"


def build_text_encoder(
    llm_path: str,
    config: EncoderConfig,
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> LlmTextEncoder:
    """The LLM (decoder stack, no language-model head) with fresh adapters if the config
    has them, its tokenizer and a freshly initialised mapping: where training starts."""
    tokenizer = AutoTokenizer.from_pretrained(llm_path, revision=revision)
    llm = AutoModel.from_pretrained(llm_path, revision=revision, dtype=dtype)
    if llm.config.hidden_size != config.llm_hidden_size:
        raise ValueError(
            f"the encoder checkpoint is for an LLM of width {config.llm_hidden_size}; "
            f"{llm_path} has {llm.config.hidden_size}"
        )
    if config.adapter is not None:
        add_rep_adapters(llm, config.adapter)
    mapping = MappingNetwork(
        config.llm_hidden_size, config.cross_attention_dim, config.mapping_hidden_size
    ).to(dtype)
    return LlmTextEncoder(tokenizer, llm, mapping, config.min_length)


def load_weights(encoder: LlmTextEncoder, directory: Path, config: EncoderConfig) -> None:
    """Load a checkpoint's mapping and adapters into `encoder` (built with `config`)."""
    encoder.mapping.load_state_dict(load_file(str(directory / MAPPING_NAME)))
    if config.adapter is not None:
        missing, unexpected = encoder.llm.load_state_dict(
            load_file(str(directory / ADAPTERS_NAME)), strict=False
        )
        missing_adapters = [name for name in missing if ".adapter." in name]
        if missing_adapters or unexpected:
            raise ValueError(
                f"{directory / ADAPTERS_NAME} does not fit the LLM: missing "
                f"{missing_adapters[:3]}, unexpected {unexpected[:3]}"
            )


def load_text_encoder(
    llm_path: str,
    weights_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    revision: str | None = None,
) -> LlmTextEncoder:
    """The served encoder: the LLM with the checkpoint's adapters merged into its weights,
    the checkpoint's mapping, on `device`, in eval mode."""
    config = EncoderConfig.read(weights_dir)
    # Loaded in the serving dtype (a 7B LLM in float32 would need twice the memory); each
    # merge is computed in float32 (AdaptedLinear.merged).
    encoder = build_text_encoder(llm_path, config, revision, dtype)
    load_weights(encoder, weights_dir, config)
    merge_rep_adapters(encoder.llm)
    return encoder.to(device=device).eval().requires_grad_(False)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().contiguous().cpu() for name, tensor in state.items()}
