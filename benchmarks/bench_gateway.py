"""The gateway's own cost, measured in one run on this machine against baselines taken in
the same run: no worker, no model, nothing but the gateway, Redis and the load.

- submit: `POST /v1/images` (t2i, 64x64; the job is queued and stays queued: no worker
  runs) driven by wrk at `--connections` concurrent connections for `--duration` seconds
  after a `--warmup`, against
  - the gateway as the stack starts it (`python -m services.gateway`: uvicorn, one worker),
  - the gateway with 2 uvicorn worker processes (whether a pod should run several),
  - the baseline: a bare FastAPI app whose one `async def` endpoint does one
    `redis.asyncio` SET (benchmarks/bench_apps.py), served by uvicorn the same way.
  Prints requests/s, p50 and p99 of each, and each gateway row over the baseline.
- responsiveness: a scripted mllm answers every chat completion after `--mllm-delay`
  seconds with one `<gen_image>` block; `--chats` concurrent `POST /v1/chat` turns wait on
  it while `GET /v1/jobs/{id}` is read every `--read-interval` seconds, one read at a time.
  Prints the reads' p50/p99/max with the chats in flight and without (the baseline, the
  same reads before the chats start), and when the chats completed.

Auth is off and the queue-depth limit, rate limit and quota are set so that nothing is
refused. Everything runs in a fresh Redis namespace (key prefix and queue name,
tests/support/services.py), deleted at the end. Every wait is bounded, so the run ends
even when the gateway is slow. wrk is installed with apt-get when missing and running as
root; otherwise the submit part is skipped with a note on how to install it.

    make bench-gateway      # or: python -m benchmarks.bench_gateway --duration 5 --parts submit
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from benchmarks.load import percentile
from tests.support.processes import free_port, http_ok, python_module, running
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import REDIS_URL, Namespace, start_gateway

SUBMIT_BODY = {"task": "t2i", "prompt": "a lighthouse", "width": 64, "height": 64}
CHAT_BODY = {"message": "draw a lighthouse", "width": 64, "height": 64}
MLLM_REPLY = "Here it is. <gen_image>a lighthouse on a cliff at dusk</gen_image>"
TENANT = "bench"
PARTS = ("submit", "responsiveness")
READ_GOAL_MS = 50
WRK_MARKER = "WRK_RESULT "
# wrk reports through this: one JSON line its `done` hook writes (times in microseconds;
# `status` counts answers >= 400, the rest are socket errors).
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"status_errors": %d, "socket_errors": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def gateway_env(namespace: Namespace, **extra: str) -> dict[str, str]:
    """The gateway's settings for the benchmark: the namespace, auth off, and limits so
    high that no request is refused (queue depth, rate limit and quota: 0 is off)."""
    return {
        **namespace.env(),
        "LLMGA_DEFAULT_TENANT": TENANT,
        "LLMGA_AUTH_REQUIRED": "false",
        "LLMGA_MAX_QUEUED_JOBS": str(10**9),
        "LLMGA_RATE_LIMIT_REQUESTS": "0",
        "LLMGA_QUOTA_IMAGES_PER_DAY": "0",
        **extra,
    }


# -- submit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # answers >= 400 and socket errors (connect, read, write, timeout)


def ensure_wrk() -> str | None:
    """The wrk binary; installed with apt-get if missing and this runs as root (a fresh
    CI machine or container). None if it cannot be had."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    print("wrk not found: installing it with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(command, env=env, check=False, timeout=600, stdout=subprocess.DEVNULL)
    return shutil.which("wrk")


def run_wrk(
    wrk: str, url: str, script: Path, connections: int, threads: int, duration_s: int
) -> WrkResult:
    """`POST /v1/images` (the script's body) at `connections` connections for
    `duration_s` seconds."""
    argv = [
        wrk,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration_s}s",
        "--timeout=10s",
        f"--script={script}",
        f"{url}/v1/images",
    ]
    # wrk stops by itself after the duration; the timeout only guards against a hang.
    output = subprocess.run(
        argv, capture_output=True, text=True, check=True, timeout=duration_s + 60
    ).stdout
    lines = [line for line in output.splitlines() if line.startswith(WRK_MARKER)]
    if not lines:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    data = json.loads(lines[-1].removeprefix(WRK_MARKER))
    return WrkResult(
        requests_per_s=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["status_errors"] + data["socket_errors"],
    )


@contextmanager
def serving(app: str, workers: int, env: Mapping[str, str], logs: Path) -> Iterator[str]:
    """One server under test, yielding its URL: the gateway with one worker exactly as the
    stack starts it, anything else through benchmarks/bench_apps.py."""
    if app == "gateway" and workers == 1:
        with start_gateway(env, logs) as gateway:
            yield gateway.url
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = python_module("benchmarks.bench_apps", app, "--workers", str(workers))
    env = {**env, "LLMGA_GATEWAY_HOST": "127.0.0.1", "LLMGA_GATEWAY_PORT": str(port)}
    with running(f"{app}-{workers}w", argv, env, http_ok(f"{url}/healthz"), logs):
        yield url


def measure_submit(
    wrk: str, namespace: Namespace, logs: Path, args: argparse.Namespace
) -> list[tuple[str, WrkResult]]:
    """The submit rows: baseline first, then the gateway with 1 and 2 workers."""
    logs.mkdir(parents=True, exist_ok=True)
    script = logs / "post_images.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(SUBMIT_BODY), marker=WRK_MARKER))
    rows = []
    for label, app, workers in (
        ("bare FastAPI + 1 SET", "bare", 1),
        ("gateway, 1 worker", "gateway", 1),
        ("gateway, 2 workers", "gateway", 2),
    ):
        with serving(app, workers, gateway_env(namespace), logs) as url:
            load = (wrk, url, script, args.connections, args.wrk_threads)
            run_wrk(*load, duration_s=args.warmup)
            rows.append((label, run_wrk(*load, duration_s=args.duration)))
            print(f"  measured {label}", flush=True)
    return rows


def print_submit(rows: list[tuple[str, WrkResult]], args: argparse.Namespace) -> None:
    """The submit table; ratios are over the first row (the baseline)."""
    print(
        f"\nsubmit: POST /v1/images (t2i 64x64, queued), {args.connections} connections, "
        f"{args.duration} s after {args.warmup} s warm-up (wrk, {args.wrk_threads} threads)"
    )
    print(
        f"{'server':<22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}   "
        "req/s, p50, p99 over bare"
    )
    base = rows[0][1]
    for label, row in rows:
        ratios = (
            f"x{row.requests_per_s / base.requests_per_s:.2f}, "
            f"x{row.p50_ms / base.p50_ms:.2f}, x{row.p99_ms / base.p99_ms:.2f}"
        )
        print(
            f"{label:<22} {row.requests_per_s:8.0f} {row.p50_ms:8.1f} {row.p99_ms:8.1f} "
            f"{row.errors:7d}   {ratios if row is not base else '(baseline)'}"
        )


# -- responsiveness ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reads:
    """Latencies of sequential `GET /v1/jobs/{id}`; failed: not 200 or no answer."""

    latencies_s: list[float]
    failed: int

    def summary_ms(self) -> tuple[float, float, float]:
        """p50, p99 and max in milliseconds."""
        values = self.latencies_s
        return 1000 * percentile(values, 50), 1000 * percentile(values, 99), 1000 * max(values)


async def read_job_repeatedly(
    client: httpx.AsyncClient, job_id: str, interval_s: float, keep_going: Callable[[], bool]
) -> Reads:
    """Read the job, wait `interval_s`, again, while `keep_going()`."""
    latencies: list[float] = []
    failed = 0
    while keep_going():
        started = time.perf_counter()
        try:
            ok = (await client.get(f"/v1/jobs/{job_id}")).status_code == 200
        except httpx.HTTPError:
            ok = False
        latencies.append(time.perf_counter() - started)
        failed += not ok
        await asyncio.sleep(interval_s)
    return Reads(latencies, failed)


async def one_chat(client: httpx.AsyncClient, timeout_s: float) -> tuple[str, float]:
    """One `POST /v1/chat`: its outcome (the status, or what went wrong) and duration."""
    started = time.perf_counter()
    try:
        response = await asyncio.wait_for(client.post("/v1/chat", json=CHAT_BODY), timeout_s)
        outcome = str(response.status_code)
    except TimeoutError:
        outcome = "timeout"
    except httpx.HTTPError as error:
        outcome = type(error).__name__
    return outcome, time.perf_counter() - started


@dataclass(frozen=True)
class Responsiveness:
    """The reads without and with the chats in flight, and the chats' outcomes."""

    idle: Reads
    loaded: Reads
    chats: list[tuple[str, float]]


async def measure_responsiveness_async(url: str, args: argparse.Namespace) -> Responsiveness:
    """Create a job, read it for `--idle-reads-s` seconds, then again while the chats
    wait on the mllm."""
    timeout = httpx.Timeout(args.chat_timeout, connect=10)
    # The reads have their own connection: they never wait for a pool slot behind a chat.
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as reader:
        created = await reader.post("/v1/images", json=SUBMIT_BODY)
        created.raise_for_status()
        job_id = created.json()["id"]
        deadline = time.monotonic() + args.idle_reads_s
        idle = await read_job_repeatedly(
            reader, job_id, args.read_interval, lambda: time.monotonic() < deadline
        )
        limits = httpx.Limits(max_connections=args.chats, max_keepalive_connections=args.chats)
        async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as chatter:
            chats = asyncio.gather(
                *(one_chat(chatter, args.chat_timeout) for _ in range(args.chats))
            )
            loaded = await read_job_repeatedly(
                reader, job_id, args.read_interval, lambda: not chats.done()
            )
            outcomes = await chats
    return Responsiveness(idle, loaded, list(outcomes))


def measure_responsiveness(
    namespace: Namespace, logs: Path, args: argparse.Namespace
) -> Responsiveness:
    """The scripted mllm (every reply after `--mllm-delay` s) and one gateway on it."""
    with ScriptedMllm.start(logs) as mllm:
        mllm.script(default=MLLM_REPLY, delay_s=args.mllm_delay)
        env = gateway_env(namespace, LLMGA_MLLM_BASE_URL=mllm.base_url)
        with start_gateway(env, logs) as gateway:
            return asyncio.run(measure_responsiveness_async(gateway.url, args))


def print_responsiveness(result: Responsiveness, args: argparse.Namespace) -> None:
    """The reads' table, the chats' completion times and the goal."""
    print(
        f"\nresponsiveness: GET /v1/jobs/{{id}} every {1000 * args.read_interval:.0f} ms, "
        f"one at a time, while {args.chats} POST /v1/chat wait on an mllm answering in "
        f"{args.mllm_delay:g} s"
    )
    print(f"{'':<22} {'reads':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>7}")
    idle_ms = result.idle.summary_ms()
    for label, reads in (("no chats (baseline)", result.idle), ("chats in flight", result.loaded)):
        p50, p99, top = reads.summary_ms()
        ratio = (
            ""
            if reads is result.idle
            else f"   p50 x{p50 / idle_ms[0]:.1f}, p99 x{p99 / idle_ms[1]:.1f}"
        )
        print(
            f"{label:<22} {len(reads.latencies_s):6d} {p50:8.1f} {p99:8.1f} {top:8.1f} "
            f"{reads.failed:7d}{ratio}"
        )
    outcomes = Counter(outcome for outcome, _ in result.chats)
    answered = sorted(seconds for outcome, seconds in result.chats if outcome == "200")
    line = f"chats: {outcomes['200']}/{len(result.chats)} answered 200"
    if answered:
        line += (
            f", completed after min {answered[0]:.1f} s, median "
            f"{statistics.median(answered):.1f} s, max {answered[-1]:.1f} s"
        )
    others = {outcome: count for outcome, count in outcomes.items() if outcome != "200"}
    print(line + (f"; others: {others}" if others else ""))
    print(f"goal: p99 <= {READ_GOAL_MS} ms, every chat 200 in about {args.mllm_delay:g} s")


# -- one run -------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {PARTS}")
    parser.add_argument("--duration", type=int, default=10, help="seconds per submit row")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--mllm-delay", type=float, default=6.0, help="seconds per reply")
    parser.add_argument("--read-interval", type=float, default=0.05, help="seconds")
    parser.add_argument("--idle-reads-s", type=float, default=5.0, help="baseline duration")
    parser.add_argument("--chat-timeout", type=float, default=90.0, help="seconds per chat")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown --parts {sorted(unknown)}; known: {PARTS}")
    if min(args.duration, args.warmup, args.connections, args.wrk_threads, args.chats) < 1:
        parser.error("--duration, --warmup, --connections, --wrk-threads, --chats must be >= 1")
    if min(args.mllm_delay, args.read_interval, args.idle_reads_s, args.chat_timeout) <= 0:
        parser.error("--mllm-delay, --read-interval, --idle-reads-s, --chat-timeout must be > 0")
    args.parts = parts
    return args


def main() -> int:
    """Run the chosen parts; 1 if the submit part had to be skipped (no wrk)."""
    args = parse_args()
    logs = Path(tempfile.mkdtemp(prefix="llmga-bench-gateway-"))
    namespace = Namespace.unique("bench-gw")
    client = redis.Redis.from_url(REDIS_URL)
    status = 0
    try:
        if "submit" in args.parts:
            wrk = ensure_wrk()
            if wrk is None:
                print(
                    "submit: skipped, wrk is not installed (Debian/Ubuntu: "
                    "`sudo apt-get install wrk`; macOS: `brew install wrk`)"
                )
                status = 1
            else:
                print_submit(measure_submit(wrk, namespace, logs / "submit", args), args)
        if "responsiveness" in args.parts:
            result = measure_responsiveness(namespace, logs / "responsiveness", args)
            print_responsiveness(result, args)
    finally:
        namespace.cleanup(client)
    print(f"(service logs: {logs})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
