"""Throughput, latency and peak memory of SD 1.5 and SDXL at full size, without weights.

The UNets, VAEs and text encoders are built from their public architectures
(benchmarks/configs/*.json) with random weights: nothing is downloaded, and the time of a
forward does not depend on the weights. Tokenizers are the tiny models' (a token id is a
token id to the timing).

For each case, in one run:

- `stock`: diffusers' own `StableDiffusionPipeline.__call__` (or the XL one) at batch 1,
  eager, diffusers' default settings, decoding to PIL: the baseline.
- `ours`: the worker's path: the loader's optimisations (services/worker/optimisations.py,
  the worker's defaults for the device unless `--settings` says otherwise), the worker's
  prompt encoding, denoising, and decode step (services/worker/pipelines/common.py), at
  batch 1, 2, 4, 8, 16 (`num_images_per_prompt`: the worker's within-job batch).
- `setting:<name>` (`--sweep`): each GPU path setting on its own at batch 1, so each one's
  effect is measured by itself against the `ours` defaults.
- `compiled` (`--compile-batches`): torch.compile of the UNet; its warm-up (compile) time
  is reported separately.

Every row has images/s, the latency of one batch, peak memory (CUDA: max allocated;
CPU: none), and the MFU: FLOPs counted by torch's FlopCounterMode over one whole stock
call (text encoder, every UNet evaluation with CFG, VAE decode) per image, times images/s,
over the device's paper peak (dense fp16/bf16) and over a large matmul measured in the
same run.

    make bench-gpu                         # CUDA: SD 1.5 512² 25 steps, SDXL 1024² 20 steps
    python -m benchmarks.bench_gpu --cpu   # CPU: tiny, tiny SDXL, full SD 1.5 at 64², 2 steps
    python -m benchmarks.bench_gpu --cases sd15 --batches 1,8 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.utils import logging as diffusers_logging
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
from transformers.utils import logging as transformers_logging

from services.worker.optimisations import Optimisations, optimise_pipelines
from services.worker.pipelines.common import (
    ResolvedParams,
    decode_latents,
    encode_prompts,
    image_generator,
    synchronize,
)
from services.worker.testing.tiny_models import (
    SDXL_TOKENIZER_2_PAD_TOKEN,
    build_pipeline,
    build_sdxl_pipeline,
    build_tokenizer,
)

CONFIGS = Path(__file__).parent / "configs"
PROMPT = "a photograph of an astronaut riding a horse on the moon, detailed, 8k"
# Dense fp16/bf16 tensor-core peak on paper, TFLOP/s, by a substring of the device name.
PAPER_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}


@dataclass(frozen=True)
class Case:
    """One model at one size and step count, and the batches measured."""

    model: str  # sd15 | sdxl (full size, configs/) | tiny | tiny-sdxl
    width: int
    height: int
    steps: int
    guidance_scale: float
    batches: tuple[int, ...]
    # Whether the setting sweep and the torch.compile rows run for this case (they take
    # most of a GPU run's time: SDXL's would not fit the time plan, benchmarks/README.md).
    extras: bool = False

    @property
    def label(self) -> str:
        return f"{self.model} {self.width}x{self.height} {self.steps} steps"


GPU_CASES = (
    Case("sd15", 512, 512, 25, 7.5, (1, 2, 4, 8, 16), extras=True),
    Case("sdxl", 1024, 1024, 20, 5.0, (1, 2, 4, 8, 16)),
)
# Small enough for CI on a shared 2-core machine (about 30 s, most of it building and
# running the full-size SD 1.5 at 64², whose every layer runs as at 512²).
CPU_CASES = (
    Case("tiny", 64, 64, 4, 7.5, (1, 2)),
    Case("tiny-sdxl", 64, 64, 2, 5.0, (1,)),
    Case("sd15", 64, 64, 2, 7.5, (1,)),
)


@dataclass
class Row:
    """One measured configuration."""

    path: str  # stock | ours | setting:<name> | compiled
    settings: str
    batch: int
    latency_s: float
    images_per_s: float
    peak_memory_gib: float | None
    tflop_per_image: float
    mfu_paper: float | None
    mfu_matmul: float
    speedup_vs_stock: float = 0.0
    warmup_s: float = 0.0


@dataclass
class Report:
    device: str
    dtype: str
    torch: str
    diffusers: str
    matmul_tflops: float
    paper_peak_tflops: float | None
    cases: dict[str, list[Row]] = field(default_factory=dict)
    # model -> component -> GiB of its parameters in the run's dtype
    weights_gib: dict[str, dict[str, float]] = field(default_factory=dict)
    # "<case>: <path> batch <n>" for each configuration that ran out of GPU memory
    out_of_memory: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Tokenizers:
    """The tiny models' CLIP tokenizers (SDXL's second pads differently), built once."""

    first: Any
    second: Any

    @classmethod
    def build(cls, directory: Path) -> Tokenizers:
        return cls(
            build_tokenizer(directory / "tokenizer"),
            build_tokenizer(directory / "tokenizer_2", pad_token=SDXL_TOKENIZER_2_PAD_TOKEN),
        )


def build(model: str, device: torch.device, dtype: torch.dtype, tokenizers: Tokenizers) -> Any:
    """A stock diffusers pipeline of `model` with random weights, on `device` in `dtype`."""
    torch.manual_seed(0)
    if model == "tiny":
        pipeline = build_pipeline(tokenizers.first)
    elif model == "tiny-sdxl":
        pipeline = build_sdxl_pipeline(tokenizers.first, tokenizers.second)
    else:
        pipeline = build_full_size(model, device, tokenizers)
    pipeline = pipeline.to(device=device, dtype=dtype)  # type: ignore[attr-defined]
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def build_full_size(model: str, device: torch.device, tokenizers: Tokenizers) -> Any:
    """SD 1.5 or SDXL from configs/<model>.json, its modules created on `device` (random
    initialisation on a GPU takes a second, not a minute on the CPU)."""
    config = json.loads((CONFIGS / f"{model}.json").read_text())
    tokenizer, tokenizer_2 = tokenizers.first, tokenizers.second
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config["unet"])
        vae = AutoencoderKL.from_config(config["vae"])
        text_encoder = CLIPTextModel(_text_config(config["text_encoder"], tokenizer))
        if model == "sd15":
            return StableDiffusionPipeline(
                unet=unet,
                vae=vae,
                text_encoder=text_encoder,
                tokenizer=tokenizer,
                scheduler=PNDMScheduler.from_config(config["scheduler"]),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        return StableDiffusionXLPipeline(
            unet=unet,
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=CLIPTextModelWithProjection(
                _text_config(config["text_encoder_2"], tokenizer_2)
            ),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            scheduler=EulerDiscreteScheduler.from_config(config["scheduler"]),
        )


def _text_config(fields: dict[str, Any], tokenizer: Any) -> CLIPTextConfig:
    """A CLIP text config with the tokenizer's special token ids (its vocabulary is smaller
    than the embedding table: every id it makes is a valid row)."""
    return CLIPTextConfig(
        **fields,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


# --------------------------------------------------------------------------- runs


def run_stock(pipeline: Any, case: Case) -> Any:
    """diffusers' own call, one image, decoded to PIL."""
    return pipeline(
        prompt=PROMPT,
        width=case.width,
        height=case.height,
        num_inference_steps=case.steps,
        guidance_scale=case.guidance_scale,
        generator=image_generator(0),
        output_type="pil",
    ).images


def run_ours(pipeline: Any, case: Case, batch: int) -> Any:
    """The worker's steps: encode once (untruncated), denoise `batch` images together,
    decode (with the SDXL upcast where the VAE needs it)."""
    params = ResolvedParams(
        prompt=PROMPT,
        negative_prompt="",
        width=case.width,
        height=case.height,
        steps=case.steps,
        guidance_scale=case.guidance_scale,
        seed=0,
        num_images=batch,
    )
    encoded, _ = encode_prompts(pipeline, params)
    generator = image_generator(params.seed)
    latents = pipeline(
        **encoded.pipeline_kwargs(),
        width=case.width,
        height=case.height,
        num_inference_steps=case.steps,
        guidance_scale=case.guidance_scale,
        num_images_per_prompt=batch,
        generator=generator,
        output_type="latent",
    ).images
    return decode_latents(pipeline, latents, generator)


@contextmanager
def peak_memory(device: torch.device) -> Iterator[Callable[[], float | None]]:
    """Yields a reader of the peak memory allocated meanwhile (GiB; None off CUDA)."""
    if device.type != "cuda":
        yield lambda: None
        return
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield lambda: torch.cuda.max_memory_allocated(device) / 2**30


# (median seconds of a run, peak GiB or None, seconds of the first warm-up run)
Measurement = tuple[float, float | None, float]


def timed(device: torch.device, run: Callable[[], Any], repeats: int, warmups: int) -> Measurement:
    """(median seconds of a run, peak GiB, seconds of the first warm-up) after `warmups`."""
    first = 0.0
    with torch.no_grad(), peak_memory(device) as peak:
        for i in range(warmups):
            started = time.perf_counter()
            run()
            synchronize(device)
            if i == 0:
                first = time.perf_counter() - started
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            synchronize(device)
            times.append(time.perf_counter() - started)
        return statistics.median(times), peak(), first


def weight_bytes(pipeline: Any) -> dict[str, int]:
    """Bytes of each network's parameters (UNet, VAE, text encoders) as loaded."""
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    modules = {name: getattr(pipeline, name, None) for name in names}
    return {
        name: sum(p.numel() * p.element_size() for p in module.parameters())
        for name, module in modules.items()
        if module is not None
    }


def count_flops(pipeline: Any, case: Case) -> float:
    """TFLOPs of one stock call for one image (everything it runs), counted by torch."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run_stock(pipeline, case)
    return counter.get_total_flops() / 1e12


def matmul_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """TFLOP/s of a large square matmul on `device`: what the hardware reaches here."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds, _, _ = timed(device, lambda: a @ b, repeats=10, warmups=2)
    return 2 * n**3 / seconds / 1e12


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Plan:
    device: torch.device
    dtype: torch.dtype
    cases: tuple[Case, ...]
    defaults: Optimisations
    sweep: dict[str, tuple[Optimisations, torch.dtype]]
    compile_batches: tuple[int, ...]
    repeats: int
    warmups: int
    # Seconds into the run after which the optional rows (sweep, compile) are skipped.
    deadline_s: float
    started: float = field(default_factory=time.perf_counter)

    def extras_for(self, case: Case) -> bool:
        """Whether `case`'s sweep and compile rows still fit the time plan."""
        if not case.extras:
            return False
        if time.perf_counter() - self.started > self.deadline_s:
            print(f"past {self.deadline_s:.0f} s: skipping the sweep and compile rows")
            return False
        return True


def measure_case(plan: Plan, case: Case, report: Report, tokenizers: Tokenizers) -> list[Row]:
    """Every row of one case, each row printed as soon as it is measured."""
    device = plan.device
    rows: list[Row] = []
    started = time.perf_counter()
    pipeline = build(case.model, device, plan.dtype, tokenizers)
    weights = weight_bytes(pipeline)
    print(
        f"\n{case.label}: built in {time.perf_counter() - started:.1f} s; weights "
        + ", ".join(f"{name} {size / 2**30:.2f} GiB" for name, size in weights.items())
    )
    report.weights_gib[case.model] = {
        name: round(size / 2**30, 3) for name, size in weights.items()
    }
    tflop = count_flops(pipeline, case)

    def attempt(path: str, batch: int, run: Callable[[], Any], warmups: int) -> Measurement | None:
        """`timed`, or None (noted in the report) when the batch does not fit in memory."""
        try:
            return timed(device, run, plan.repeats, warmups)
        except torch.OutOfMemoryError:
            _free(device)
            print(f"{path:<28} {batch:>5} out of memory", flush=True)
            report.out_of_memory.append(f"{case.label}: {path} batch {batch}")
            return None

    def row(path: str, settings: str, batch: int, measured: Measurement) -> Row:
        latency, peak, first = measured
        throughput = batch / latency
        achieved = tflop * throughput
        result = Row(
            path=path,
            settings=settings,
            batch=batch,
            latency_s=round(latency, 4),
            images_per_s=round(throughput, 3),
            peak_memory_gib=None if peak is None else round(peak, 2),
            tflop_per_image=round(tflop, 3),
            mfu_paper=(
                None
                if report.paper_peak_tflops is None
                else round(achieved / report.paper_peak_tflops, 4)
            ),
            mfu_matmul=round(achieved / report.matmul_tflops, 4),
            speedup_vs_stock=round(throughput / rows[0].images_per_s, 2) if rows else 1.0,
            warmup_s=round(first, 1),
        )
        rows.append(result)
        print_row(result)
        return result

    print_header()
    stock = timed(device, partial(run_stock, pipeline, case), plan.repeats, plan.warmups)
    row("stock", "diffusers defaults", 1, stock)
    optimise_pipelines([pipeline], plan.defaults)
    for batch in case.batches:
        run = partial(run_ours, pipeline, case, batch)
        measured = attempt("ours", batch, run, plan.warmups)
        if measured is None:
            break  # larger batches need more
        row("ours", plan.defaults.describe(), batch, measured)
    del pipeline
    _free(device)

    for name, (options, dtype) in plan.sweep.items():
        if not plan.extras_for(case):
            break
        variant = build(case.model, device, dtype, tokenizers)
        optimise_pipelines([variant], options)
        label = f"{options.describe()} {str(dtype).removeprefix('torch.')}"
        run = partial(run_ours, variant, case, 1)
        if (measured := attempt(f"setting:{name}", 1, run, plan.warmups)) is not None:
            row(f"setting:{name}", label, 1, measured)
        del variant
        _free(device)

    if plan.compile_batches and plan.extras_for(case):
        compiled = build(case.model, device, plan.dtype, tokenizers)
        options = dataclasses.replace(plan.defaults, compile_unet=True)
        optimise_pipelines([compiled], options)
        for batch in plan.compile_batches:
            # The first warm-up compiles (dynamic=False: once per batch size).
            warmups = max(plan.warmups, 2)
            run = partial(run_ours, compiled, case, batch)
            if (measured := attempt("compiled", batch, run, warmups)) is not None:
                row("compiled", options.describe(), batch, measured)
        del compiled
        _free(device)
    return rows


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def print_header() -> None:
    print(
        f"{'path':<28} {'batch':>5} {'latency s':>10} {'img/s':>8} {'x stock':>8} "
        f"{'peak GiB':>9} {'TFLOP/img':>10} {'MFU paper':>10} {'MFU mm':>7} {'warm-up s':>9}"
        "  settings"
    )


def print_row(row: Row) -> None:
    peak = "-" if row.peak_memory_gib is None else f"{row.peak_memory_gib:.2f}"
    mfu = "-" if row.mfu_paper is None else f"{row.mfu_paper:.1%}"
    print(
        f"{row.path:<28} {row.batch:>5} {row.latency_s:>10.3f} {row.images_per_s:>8.2f} "
        f"{row.speedup_vs_stock:>8.2f} {peak:>9} {row.tflop_per_image:>10.3f} {mfu:>10} "
        f"{row.mfu_matmul:>7.1%} {row.warmup_s:>9.1f}  {row.settings}",
        flush=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="CPU mode (automatic without CUDA)")
    parser.add_argument("--cases", default="", help="comma-separated models: sd15,sdxl,tiny,...")
    parser.add_argument("--batches", default="", help="comma-separated batch sizes of `ours`")
    parser.add_argument("--dtype", default="", help="float16 (CUDA default), bfloat16, float32")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per row (median)")
    parser.add_argument(
        "--sweep", default="", help="settings measured on their own: all, none, or names"
    )
    parser.add_argument(
        "--compile-batches", default="", help="batches of the torch.compile rows; none: skip"
    )
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=0,
        help="skip the sweep and compile rows after this many seconds (CUDA default 330)",
    )
    parser.add_argument("--extras-for", default="", help="models with sweep/compile rows")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """The run's device, cases and rows from the arguments and the device's defaults."""
    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if cuda else "cpu")
    dtype = getattr(torch, args.dtype or ("float16" if cuda else "float32"))
    cases: tuple[Case, ...] = GPU_CASES if cuda else CPU_CASES
    if args.cases:
        wanted = args.cases.split(",")
        known = {case.model: case for case in (*GPU_CASES, *CPU_CASES)} | {
            case.model: case for case in cases
        }
        cases = tuple(known[name] for name in wanted)
    if args.extras_for:
        extras = set(args.extras_for.split(","))
        cases = tuple(dataclasses.replace(case, extras=case.model in extras) for case in cases)
    if args.batches:
        batches = tuple(int(b) for b in args.batches.split(","))
        cases = tuple(dataclasses.replace(case, batches=batches) for case in cases)
    # The worker's defaults on this device (optimisations.py: channels_last on CUDA).
    defaults = Optimisations(channels_last=cuda)
    sweep_all = {
        "eager-attention": (dataclasses.replace(defaults, attention="eager"), dtype),
        "no-channels-last": (dataclasses.replace(defaults, channels_last=False), dtype),
        "channels-last": (dataclasses.replace(defaults, channels_last=True), dtype),
        "fused-qkv": (dataclasses.replace(defaults, fuse_qkv=True), dtype),
        # Changes the images (docs/worker.md): measured for its speed only.
        "feature-reuse-3": (dataclasses.replace(defaults, feature_reuse_interval=3), dtype),
        "bfloat16": (defaults, torch.bfloat16),
        "bfloat16-vae-float32": (
            dataclasses.replace(defaults, vae_dtype=torch.float32),
            torch.bfloat16,
        ),
    }
    sweep_all = {
        name: value
        for name, value in sweep_all.items()
        if value != (defaults, dtype)  # a variant equal to the defaults is `ours` itself
    }
    default_sweep = "all" if cuda else "none"
    chosen = args.sweep or default_sweep
    sweep = (
        sweep_all
        if chosen == "all"
        else {}
        if chosen == "none"
        else {name: sweep_all[name] for name in chosen.split(",")}
    )
    compile_arg = args.compile_batches or ("1,8" if cuda else "none")
    compile_batches = () if compile_arg == "none" else tuple(int(b) for b in compile_arg.split(","))
    return Plan(
        device=device,
        dtype=dtype,
        cases=cases,
        defaults=defaults,
        sweep=sweep,
        compile_batches=compile_batches,
        repeats=args.repeats or (3 if cuda else 1),
        warmups=1,
        deadline_s=args.deadline_s or (330 if cuda else math.inf),
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    plan = make_plan(args)
    if plan.device.type == "cpu":
        # One thread, as bench_serving: on a small shared CPU two threads fighting other
        # processes are many times slower than one.
        torch.set_num_threads(1)
    name = (
        torch.cuda.get_device_name(plan.device)
        if plan.device.type == "cuda"
        else platform.processor() or "cpu"
    )
    paper = next((peak for key, peak in PAPER_PEAK_TFLOPS.items() if key in name), None)
    report = Report(
        device=name,
        dtype=str(plan.dtype).removeprefix("torch."),
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        matmul_tflops=round(matmul_tflops(plan.device, plan.dtype), 2),
        paper_peak_tflops=paper,
    )
    print(
        f"{report.device} ({plan.device}), {report.dtype}, torch {report.torch}, diffusers "
        f"{report.diffusers}: matmul {report.matmul_tflops} TFLOP/s, paper peak {paper}"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        tokenizers = Tokenizers.build(Path(directory))
    for case in plan.cases:
        report.cases[case.label] = measure_case(plan, case, report, tokenizers)
        if args.json is not None:  # after every case: a run stopped later keeps these
            args.json.write_text(json.dumps(dataclasses.asdict(report), indent=2))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
