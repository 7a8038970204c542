"""Load driver: N concurrent users chat and generate against the gateway for a bounded
time, each waiting for its jobs (`GET /v1/jobs/{id}?wait=N`) before its next request.

Prints throughput, p50/p99 latency per request kind and the jobs submitted, succeeded,
failed, canceled and lost (submitted but not terminal after a grace period, or whose
record is gone). Exits 1 if any job was lost or any request answered 5xx.

    make load                                        # own stack: scripted mllm, 4 users, 30 s
    python -m benchmarks.load --users 8 --duration 60 --real-mllm
    python -m benchmarks.load --url http://127.0.0.1:8000   # a running stack (`make run`)

Without `--url` it starts its own stack in a fresh Redis namespace (tests/support): a real
worker (tiny profile), the gateway, and the scripted mllm (whose every reply asks for one
image) or, with `--real-mllm`, the local mllm engine.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import (
    REDIS_URL,
    Namespace,
    start_gateway,
    start_local_mllm,
    start_worker,
)

TERMINAL = {"succeeded", "failed", "canceled"}
SCRIPTED_REPLY = "Here you go. <gen_image>a tiny red lighthouse on a cliff</gen_image>"
MESSAGES = ("a lighthouse at dusk", "a fox in the snow", "a bowl of ramen", "a paper boat")


@dataclass
class Stats:
    """What every user records; one lock for all of it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    transport_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    jobs: dict[str, str] = field(default_factory=dict)  # id -> last seen status

    def request(self, kind: str, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[kind][status] += 1
            if 200 <= status < 300:
                self.latencies[kind].append(seconds)

    def transport_error(self, kind: str) -> None:
        with self.lock:
            self.transport_errors[kind] += 1

    def job(self, job_id: str, status: str) -> None:
        with self.lock:
            self.jobs[job_id] = status


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def timed_request(
    client: httpx.Client, stats: Stats, kind: str, method: str, url: str, **kwargs: object
) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError:
        stats.transport_error(kind)
        return None
    stats.request(kind, response.status_code, time.perf_counter() - started)
    return response


def follow_job(
    client: httpx.Client, stats: Stats, job_id: str, wait_s: int, until: float, submitted: float
) -> None:
    """Poll the job with bounded waits until it ends or `until` passes; record its time
    from the start of the request that submitted it (`submitted`, perf_counter) to its end."""
    while time.monotonic() < until:
        response = timed_request(client, stats, "poll", "GET", f"/v1/jobs/{job_id}?wait={wait_s}")
        if response is None or response.status_code != 200:
            time.sleep(0.5)
            continue
        status = str(response.json()["status"])
        stats.job(job_id, status)
        if status in TERMINAL:
            stats.request("job (submit->end)", 200, time.perf_counter() - submitted)
            return


def user(index: int, base_url: str, args: argparse.Namespace, stats: Stats, stop_at: float) -> None:
    """One closed-loop user: a request, then its jobs to the end, until `stop_at`."""
    rng = random.Random(args.seed + index)
    size = {"width": args.size, "height": args.size, "steps": args.steps}
    follow_until = stop_at + args.grace
    with httpx.Client(base_url=base_url, timeout=args.timeout) as client:
        while time.monotonic() < stop_at:
            message = rng.choice(MESSAGES)
            job_ids: list[str] = []
            submitted = time.perf_counter()
            if rng.random() < args.chat_ratio:
                body = {"message": message, "seed": rng.randrange(2**31), **size}
                response = timed_request(client, stats, "chat", "POST", "/v1/chat", json=body)
                if response is not None and response.status_code == 200:
                    job_ids = [job["id"] for job in response.json()["jobs"]]
            else:
                body = {"task": "t2i", "prompt": message, "seed": rng.randrange(2**31), **size}
                response = timed_request(
                    client, stats, "images", "POST", f"/v1/images?wait={args.wait}", json=body
                )
                if response is not None and response.status_code == 202:
                    job_ids = [response.json()["id"]]
            if response is not None and response.status_code == 429:
                time.sleep(float(response.headers.get("Retry-After", "1")))
            for job_id in job_ids:
                stats.job(job_id, "queued")
            for job_id in job_ids:
                follow_job(client, stats, job_id, args.wait, follow_until, submitted)


def settle(base_url: str, stats: Stats, grace_s: float) -> None:
    """After the run: re-read every job not yet seen terminal until the grace period ends;
    a job still active then, or whose record is gone (404), stays counted as lost."""
    deadline = time.monotonic() + grace_s
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while True:
            open_jobs = [j for j, status in stats.jobs.items() if status not in TERMINAL]
            for job_id in open_jobs:
                response = client.get(f"/v1/jobs/{job_id}")
                stats.job(
                    job_id, str(response.json()["status"]) if response.is_success else "missing"
                )
            if all(s in TERMINAL for s in stats.jobs.values()) or time.monotonic() > deadline:
                return
            time.sleep(0.5)


def report(args: argparse.Namespace, stats: Stats, elapsed_s: float) -> int:
    """Print the results; the exit status (1 if a job was lost or a 5xx was answered)."""
    print(
        f"\n{args.users} users, {elapsed_s:.1f} s, {args.size}x{args.size} px, "
        f"{args.steps} steps, chat share {args.chat_ratio:.0%}"
    )
    print(f"{'kind':<20}{'ok':>6}{'non-2xx':>9}{'req/s':>8}{'p50 ms':>10}{'p99 ms':>10}")
    server_errors = 0
    for kind in ("chat", "images", "poll", "job (submit->end)"):
        latencies = stats.latencies.get(kind, [])
        codes = stats.statuses.get(kind, {})
        bad = {code: n for code, n in codes.items() if not 200 <= code < 300}
        server_errors += sum(n for code, n in bad.items() if code >= 500)
        server_errors += stats.transport_errors.get(kind, 0)
        if not latencies and not bad:
            continue
        p50 = f"{percentile(latencies, 50) * 1000:.0f}" if latencies else "-"
        p99 = f"{percentile(latencies, 99) * 1000:.0f}" if latencies else "-"
        print(
            f"{kind:<20}{len(latencies):>6}{sum(bad.values()):>9}"
            f"{len(latencies) / elapsed_s:>8.2f}{p50:>10}{p99:>10}"
        )
        if bad or stats.transport_errors.get(kind):
            detail = dict(sorted(bad.items()))
            print(f"  non-2xx: {detail}, transport errors: {stats.transport_errors.get(kind, 0)}")
    final = list(stats.jobs.values())
    counts = {status: final.count(status) for status in ("succeeded", "failed", "canceled")}
    lost = len(final) - sum(counts.values())
    print(
        f"jobs: submitted {len(final)}, succeeded {counts['succeeded']}, failed "
        f"{counts['failed']}, canceled {counts['canceled']}, lost {lost} "
        f"({counts['succeeded'] / elapsed_s:.2f} jobs/s)"
    )
    return 1 if lost or server_errors else 0


@contextmanager
def own_stack(args: argparse.Namespace) -> Iterator[str]:
    """Worker, gateway and mllm (scripted or real) in a fresh Redis namespace."""
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    namespace = Namespace.unique("load")
    models_dir = Path(os.environ.get("LLMGA_MODELS_DIR", Path.home() / ".cache/llmga/models"))
    with tempfile.TemporaryDirectory(prefix="llmga-load-") as work, ExitStack() as stack:
        logs = Path(work) / "logs"
        stack.callback(namespace.cleanup, client)
        if args.real_mllm:
            mllm_base_url = f"{stack.enter_context(start_local_mllm(logs)).url}/v1"
        else:
            scripted = stack.enter_context(ScriptedMllm.start(logs))
            scripted.script(default=SCRIPTED_REPLY)
            mllm_base_url = scripted.base_url
        stack.enter_context(start_worker(namespace, models_dir, logs))
        env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": mllm_base_url}
        gateway = stack.enter_context(start_gateway(env, logs))
        print(f"stack up: gateway {gateway.url}, namespace {namespace.key_prefix}, logs {logs}")
        yield gateway.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", help="gateway to target; default: start a local stack")
    parser.add_argument("--real-mllm", action="store_true", help="own stack: the local mllm")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of new requests")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds for jobs to end")
    parser.add_argument("--chat-ratio", type=float, default=0.5, help="share of chat requests")
    parser.add_argument("--size", type=int, default=64, help="image width and height")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--wait", type=int, default=10, help="?wait=N of job requests")
    parser.add_argument("--timeout", type=float, default=180.0, help="HTTP read timeout")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with ExitStack() as stack:
        base_url = args.url or stack.enter_context(own_stack(args))
        stats = Stats()
        started = time.monotonic()
        stop_at = started + args.duration
        users = [
            threading.Thread(target=user, args=(i, base_url, args, stats, stop_at), daemon=True)
            for i in range(args.users)
        ]
        for thread in users:
            thread.start()
        for thread in users:
            thread.join()
        elapsed = time.monotonic() - started
        settle(base_url, stats, args.grace)
        status = report(args, stats, elapsed)
    raise SystemExit(status)


if __name__ == "__main__":
    main()
