"""Pretrain the toy text encoder to read scenes out of captions: the toy world's CLIP.

SD's UNet learnt to draw from a text encoder that already knew what words mean (CLIP,
pretrained and then frozen). A toy text encoder trained from nothing through the UNet alone
gets no useful gradient until the UNet's cross-attention reads it, and the UNet ignores
its text until the text means something: trained that way for 1,900 steps the toy model's
adherence stayed at chance. So, as CLIP for SD, the toy text encoder is pretrained first:
a small reader with one learned query per grid cell and one for the background attends
over the encoder's hidden states (every position, padding included, as the UNet's
cross-attention does) and must say the scene, in the judge's output layout (shape, colour
and size per cell, background colour and texture). What a caption does not state (a short
caption's sizes and texture) is not asked. Captions are chunked as the worker chunks them
(training/text_conditioning.py), so a late attribute is read from the second chunk.

    python -m training.text_encoder --output .toy-train/text-encoder

writes `<output>/tokenizer` and `<output>/text_encoder` (`save_pretrained`), which
`python -m training.text_to_image --toy --text-encoder <output>` loads and freezes.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from transformers import CLIPTextModel, CLIPTokenizer

from toyworld.captions import detailed_caption, short_caption
from toyworld.judge import (
    CELLS,
    OUTPUTS,
    PER_CELL,
    decode,
    held_out_scenes,
    loss_of,
    scene_accuracy,
    scene_targets,
)
from toyworld.models import TEXT_HIDDEN_SIZE, build_text_encoder
from toyworld.tokenizer import build_world_tokenizer
from training.runs import Run
from training.text_conditioning import encode_captions
from training.toy_data import toy_captions

logger = logging.getLogger(__name__)


class CaptionReader(nn.Module):
    """Ten learned queries (nine cells, then the background) attend over the text features;
    each cell's answer is its shape, colour and size logits, the background's its colour
    and texture: the judge's flat logits layout (toyworld/judge.py)."""

    def __init__(self, hidden: int = TEXT_HIDDEN_SIZE) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(CELLS + 1, hidden) * 0.02)
        self.attention = nn.MultiheadAttention(hidden, num_heads=4, batch_first=True)
        self.cell_head = nn.Linear(hidden, PER_CELL)
        self.background_head = nn.Linear(hidden, OUTPUTS - CELLS * PER_CELL)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """(B, L, hidden) text features -> (B, OUTPUTS) logits."""
        queries = self.queries.expand(len(text), -1, -1)
        read, _ = self.attention(queries, text, text, need_weights=False)
        cells = self.cell_head(read[:, :CELLS]).flatten(1)
        return torch.cat([self.background_head(read[:, CELLS]), cells], dim=1)


def pretrain_text_encoder(
    output: Path,
    steps: int = 5000,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    checkpoint_every: int = 500,
    held_out: int = 500,
) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """Train (or resume) and write `<output>/tokenizer`, `<output>/text_encoder` and
    `<output>/report.json` (held-out reading accuracy, short and detailed captions)."""
    torch.manual_seed(seed)
    accelerator = Accelerator()
    tokenizer = build_world_tokenizer(output / "tokenizer")
    reader = CaptionReader()
    text_encoder = build_text_encoder(tokenizer)
    optimizer = torch.optim.AdamW(
        [*text_encoder.parameters(), *reader.parameters()], lr=lr, weight_decay=1e-2
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    text_encoder, reader, optimizer, schedule = accelerator.prepare(
        text_encoder, reader, optimizer, schedule
    )

    def step_fn(step: int) -> dict[str, float]:
        # Half the batches short captions, half detailed (chunked), as the UNet will see.
        batch = toy_captions(step, batch_size, seed)
        text = encode_captions(tokenizer, accelerator.unwrap_model(text_encoder), batch.captions)
        targets = scene_targets(batch.scenes, batch.sizes_stated, texture_known=batch.detailed)
        loss = loss_of(reader(text), {k: v.to(accelerator.device) for k, v in targets.items()})
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        schedule.step()
        return {"loss": loss.item()}

    Run(output, accelerator).loop(steps, step_fn, checkpoint_every, "text encoder")
    encoder = accelerator.unwrap_model(text_encoder).eval()
    report = {
        "steps": steps,
        "short_with_sizes": reading_accuracy(tokenizer, encoder, reader, False, held_out),
        "detailed": reading_accuracy(tokenizer, encoder, reader, True, held_out),
    }
    if accelerator.is_main_process:
        encoder.save_pretrained(output / "text_encoder", safe_serialization=True)
        (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    logger.info("held-out reading accuracy: %s", json.dumps(report))
    return tokenizer, encoder


@torch.no_grad()
def reading_accuracy(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    reader: nn.Module,
    detailed: bool,
    count: int = 500,
) -> dict[str, float]:
    """How well the reader says the held-out scenes from their captions (short captions
    with sizes, or detailed ones); texture is scored only for detailed captions."""
    scenes = held_out_scenes(count)
    rng = random.Random(1)
    captions = [
        detailed_caption(scene, rng).text if detailed else short_caption(scene, with_size=True)
        for scene in scenes
    ]
    predicted = []
    for start in range(0, count, 100):
        text = encode_captions(tokenizer, text_encoder, captions[start : start + 100])
        predicted += decode(reader(text))
    accuracy = scene_accuracy(scenes, predicted)
    if not detailed:
        accuracy.pop("striped")
        accuracy.pop("scene")
    return accuracy


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m training.text_encoder", description=__doc__)
    parser.add_argument("--output", type=Path, required=True, help="run folder (resumed if there)")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pretrain_text_encoder(args.output, args.steps, args.batch_size, args.lr, args.seed)


if __name__ == "__main__":
    main()
