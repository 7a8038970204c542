"""LLaVA-original -> Hugging Face ``llava`` conversion on a tiny checkpoint built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoProcessor,
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from services.mllm.convert_checkpoint import (
    CHAT_TEMPLATES_DIR,
    ConversionError,
    convert_checkpoint,
    main,
)

# float32 throughout; the converted model runs the same operations on the same weights.
ATOL = 1e-5
TAGS = ["<gen_image>", "</gen_image>"]
CORPUS = [
    "a",
    "photo",
    "of",
    "red",
    "car",
    "on",
    "the",
    "street",
    "at",
    "sunset",
    "with",
    "dog",
    "and",
    "cat",
    "in",
    "snow",
]


def _tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(["<unk>", "<s>", "</s>", *dict.fromkeys(CORPUS)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tok.add_tokens(TAGS, special_tokens=True)
    return tok


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("convert")
    tower_dir, src, out = root / "clip-tower", root / "llmga-src", root / "llmga-src-hf"

    vision_config = CLIPVisionConfig(
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=16,
        patch_size=4,
    )
    tower = CLIPVisionModel(vision_config).eval()
    tower.save_pretrained(str(tower_dir))

    tokenizer = _tokenizer()
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
    )
    llm = LlamaForCausalLM(text_config).eval()
    projector = torch.nn.Sequential(
        torch.nn.Linear(24, 32), torch.nn.GELU(), torch.nn.Linear(32, 32)
    ).eval()

    # LLaVA-original layout: model.* / lm_head.* / model.mm_projector.{0,2}.*
    state = {k: v.contiguous() for k, v in llm.state_dict().items()}
    state.update(
        {f"model.mm_projector.{k}": v.contiguous() for k, v in projector.state_dict().items()}
    )
    # a tower weight saved by LLaVA training: dropped, the tower is reloaded
    state["model.vision_tower.vision_tower.vision_model.post_layernorm.weight"] = torch.zeros(24)
    src.mkdir()
    save_file(state, str(src / "model.safetensors"), metadata={"format": "pt"})
    cfg = text_config.to_dict()
    cfg.update(
        architectures=["LlavaLlamaForCausalLM"],
        model_type="llava_llama",
        dtype="float32",
        mm_projector_type="mlp2x_gelu",
        mm_hidden_size=24,
        # not available here: --vision-tower must win
        mm_vision_tower="openai/clip-vit-large-patch14-336",
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_use_im_start_end=False,
        mm_use_im_patch_token=False,
        image_aspect_ratio="pad",
        tune_mm_mlp_adapter=False,
    )
    (src / "config.json").write_text(json.dumps(cfg))
    tokenizer.save_pretrained(str(src))

    assert (
        main([str(src), str(out), "--template", "llava_llama_2", "--vision-tower", str(tower_dir)])
        == 0
    )
    converted = LlavaForConditionalGeneration.from_pretrained(str(out)).eval()
    return {
        "src": src,
        "out": out,
        "llm": llm,
        "projector": projector,
        "tower": tower,
        "converted": converted,
    }


def test_text_only_logits_match_source_language_model(tiny: dict) -> None:
    converted, llm = tiny["converted"], tiny["llm"]
    vocab = llm.config.vocab_size
    assert converted.config.text_config.vocab_size == vocab + 1  # <image> appended
    ids = torch.tensor([[1, 4, 5, 6, 7, vocab - 2, 8, 9, vocab - 1, 3]])
    with torch.no_grad():
        expected = llm(input_ids=ids).logits
        got = converted(input_ids=ids).logits
    assert torch.allclose(got[..., :vocab], expected, atol=ATOL, rtol=0)
    # the appended rows are the means of the source rows
    emb = converted.get_input_embeddings().weight
    assert torch.allclose(emb[vocab], llm.get_input_embeddings().weight.mean(0), atol=1e-6)


def test_projector_maps_features_like_mm_projector(tiny: dict) -> None:
    features = torch.randn(2, 16, 24)
    with torch.no_grad():
        expected = tiny["projector"](features)
        got = tiny["converted"].model.multi_modal_projector(features)
    assert torch.allclose(got, expected, atol=ATOL, rtol=0)


def test_image_prompt_matches_llava_forward(tiny: dict) -> None:
    """End to end: layer -2 patch features -> projector -> spliced into the LLM at <image>."""
    converted, llm, tower, projector = (
        tiny["converted"],
        tiny["llm"],
        tiny["tower"],
        tiny["projector"],
    )
    image_index = converted.config.image_token_index
    n = converted.config.image_seq_length
    assert n == (16 // 4) ** 2
    pixels = torch.randn(1, 3, 16, 16)
    ids = torch.tensor([[1, 4, 5] + [image_index] * n + [6, 7]])
    with torch.no_grad():
        feats = tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        embeds = llm.get_input_embeddings()(torch.where(ids == image_index, 0, ids))
        embeds[ids == image_index] = projector(feats).reshape(-1, 32)
        expected = llm(inputs_embeds=embeds).logits
        got = converted(input_ids=ids, pixel_values=pixels).logits
    assert torch.allclose(got[..., : llm.config.vocab_size], expected, atol=ATOL, rtol=0)


def test_chat_template_written(tiny: dict) -> None:
    written = (tiny["out"] / "chat_template.jinja").read_text()
    assert written == (CHAT_TEMPLATES_DIR / "llava_llama_2.jinja").read_text()


def test_tokenizer_has_image_token_and_keeps_tags(tiny: dict) -> None:
    source = AutoTokenizer.from_pretrained(str(tiny["src"]))
    tok = AutoTokenizer.from_pretrained(str(tiny["out"]))
    assert (
        tok.convert_tokens_to_ids("<image>")
        == tiny["converted"].config.image_token_index
        == len(source)
    )
    for tag in TAGS:
        assert tok.convert_tokens_to_ids(tag) == source.convert_tokens_to_ids(tag)
    text = "a red car <gen_image> a dog </gen_image>"
    assert tok(text).input_ids == source(text).input_ids
    assert tok("<image> a cat").input_ids[0] == len(source)


def test_vision_tower_weights_equal_given_tower(tiny: dict) -> None:
    given = tiny["tower"].state_dict()
    got = tiny["converted"].model.vision_tower.state_dict()
    assert got.keys() == given.keys()
    for key, tensor in given.items():
        assert torch.equal(got[key], tensor), key
    cfg = tiny["converted"].config
    assert (cfg.vision_feature_layer, cfg.vision_feature_select_strategy) == (-2, "default")
    assert cfg.projector_hidden_act == "gelu"


def test_weight_layout_and_processor(tiny: dict) -> None:
    from safetensors import safe_open

    with safe_open(str(tiny["out"] / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert "lm_head.weight" in keys
    assert "model.language_model.embed_tokens.weight" in keys
    assert "model.multi_modal_projector.linear_2.bias" in keys
    assert "model.vision_tower.vision_model.post_layernorm.weight" in keys
    assert not any("mm_projector" in k or "vision_tower.vision_tower" in k for k in keys)

    from PIL import Image

    processor = AutoProcessor.from_pretrained(str(tiny["out"]))
    batch = processor(
        text="<image>\na cat", images=Image.new("RGB", (20, 10), "red"), return_tensors="pt"
    )
    assert batch["pixel_values"].shape == (1, 3, 16, 16)
    assert int((batch["input_ids"] == tiny["converted"].config.image_token_index).sum()) == 16
    assert processor.image_processor.do_pad  # image_aspect_ratio "pad", as LLaVA


def test_refuses_unknown_tower_and_nonempty_out(tiny: dict, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="nothing is downloaded"):
        convert_checkpoint(tiny["src"], tmp_path / "a", template="llava_v1")
    with pytest.raises(ConversionError, match="not empty"):
        convert_checkpoint(tiny["src"], tiny["out"], template="llava_v1")
