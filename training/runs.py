"""What every training command shares: a resumable run folder, a loss log and a progress
bar around the step loop.

A run folder holds `state/` (accelerate's `save_state`: models, optimizers, RNG states),
`progress.json` (the last finished step) and `losses.jsonl` (one line per step). Running
the same command again resumes after the last saved step; the batches are drawn from a
stream seeded by the step number, so a resumed run sees the batches it would have seen.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm import tqdm

logger = logging.getLogger(__name__)


class Run:
    """One training run's folder: resume point, loss log, checkpoints."""

    def __init__(self, folder: Path, accelerator: Accelerator) -> None:
        self.folder = folder
        self.accelerator = accelerator
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def _progress(self) -> Path:
        return self.folder / "progress.json"

    def resume(self) -> int:
        """Load the saved state if there is one; the number of steps already done."""
        if not self._progress.exists():
            return 0
        self.accelerator.load_state(str(self.folder / "state"))
        step = int(json.loads(self._progress.read_text())["step"])
        logger.info("resuming %s after step %d", self.folder, step)
        return step

    def save(self, step: int) -> None:
        """Save the state after `step` (written before the step count that points at it)."""
        self.accelerator.save_state(str(self.folder / "state"))
        self._progress.write_text(json.dumps({"step": step}) + "\n")

    def loop(
        self,
        steps: int,
        step_fn: Callable[[int], dict[str, float]],
        checkpoint_every: int,
        description: str,
        max_minutes: float = 0.0,
    ) -> None:
        """Run `step_fn(step)` for the steps not yet done, logging its losses, saving every
        `checkpoint_every` steps and at the end. With `max_minutes`, stop (saved) once that
        much time has passed: a time-boxed run, resumed by running it again."""
        start = self.resume()
        log = (self.folder / "losses.jsonl").open("a")
        progress = tqdm(
            range(start + 1, steps + 1),
            initial=start,
            total=steps,
            desc=description,
            mininterval=10,
            disable=not self.accelerator.is_main_process,
        )
        started = time.perf_counter()
        done = start
        try:
            for step in progress:
                losses = step_fn(step)
                done = step
                log.write(json.dumps({"step": step, **losses}) + "\n")
                progress.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
                out_of_time = max_minutes and time.perf_counter() - started > 60 * max_minutes
                if step % checkpoint_every == 0 or step == steps or out_of_time:
                    log.flush()
                    self.save(step)
                if out_of_time:
                    logger.info("%s: stopped after step %d (time budget)", description, step)
                    break
        finally:
            log.close()
        logger.info(
            "%s: steps %d-%d in %.0fs", description, start + 1, done, time.perf_counter() - started
        )


def parse_fine_tune_args(
    argv: list[str] | None, prog: str, description: str | None, output: str, steps: int, lr: float
) -> argparse.Namespace:
    """The command line of a model trained from the base text-to-image pipeline (inpainting,
    ControlNet): --t2i, --output, --steps, --batch-size, --lr, --threads, --max-minutes.
    Sets up logging and torch's thread count."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--t2i", type=Path, default=Path(".toy-train/t2i-base/pipeline"))
    parser.add_argument("--output", type=Path, default=Path(output))
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=0.0, help="stop (resumable) after")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    return args
