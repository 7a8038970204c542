"""Beyond CLIP's Table 1 ablation, reproduced in the toy world with proxy metrics
(docs/beyond-clip.md "Reproduction").

The world: the toy world's one-object scenes and their captions
(services/worker/beyond_clip/shapes.py: "a small red circle in the center on a blue
background"), 80% of the captions for training the LLM side, 20% held out. The SD is the
toy world's trained SD 1.5 (toyworld/weights/toy-sd15, docs/toy-world.md): its UNet draws
what its CLIP-architecture text encoder says, so the diffusion loss says something about
the conditioning. The LLM is the tiny Llama (random weights). With the same seeds and
steps:

- CLIP conditioning: SD's own text encoder (the reference row);
- full method: stage 1 (mapping, L_cap), stage 2 (adapters, L_cap + 0.1 L_dif);
- without L_dif: stage 2 trains the adapters with L_cap only;
- without adapter: stage 2 trains the mapping (no adapters) with L_cap + 0.1 L_dif;
- without adapter and L_dif: stage 2 trains the mapping with L_cap only.

Measured on the held-out captions: the mapped features' MSE and cosine similarity to CLIP's
(how well the LLM stands in for CLIP), and the held-out diffusion loss of the UNet
conditioned on them (the same noise and timesteps for every row: lower means the
conditioning tells the UNet more about the image), and the share of CLIP's drop in that
loss from the empty prompt the row gets ("text benefit"). These stand in for the paper's
FID and CLIP similarity, which need real models and a real judge.

    python -m benchmarks.beyond_clip_table [--stage1-steps N --stage2-steps N]

`--sd` (another trained SD 1.5-architecture pipeline folder) with `--train-data` and
`--held-out-data` (JSONL of image and caption) runs the same ablation on other models and
data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate.utils import set_seed

from services.worker.beyond_clip.checkpoint import EncoderConfig, build_text_encoder, load_weights
from services.worker.beyond_clip.encoder import aligned_ids
from services.worker.beyond_clip.shapes import shape_captions, split_captions, write_dataset
from services.worker.beyond_clip.train import (
    Collate,
    Frozen,
    TrainOptions,
    caption_error,
    clip_ids,
    diffusion_loss,
    load_frozen,
    read_examples,
    train,
)
from services.worker.profiles import TINY_LLAMA_DIRNAME, TOY_SD15_DIRNAME
from services.worker.testing.tiny_models import build_tiny, toy_weights_dir

CPU = torch.device("cpu")
# Table 1 rows: name -> (stage 2 trains adapters, weight of L_dif).
ABLATIONS = {
    "full method": (True, 0.1),
    "without L_dif": (True, 0.0),
    "without adapter": (False, 0.1),
    "without adapter and L_dif": (False, 0.0),
}


@torch.no_grad()
def held_out_diffusion_loss(
    frozen: Frozen,
    data: Path,
    features: Callable[[list[str]], torch.Tensor],
    resolution: int,
    draws: int,
    min_timestep: int,
) -> float:
    """Mean diffusion loss over the held-out images, `draws` noise/timestep draws each
    (timesteps from `min_timestep` on), seeded identically for every conditioning."""
    examples = read_examples(data, stage=2)
    collate = Collate(frozen.clip_tokenizer, frozen.clip_tokenizer, resolution)
    generator = torch.Generator().manual_seed(1234)
    total = 0.0
    count = 0
    for _ in range(draws):
        for start in range(0, len(examples), 32):
            chunk = examples[start : start + 32]
            batch = collate(chunk)
            conditioning = features([example.caption for example in chunk])
            loss = diffusion_loss(frozen, batch["pixels"], conditioning, generator, min_timestep)
            total += float(loss) * len(chunk)
            count += len(chunk)
    return total / count


def main(argv: list[str] | None = None) -> int:
    """Run the ablation and print the table (and write it as JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1-steps", type=int, default=10000)
    parser.add_argument("--stage2-steps", type=int, default=500)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--draws", type=int, default=4, help="noise draws per held-out image")
    parser.add_argument(
        "--min-timestep",
        type=int,
        default=500,
        help="held-out diffusion loss over timesteps from here on: the noisier half, where "
        "the image depends most on the text",
    )
    parser.add_argument(
        "--sd",
        type=Path,
        default=toy_weights_dir() / TOY_SD15_DIRNAME,
        help="a trained SD 1.5-architecture pipeline folder (default: the toy world's)",
    )
    parser.add_argument(
        "--train-data", type=Path, help="JSONL of image and caption (default: shapes)"
    )
    parser.add_argument("--held-out-data", type=Path, help="JSONL, with --train-data")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the worker in the tests; faster than two on a shared CPU
    started = time.perf_counter()

    work = Path(tempfile.mkdtemp(prefix="beyond-clip-table-"))
    models = work / "models"
    llm = str(build_tiny(TINY_LLAMA_DIRNAME, models))
    if args.train_data and args.held_out_data:
        train_data, held_out_data = args.train_data, args.held_out_data
    else:
        train_split, held_out_split = split_captions(shape_captions(), held_out=0.2, seed=0)
        train_data = write_dataset(train_split, work / "train", args.resolution)
        held_out_data = write_dataset(held_out_split, work / "held-out", args.resolution)
    train_captions = [example.caption for example in read_examples(train_data, stage=2)]
    held_out = [example.caption for example in read_examples(held_out_data, stage=2)]
    captions = work / "captions.txt"
    captions.write_text("\n".join(train_captions) + "\n")

    sd = args.sd
    frozen = load_frozen(str(sd), with_unet=True, device=CPU)

    def clip_features(texts: list[str]) -> torch.Tensor:
        return frozen.clip(clip_ids(frozen.clip_tokenizer, texts)).last_hidden_state

    def empty_prompt(texts: list[str]) -> torch.Tensor:
        return clip_features([""] * len(texts))

    # The unconditional row bounds the scale: how much any text helps the UNet at all.
    rows: dict[str, dict[str, float]] = {}
    references = {"CLIP conditioning (SD)": clip_features, "empty prompt": empty_prompt}
    for name, features in references.items():
        with torch.no_grad():
            target, mapped = clip_features(held_out), features(held_out)
        similarity = torch.nn.functional.cosine_similarity(mapped, target, dim=-1)
        rows[name] = {
            "mse_to_clip": float(torch.nn.functional.mse_loss(mapped, target)),
            "cosine_to_clip": float(similarity.mean()),
            "diffusion_loss": held_out_diffusion_loss(
                frozen, held_out_data, features, args.resolution, args.draws, args.min_timestep
            ),
        }
    print(f"references measured ({time.perf_counter() - started:.0f}s)", flush=True)

    stage1 = TrainOptions(
        stage=1, sd=str(sd), llm=llm, output=work / "stage1", data=captions,
        steps=args.stage1_steps, batch_size=16, lr=1e-3, cpu=True, log_every=10**9,
    )  # fmt: skip
    train(stage1)
    print(f"stage 1 done ({time.perf_counter() - started:.0f}s)", flush=True)

    def evaluate(checkpoint: Path) -> dict[str, float]:
        config = EncoderConfig.read(checkpoint)
        encoder = build_text_encoder(llm, config)
        load_weights(encoder, checkpoint, config)
        encoder.eval()
        mse, cosine = caption_error(encoder, frozen.clip_tokenizer, frozen.clip, held_out)

        def llm_features(texts: list[str]) -> torch.Tensor:
            return encoder(aligned_ids(encoder.tokenizer, texts))

        loss = held_out_diffusion_loss(
            frozen, held_out_data, llm_features, args.resolution, args.draws, args.min_timestep
        )
        return {"mse_to_clip": mse, "cosine_to_clip": cosine, "diffusion_loss": loss}

    rows["after stage 1 (mapping only)"] = evaluate(stage1.output)
    for name, (adapters, dif_weight) in ABLATIONS.items():
        options = dataclasses.replace(
            stage1,
            stage=2,
            init=stage1.output,
            output=work / name.replace(" ", "-"),
            data=train_data,
            steps=args.stage2_steps,
            adapters=adapters,
            dif_weight=dif_weight,
            resolution=args.resolution,
        )
        train(options)
        rows[name] = evaluate(options.output)

    print(f"held-out captions: {len(held_out)}; trained on {len(train_captions)}")
    loss_column = f"diffusion loss, t >= {args.min_timestep}"
    print(f"| conditioning | MSE to CLIP | cosine to CLIP | {loss_column} | text benefit |")
    print("|---|---|---|---|---|")
    # Text benefit: how much of CLIP's drop in diffusion loss from the empty prompt a row
    # gets (1 = as much as CLIP, 0 = none).
    empty = rows["empty prompt"]["diffusion_loss"]
    gap = empty - rows["CLIP conditioning (SD)"]["diffusion_loss"]
    for name, row in rows.items():
        row["text_benefit"] = (empty - row["diffusion_loss"]) / gap if gap else float("nan")
        print(
            f"| {name} | {row['mse_to_clip']:.4f} | {row['cosine_to_clip']:.4f} "
            f"| {row['diffusion_loss']:.6f} | {row['text_benefit']:.2f} |"
        )
    print(f"({time.perf_counter() - started:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    set_seed(0)
    raise SystemExit(main())
