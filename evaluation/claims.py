"""The papers' claims measured in the toy world, in this process (the ablations need
models no worker serves): `python -m evaluation.claims --out eval-report/claims`.

- long prompts: the UNet fine-tuned on detailed captions encoded in 75-token chunks vs one
  fine-tuned with 77-token truncation (LLMGA's stage 2 and the stock recipe, from the same
  base): adherence on the attributes stated before and after token 75; and short vs
  detailed captions on each, and on the base trained on short captions only;
- restoration (Table 4's rows): seam error with none, the colour fallback, DiffRIR trained
  without the colour degradation, DiffRIR trained with it;
- editing: prompt-to-prompt vs DiffEdit on the toy profile (attribute right, L1/L2 outside).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from evaluation import protocols
from evaluation.backends import LocalBackend, RestorerBackend, WorkerBackend
from evaluation.report import write_report
from toyworld.judge import Judge


def long_prompts(
    judge: Judge, count: int, chunked: Path, truncated: Path, base: Path
) -> dict[str, dict[str, float]]:
    """Chunked vs truncated training on detailed captions; short vs detailed captions. The
    truncated model runs truncated (stock SD) and chunked (LLMGA's released code, which
    trains truncated and infers chunked)."""
    results = {}
    runs = (
        ("chunked training", chunked, False),
        ("truncated training", truncated, True),
        ("truncated training, chunked inference", truncated, False),
        ("base (short captions only)", base, False),
    )
    for name, path, truncate in runs:
        if not path.exists():
            continue
        backend = LocalBackend(path, truncate=truncate)
        results[f"detailed captions, {name}"] = protocols.text_to_image(
            backend, judge, count, detailed=True, max_objects=3
        )
        if not (name.startswith("truncated") and not truncate):  # short ones fit in one chunk
            results[f"short captions, {name}"] = protocols.text_to_image(backend, judge, count)
    return results


def restoration(count: int, weights: dict[str, Path]) -> dict[str, float]:
    """Seam error per restorer: none, colour, and each DiffRIR checkpoint given."""
    from services.worker.diffrir.restorer import DiffRIRRestorer
    from services.worker.diffrir.tiling import Tiling

    row = protocols.restoration(RestorerBackend(None), count)
    for name, path in weights.items():
        if path.exists():
            restorer = DiffRIRRestorer.load(path, torch.device("cpu"), Tiling())
            numbers = protocols.restoration(RestorerBackend(restorer), count)
            row[f"restore_{name}_seam_l1"] = numbers["restore_diffrir_seam_l1"]
    return row


def main(argv: list[str] | None = None) -> int:
    """Command line (see --help)."""
    parser = argparse.ArgumentParser(prog="python -m evaluation.claims", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("eval-report/claims"))
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--parts", default="long,restore,edit")
    parser.add_argument(
        "--runs", type=Path, default=Path(".toy-train"), help="make toy-train's run folders"
    )
    parser.add_argument("--models-dir", type=Path, help="the worker's models (RUNS/models)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    judge = Judge.load()
    parts = args.parts.split(",")
    sections: dict[str, dict[str, float]] = {}
    if "long" in parts:
        runs = args.runs
        sections |= long_prompts(
            judge,
            args.count,
            chunked=runs / "t2i" / "pipeline",
            truncated=runs / "t2i-truncated" / "pipeline",
            base=runs / "t2i-base" / "pipeline",
        )
    if "restore" in parts:
        sections["restoration (seam L1)"] = restoration(
            args.count,
            {
                "diffrir_without_colour": args.runs / "diffrir-nocolour.pth",
                "diffrir_with_colour": args.runs / "diffrir-colour.pth",
            },
        )
    if "edit" in parts:
        backend = WorkerBackend(args.models_dir or args.runs / "models")
        sections["editing"] = {
            **protocols.editing(backend, judge, args.count, "p2p"),
            **protocols.editing(backend, judge, args.count, "diffedit"),
        }
    notes = {"cases per protocol": args.count, "seconds": round(time.perf_counter() - started)}
    print(write_report(args.out, sections, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
