"""`python -m evaluation` (`make eval`): run the protocols against a running backend's
public API and write the report.

    python -m evaluation --base-url http://127.0.0.1:8000 --out eval-report
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from evaluation import protocols
from evaluation.backends import Backend, HttpBackend
from evaluation.metrics import real_metric_status
from evaluation.report import write_report
from toyworld.judge import WEIGHTS, Judge

SECTIONS = ("t2i", "inpaint", "edit", "restore")


def run(
    backend: Backend, judge: Judge, count: int, sections: list[str]
) -> dict[str, dict[str, float]]:
    """Each asked section's numbers; a section the backend fails is reported empty."""
    results: dict[str, dict[str, float]] = {}
    if "t2i" in sections:
        results["text-to-image (short captions)"] = protocols.text_to_image(backend, judge, count)
        results["text-to-image (detailed captions)"] = protocols.text_to_image(
            backend, judge, count, detailed=True, max_objects=3
        )
    if "inpaint" in sections:
        results["inpainting and outpainting"] = protocols.inpainting(backend, judge, count)
    if "edit" in sections:
        results["editing"] = {
            **protocols.editing(backend, judge, count, "p2p"),
            **protocols.editing(backend, judge, count, "diffedit"),
        }
    if "restore" in sections:
        results["restoration"] = protocols.restoration(backend, count)
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line (see --help)."""
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--out", type=Path, default=Path("eval-report"))
    parser.add_argument("--count", type=int, default=100, help="cases per protocol")
    parser.add_argument("--judge", type=Path, default=WEIGHTS)
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated of {SECTIONS}"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    backend = HttpBackend(args.base_url, args.api_key)
    sections = run(backend, Judge.load(args.judge), args.count, args.sections.split(","))
    notes: dict[str, object] = {
        "backend": args.base_url,
        "cases per protocol": args.count,
        "seconds": round(time.perf_counter() - started, 1),
        **{f"metric {k}": v for k, v in real_metric_status().items()},
    }
    print(write_report(args.out, sections, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
