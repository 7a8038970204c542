"""Convert an LLMGA checkpoint from the original LLaVA format to the Hugging Face ``llava`` format.

The LLMGA MLLM checkpoints are published as LLaVA ``LlavaLlamaForCausalLM`` directories: a
Llama-family causal-LM config with ``mm_*`` fields, weights under ``model.*`` / ``lm_head.*``
plus the ``mlp2x_gelu`` projector ``model.mm_projector.{0,2}.*``, and a tokenizer that may
carry the LLMGA tag tokens (``<gen_image>`` ...). The vision tower (CLIP ViT-L/14-336) is
*not* part of them: LLaVA loads it at run time from ``mm_vision_tower``.

vLLM serves the Hugging Face ``llava`` format (``LlavaForConditionalGeneration``), which this
module writes::

    python -m services.mllm.convert_checkpoint SRC_DIR OUT_DIR --template llava_v1 \
        [--vision-tower PATH_OR_ID] [--dtype auto|float16|bfloat16|float32]

Weight keys (the layout transformers >= 4.52 writes; vLLM's llava loader maps it):

=====================================  ==========================================
LLaVA original                         Hugging Face ``llava``
=====================================  ==========================================
``model.<x>`` (language model)         ``model.language_model.<x>``
``lm_head.weight``                     ``lm_head.weight``
``model.mm_projector.0.{weight,bias}`` ``model.multi_modal_projector.linear_1.*``
``model.mm_projector.2.{weight,bias}`` ``model.multi_modal_projector.linear_2.*``
vision tower checkpoint ``<x>``        ``model.vision_tower.vision_model.<x>``
``model.vision_tower.*`` (if saved)    dropped: LLaVA reloads the tower at run time
=====================================  ==========================================

An ``<image>`` token is added to the tokenizer when missing; the embedding matrix and
``lm_head`` grow to cover it, new rows set to the mean of the existing rows (the image
token's embedding is never used, image features replace it; a mean ``lm_head`` row keeps
its logit unremarkable). The output also holds a ``LlavaProcessor`` (the tower's CLIP image
settings, padding to a square with the mean colour when ``image_aspect_ratio`` is ``pad``,
as LLaVA does) and our chat template as ``chat_template.jinja``. Nothing is downloaded: the
vision tower is a local directory or a Hugging Face id already in the local cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from services.mllm.vllm_launch import CHAT_TEMPLATES_DIR

logger = logging.getLogger("llmga.mllm.convert")

IMAGE_TOKEN = "<image>"
TEMPLATES = ("llava_v1", "llava_llama_2")
DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}
#: ``mm_vision_select_feature`` -> ``vision_feature_select_strategy``
SELECT_FEATURE: dict[str, Literal["default", "full"]] = {"patch": "default", "cls_patch": "full"}
#: Config fields of LLaVA's multimodal wrapper; everything else is the text model's config.
LLAVA_ONLY_FIELDS = {
    "architectures",
    "auto_map",
    "model_type",
    "freeze_mm_mlp_adapter",
    "freeze_mm_vision_resampler",
    "image_aspect_ratio",
    "image_grid_pinpoints",
    "tokenizer_model_max_length",
    "tokenizer_padding_side",
    "tune_mm_mlp_adapter",
    "tune_mm_vision_resampler",
    "unfreeze_mm_vision_tower",
    "use_mm_proj",
    "transformers_version",
    "_name_or_path",
}
SHARD_BYTES = 4 * 1024**3
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class ConversionError(ValueError):
    """The source checkpoint cannot be expressed in the Hugging Face ``llava`` format."""


@dataclass(frozen=True)
class ConversionResult:
    out_dir: Path
    image_token_index: int
    vocab_size: int
    added_image_token: bool
    num_tensors: int


# --------------------------------------------------------------------------- reading


def _iter_source_tensors(src: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """All tensors of the source checkpoint (safetensors preferred, else PyTorch ``.bin``)."""
    st_files = sorted(src.glob("*.safetensors"))
    if st_files:
        from safetensors import safe_open

        for file in st_files:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    yield key, handle.get_tensor(key)
        return
    bin_files = sorted(src.glob("pytorch_model*.bin"))
    if not bin_files:
        raise ConversionError(f"no *.safetensors or pytorch_model*.bin weights in {src}")
    for file in bin_files:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        yield from state.items()


def _text_model_type(source_type: str, override: str | None) -> str:
    if override:
        return override
    name = source_type.removeprefix("llava_")
    if name in ("", "llava", "llama"):
        return "llama"
    return name


def _check_multimodal_config(cfg: dict[str, Any]) -> None:
    projector = cfg.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise ConversionError(
            f"mm_projector_type {projector!r} is not supported "
            "(HF llava has a 2-layer GELU MLP: mlp2x_gelu)"
        )
    if cfg.get("mm_use_im_start_end"):
        raise ConversionError(
            "mm_use_im_start_end=True (image start/end tokens) has no HF llava equivalent"
        )
    if cfg.get("mm_patch_merge_type", "flat") != "flat":
        raise ConversionError(
            f"mm_patch_merge_type {cfg['mm_patch_merge_type']!r} is not supported (flat only)"
        )
    feature = cfg.get("mm_vision_select_feature", "patch")
    if feature not in SELECT_FEATURE:
        raise ConversionError(f"mm_vision_select_feature {feature!r} is not supported")
    if cfg.get("image_aspect_ratio", "pad") not in ("pad", "square", None):
        raise ConversionError(
            f"image_aspect_ratio {cfg['image_aspect_ratio']!r} is not supported (pad or square)"
        )


def _load_vision_tower(spec: str) -> tuple[Any, Path | None]:
    """The CLIP vision model named by a local directory or a cached Hugging Face id."""
    from transformers import CLIPVisionModel

    local = Path(spec).expanduser()
    if local.is_dir():
        model = CLIPVisionModel.from_pretrained(str(local), dtype=torch.float32)
        return model, local
    try:
        model = CLIPVisionModel.from_pretrained(spec, dtype=torch.float32, local_files_only=True)
    except OSError as exc:
        raise ConversionError(
            f"vision tower {spec!r} is neither a local directory nor in the local Hugging Face "
            "cache (nothing is downloaded: pass --vision-tower PATH)"
        ) from exc
    return model, None


def _image_processor_settings(tower_dir: Path | None, spec: str, image_size: int) -> dict[str, Any]:
    """CLIP preprocessing of the tower (its ``preprocessor_config.json`` when it has one)."""
    settings: dict[str, Any] = {
        "do_resize": True,
        "size": {"shortest_edge": image_size},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "do_convert_rgb": True,
    }
    found: dict[str, Any] | None = None
    if tower_dir is not None and (tower_dir / "preprocessor_config.json").is_file():
        found = json.loads((tower_dir / "preprocessor_config.json").read_text())
    elif tower_dir is None:
        try:
            from transformers import CLIPImageProcessor

            found = CLIPImageProcessor.from_pretrained(spec, local_files_only=True).to_dict()
        except OSError:
            found = None
    if found:
        for key in list(settings):
            if key in found:
                settings[key] = found[key]
        size, crop = settings["size"], settings["crop_size"]
        if isinstance(size, int):
            settings["size"] = {"shortest_edge": size}
        if isinstance(crop, int):
            settings["crop_size"] = {"height": crop, "width": crop}
    return settings


# --------------------------------------------------------------------------- conversion


def _mean_rows(weight: torch.Tensor, new_rows: int) -> torch.Tensor:
    if new_rows <= 0:
        return weight
    mean = weight.float().mean(dim=0, keepdim=True).to(weight.dtype)
    return torch.cat([weight, mean.expand(new_rows, -1)], dim=0)


def _rename_text_key(key: str) -> str | None:
    """HF llava name of a language-model / projector key; ``None`` for keys to drop."""
    if key.startswith("model.vision_tower.") or key.startswith("model.vision_resampler."):
        return None
    match = re.fullmatch(r"model\.mm_projector\.([02])\.(weight|bias)", key)
    if match:
        linear = "linear_1" if match.group(1) == "0" else "linear_2"
        return f"model.multi_modal_projector.{linear}.{match.group(2)}"
    if key.startswith("model.mm_projector."):
        raise ConversionError(
            f"unexpected projector weight {key!r} (expected mlp2x_gelu: mm_projector.0 / .2)"
        )
    if key.startswith("model."):
        return "model.language_model." + key.removeprefix("model.")
    if key.startswith("lm_head."):
        return key
    raise ConversionError(f"unexpected weight {key!r} in the source checkpoint")


def _save_sharded(tensors: dict[str, torch.Tensor], out: Path) -> None:
    from safetensors.torch import save_file

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key].contiguous()
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        for key, tensor in shard.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(
        json.dumps(index, indent=2, sort_keys=True) + "\n"
    )


def convert_checkpoint(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    template: str,
    vision_tower: str | None = None,
    dtype: str = "auto",
    text_model_type: str | None = None,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert the LLaVA-original checkpoint ``src_dir`` to HF ``llava`` format in ``out_dir``."""
    from transformers import AddedToken, AutoConfig, AutoTokenizer, LlavaConfig, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    src, out = Path(src_dir), Path(out_dir)
    if template not in TEMPLATES:
        raise ConversionError(f"unknown template {template!r} (choose from {', '.join(TEMPLATES)})")
    if not (src / "config.json").is_file():
        raise ConversionError(f"{src} has no config.json")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConversionError(f"{out} exists and is not empty (pass --overwrite)")
        shutil.rmtree(out)
    src_cfg: dict[str, Any] = json.loads((src / "config.json").read_text())
    _check_multimodal_config(src_cfg)

    source_dtype = src_cfg.get("dtype") or src_cfg.get("torch_dtype") or "float16"
    dtype_name = source_dtype if dtype == "auto" else dtype
    if dtype_name not in DTYPES:
        raise ConversionError(f"unsupported dtype {dtype_name!r} (choose from {', '.join(DTYPES)})")
    target_dtype = DTYPES[dtype_name]

    # Tokenizer: keep every added token (LLMGA tags), add <image> when missing.
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    vocab = tokenizer.get_vocab()
    added_image_token = IMAGE_TOKEN not in vocab
    if added_image_token:
        tokenizer.add_tokens(
            [AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True
        )
    image_token_index = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert isinstance(image_token_index, int)

    # Language model + projector weights.
    old_vocab = int(src_cfg["vocab_size"])
    new_vocab = max(old_vocab, len(tokenizer), image_token_index + 1)
    tensors: dict[str, torch.Tensor] = {}
    dropped = 0
    for key, tensor in _iter_source_tensors(src):
        new_key = _rename_text_key(key)
        if new_key is None:
            dropped += 1
            continue
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            if tensor.shape[0] != old_vocab:
                raise ConversionError(
                    f"{key} has {tensor.shape[0]} rows, config vocab_size is {old_vocab}"
                )
            tensor = _mean_rows(tensor, new_vocab - old_vocab)
        tensors[new_key] = tensor.to(target_dtype)
    if dropped:
        logger.info(
            "dropped %d vision-tower weights saved in the source (the tower is reloaded)", dropped
        )
    for needed in (
        "model.language_model.embed_tokens.weight",
        "model.multi_modal_projector.linear_1.weight",
    ):
        if needed not in tensors:
            raise ConversionError(f"source checkpoint lacks the weight converted to {needed!r}")

    # Vision tower.
    tower_spec = vision_tower or src_cfg.get("mm_vision_tower")
    if not tower_spec:
        raise ConversionError(
            "no vision tower: the config has no mm_vision_tower and --vision-tower is not given"
        )
    tower, tower_dir = _load_vision_tower(tower_spec)
    vision_config = tower.config
    mm_hidden = src_cfg.get("mm_hidden_size", vision_config.hidden_size)
    projector_in = tensors["model.multi_modal_projector.linear_1.weight"].shape[1]
    if not mm_hidden == vision_config.hidden_size == projector_in:
        raise ConversionError(
            f"vision tower hidden size {vision_config.hidden_size} does not match mm_hidden_size "
            f"{mm_hidden} / projector input {projector_in}"
        )
    for key, tensor in tower.state_dict().items():
        tensors["model.vision_tower.vision_model." + key.removeprefix("vision_model.")] = tensor.to(
            target_dtype
        )
    del tower

    # Config.
    text_fields = {
        k: v for k, v in src_cfg.items() if k not in LLAVA_ONLY_FIELDS and not k.startswith("mm_")
    }
    text_fields.pop("torch_dtype", None)
    text_fields.pop("dtype", None)
    text_fields["vocab_size"] = new_vocab
    text_config = AutoConfig.for_model(
        _text_model_type(src_cfg.get("model_type", "llama"), text_model_type)
    )
    text_config.update(text_fields)
    config = LlavaConfig(
        text_config=text_config.to_dict(),
        vision_config=vision_config.to_dict(),
        image_token_index=image_token_index,
        projector_hidden_act="gelu",
        vision_feature_layer=int(src_cfg.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy=SELECT_FEATURE[
            src_cfg.get("mm_vision_select_feature", "patch")
        ],
        image_seq_length=(vision_config.image_size // vision_config.patch_size) ** 2,
        multimodal_projector_bias="model.multi_modal_projector.linear_1.bias" in tensors,
        tie_word_embeddings=bool(src_cfg.get("tie_word_embeddings", False)),
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    config.dtype = target_dtype

    # Write everything.
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out))
    _save_sharded(tensors, out)
    if (src / "generation_config.json").is_file():
        shutil.copyfile(src / "generation_config.json", out / "generation_config.json")
    template_text = (CHAT_TEMPLATES_DIR / f"{template}.jinja").read_text()
    image_processor = LlavaImageProcessorPil(
        do_pad=src_cfg.get("image_aspect_ratio", "pad") == "pad",
        **_image_processor_settings(tower_dir, tower_spec, vision_config.image_size),
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS token (dropped by the "default" strategy)
        image_token=IMAGE_TOKEN,
        chat_template=template_text,
    )
    processor.save_pretrained(str(out))
    _normalise_preprocessor_config(out)
    (out / "chat_template.jinja").write_text(template_text)
    logger.info("wrote %s (%d tensors, image token %d)", out, len(tensors), image_token_index)
    return ConversionResult(
        out_dir=out,
        image_token_index=image_token_index,
        vocab_size=new_vocab,
        added_image_token=added_image_token,
        num_tensors=len(tensors),
    )


def _normalise_preprocessor_config(out: Path) -> None:
    """Name the backend-neutral ``LlavaImageProcessor`` (older transformers know it too)."""
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = out / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        holder = data.get("image_processor", data) if name == "processor_config.json" else data
        if (
            isinstance(holder, dict)
            and holder.get("image_processor_type") == "LlavaImageProcessorPil"
        ):
            holder["image_processor_type"] = "LlavaImageProcessor"
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.mllm.convert_checkpoint",
        description="Convert an LLMGA (LLaVA-original) checkpoint to the HF llava format.",
    )
    parser.add_argument("src_dir", type=Path, help="LLaVA-original checkpoint directory")
    parser.add_argument(
        "out_dir", type=Path, help="output directory (e.g. $LLMGA_MLLM_CONVERTED_ROOT/<name>-hf)"
    )
    parser.add_argument(
        "--template", required=True, choices=TEMPLATES, help="chat template written to the output"
    )
    parser.add_argument(
        "--vision-tower",
        default=None,
        help="CLIP vision tower: local directory or cached HF id (default: mm_vision_tower)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *DTYPES),
        help="weight dtype (auto: the source's)",
    )
    parser.add_argument(
        "--text-model-type", default=None, help="text config model_type (default: from the source)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = convert_checkpoint(
            args.src_dir,
            args.out_dir,
            template=args.template,
            vision_tower=args.vision_tower,
            dtype=args.dtype,
            text_model_type=args.text_model_type,
            overwrite=args.overwrite,
        )
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"converted {args.src_dir} -> {result.out_dir} "
        f"(image token index {result.image_token_index})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
