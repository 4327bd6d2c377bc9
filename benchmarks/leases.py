"""Lease + submit round trips under 50 concurrent annotators: latency percentiles and throughput.

Starts ``prodloop serve`` (SQLite, and PostgreSQL when a URL is given), saves a label schema, makes
one queue per load (overlap 3, 5,000 items of priorities 0 to 3) and 50 annotators, each with a key
of its own made through ``POST /api/v1/annotators``. Then each annotator loops: ``POST
/api/v1/queues/{queue}/lease``, then ``POST /api/v1/items/{id}/labels`` with a value; one round trip is
the two requests together, the unit of an annotator's work.

Two load shapes, as in ``signals.py``:

- closed loop (``closed``): each annotator starts its next round trip as soon as the last one is
  answered, so the server runs flat out and latency includes queueing behind the 49 others;
- open loop (a number: round trips/s of all annotators together): round trips are due on a fixed
  schedule and latency counts from when one was due, so a server that falls behind cannot hide it.
  People label an item in seconds, not milliseconds: 50 annotators at one item per second each is
  50 round trips/s, already far more than a team of people produces.

The target is a p99 round trip under 50 ms on PostgreSQL.

    .venv/bin/python benchmarks/leases.py                          # closed loop, then 50 round trips/s
    .venv/bin/python benchmarks/leases.py --loads closed,25,50,100 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import harness

TARGET_P99_MS = 50.0
OPTIONS = ("billing", "refund", "bug", "other")
SCHEMA = {
    "name": "bench-intent",
    "description": "Why the customer wrote in.",
    "guidelines": "Pick the main reason the customer wrote.",
    "fields": [
        {"name": "intent", "type": "categorical", "options": list(OPTIONS)},
        {"name": "severity", "type": "ordinal", "options": ["low", "medium", "high"], "required": False},
    ],
}


@dataclass(frozen=True)
class LoadJob:
    """What one load-generator process does."""

    index: int
    host: str
    port: int
    queue: str
    keys: list[str]
    warmup: float
    duration: float
    rate_per_annotator: float | None


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the answer: little client CPU."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\n"
            + self.head
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        answer = await self.reader.readexactly(length) if length else b""
        if close:
            await self.aclose()
        return status, answer

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _annotator(job: LoadJob, number: int, measure_from: float, end: float, out: dict[str, Any]) -> None:
    rng = random.Random(job.index * 1000 + number)
    client = RawHttpClient(job.host, job.port, job.keys[number])
    interval = 1 / job.rate_per_annotator if job.rate_per_annotator else 0.0
    # Spread the annotators' schedules over one interval so that they do not all start at once.
    due = time.monotonic() + rng.random() * interval
    lease_path = f"/api/v1/queues/{job.queue}/lease"
    try:
        while True:
            if interval:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            began = time.monotonic()
            if began >= end:
                break
            try:
                status, body = await asyncio.wait_for(client.post(lease_path), timeout=30)
                leased = time.monotonic()
                if status == 204:
                    out["ran_dry"] += 1
                    break
                if status != 200:
                    raise RuntimeError(f"lease answered {status}: {body[:200]!r}")
                item = json.loads(body)["item"]["id"]
                value = {"intent": OPTIONS[item % len(OPTIONS)], "severity": rng.choice(("low", "high"))}
                label = json.dumps({"value": value}).encode()
                status, body = await asyncio.wait_for(client.post(f"/api/v1/items/{item}/labels", label), 30)
                if status != 201:
                    raise RuntimeError(f"label answered {status}: {body[:200]!r}")
            except (TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as exc:
                out["errors"].append(f"{type(exc).__name__}: {exc}")
                out["failed"] += 1
                await client.aclose()
                if interval:
                    due += interval
                continue
            done = time.monotonic()
            start = due if interval else began
            if start >= measure_from:
                out["round_trip_ms"].append((done - start) * 1000)
                out["lease_ms"].append((leased - began) * 1000)
                out["submit_ms"].append((done - leased) * 1000)
            if interval:
                due += interval
    finally:
        await client.aclose()


async def _load(job: LoadJob, start_at: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "round_trip_ms": [],
        "lease_ms": [],
        "submit_ms": [],
        "errors": [],
        "failed": 0,
        "ran_dry": 0,
    }
    measure_from = start_at + job.warmup
    end = measure_from + job.duration
    await asyncio.gather(*(_annotator(job, n, measure_from, end, out) for n in range(len(job.keys))))
    return out


def load_worker(job: LoadJob, ready: Any, start: Any, results: Any) -> None:
    """One load-generator process: its share of the annotators on one asyncio loop."""
    ready.put(job.index)
    if not start.wait(timeout=120):
        results.put({"index": job.index, "error": "start signal never came"})
        return
    cpu0 = sum(os.times()[:2])
    out = asyncio.run(_load(job, time.monotonic()))
    out["cpu_seconds"] = sum(os.times()[:2]) - cpu0
    out["errors"] = out["errors"][:5]
    out["index"] = job.index
    results.put(out)


# --------------------------------------------------------------------------------------------------
# Setting up: schema, queues with items, annotators with keys


def _post(server: harness.Server, path: str, document: Any, key: str | None = None) -> Any:
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps(document).encode(),
        headers={"Authorization": f"Bearer {key or server.info['key']}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"POST {path} answered {exc.code}: {exc.read()[:300]!r}") from None


def make_queue(server: harness.Server, name: str, items: int, overlap: int) -> None:
    _post(server, "/api/v1/queues", {"name": name, "schema": "bench-intent@1", "overlap": overlap})
    rng = random.Random(name)
    for first in range(0, items, 1000):
        rows = [
            {
                "id": f"{name}-{n}",
                "input": f"Where is my order {rng.randint(10_000, 99_999)}? It was due last week.",
                "output": "Your order left our warehouse on Monday; it should arrive within two days.",
                "metadata": {"feature": "support-assistant", "n": n},
                "priority": rng.randint(0, 3),
            }
            for n in range(first, min(first + 1000, items))
        ]
        _post(server, f"/api/v1/queues/{name}/items", {"items": rows})


def make_annotators(server: harness.Server, count: int) -> list[str]:
    """``count`` annotators, each with a key of its own, as a team (or a set of judges) would get."""
    return [_post(server, "/api/v1/annotators", {"name": f"annotator-{n:02d}"})["key"] for n in range(count)]


# --------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Measurement:
    backend: str
    mode: str
    annotators: int
    seconds: float
    round_trips: int
    round_trips_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    lease_p99_ms: float
    submit_p99_ms: float
    failed: int
    ran_dry: int
    server_cpu_percent: float
    client_cpu_percent: float
    machine_cpu_percent: float
    p99_under_target: bool
    info: dict[str, Any]


def run_load(
    server: harness.Server, queue_name: str, keys: list[str], rate: float | None, args: argparse.Namespace
) -> dict[str, Any]:
    host, port = harness.HOST, int(server.url.rsplit(":", 1)[1])
    shares = [keys[i :: args.processes] for i in range(args.processes)]
    jobs = []
    for i, share in enumerate(shares):
        job = LoadJob(
            index=i,
            host=host,
            port=port,
            queue=queue_name,
            keys=share,
            warmup=args.warmup,
            duration=args.duration,
            rate_per_annotator=rate / len(keys) if rate else None,
        )
        jobs.append(job)
    return harness.run_load_processes(server, load_worker, jobs, args.warmup, args.duration)


def measure(
    backend: str,
    server: harness.Server,
    queue_name: str,
    keys: list[str],
    rate: float | None,
    args: argparse.Namespace,
) -> Measurement:
    busy = harness.wait_for_quiet(args.quiet_wait, exclude=[server.process.pid])
    mode = f"open loop, {rate:g} rt/s" if rate else "closed loop"
    harness.log(f"  {len(keys)} annotators, {mode}, {args.warmup:g} s warm-up + {args.duration:g} s measured")
    run = run_load(server, queue_name, keys, rate, args)
    reports = run["reports"]
    round_trips = [x for r in reports for x in r["round_trip_ms"]]
    lease = [x for r in reports for x in r["lease_ms"]]
    submit = [x for r in reports for x in r["submit_ms"]]
    errors = [e for r in reports for e in r["errors"]]
    if errors:
        harness.log(f"  client errors (first ones): {errors[:3]}")
    client_cpu = sum(r["cpu_seconds"] for r in reports) * args.duration / (args.duration + args.warmup)
    p99 = harness.percentile(round_trips, 99)
    result = Measurement(
        backend=backend,
        mode=mode,
        annotators=len(keys),
        seconds=args.duration,
        round_trips=len(round_trips),
        round_trips_per_second=round(len(round_trips) / args.duration, 1),
        p50_ms=round(harness.percentile(round_trips, 50), 2),
        p95_ms=round(harness.percentile(round_trips, 95), 2),
        p99_ms=round(p99, 2),
        max_ms=round(max(round_trips, default=float("nan")), 2),
        lease_p99_ms=round(harness.percentile(lease, 99), 2),
        submit_p99_ms=round(harness.percentile(submit, 99), 2),
        failed=sum(r["failed"] for r in reports),
        ran_dry=sum(r["ran_dry"] for r in reports),
        server_cpu_percent=round(100 * run["server_cpu"] / run["wall"], 1),
        client_cpu_percent=round(100 * client_cpu / args.duration, 1),
        machine_cpu_percent=round(100 * run["machine_cpu"] / run["wall"], 1),
        p99_under_target=p99 < TARGET_P99_MS,
        info={**server.info, "queue": queue_name, "busy_cpus_before": busy},
    )
    result.info.pop("key", None)
    harness.log(
        f"  {backend}: {result.round_trips_per_second:,.0f} round trips/s, p50 {result.p50_ms:.1f} ms, "
        f"p95 {result.p95_ms:.1f} ms, p99 {result.p99_ms:.1f} ms ({result.failed} failed, "
        f"{result.ran_dry} ran dry); CPU server {result.server_cpu_percent:.0f}%, clients "
        f"{result.client_cpu_percent:.0f}%, whole machine {result.machine_cpu_percent:.0f}% of one CPU"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("PRODLOOP_TEST_DATABASE_URL"),
        help="PostgreSQL URL of a user that may create databases (default: PRODLOOP_TEST_DATABASE_URL).",
    )
    parser.add_argument(
        "--backends", default=None, help="sqlite,postgresql (default: both when a URL is known)."
    )
    parser.add_argument("--annotators", type=int, default=50, help="Concurrent annotators, one key each.")
    parser.add_argument("--overlap", type=int, default=3, help="Distinct annotators per item.")
    parser.add_argument(
        "--processes", type=int, default=1, help="Load-generator processes the annotators share."
    )
    parser.add_argument(
        "--prodloop", default=None, help="The prodloop executable (default: .venv/bin/prodloop)."
    )
    parser.add_argument(
        "--loads",
        default="closed,50",
        help="Comma-separated loads to run in turn: `closed` (closed loop) or a total rate in round "
        "trips/s (open loop).",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="Measured seconds.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds of load before measuring.")
    parser.add_argument(
        "--items",
        type=int,
        default=5000,
        help="Items in each load's queue (a fresh queue per load); their priorities are 0 to 3.",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        default=None,
        help="PRODLOOP_SQLITE_SYNCHRONOUS for the server (default: FULL).",
    )
    harness.add_common_options(parser, output="leases.json")
    args = parser.parse_args(argv)
    backends = (args.backends or ("sqlite,postgresql" if args.pg_url else "sqlite")).split(",")
    backends = [b.strip() for b in backends if b.strip()]
    for backend in backends:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}; use sqlite and/or postgresql")
        if backend == "postgresql" and not args.pg_url:
            parser.error("--pg-url (or PRODLOOP_TEST_DATABASE_URL) is needed for the PostgreSQL backend")
    try:
        rates = [None if x.strip() == "closed" else float(x) for x in args.loads.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--loads {args.loads!r}: use `closed` or numbers of round trips/s")
    if args.processes < 1 or args.annotators < args.processes:
        parser.error("need at least one annotator per load process")

    load_before = harness.load_average()
    revision = harness.revision()  # before the servers start: the code they run
    results: list[Measurement] = []
    for backend in backends:
        harness.log(f"prodloop on {backend}")
        with harness.backend_server(backend, args) as server:
            _post(server, "/api/v1/schemas", SCHEMA)
            keys = make_annotators(server, args.annotators)
            samples = harness.RESULTS / f"leases-{backend}.folded"
            for number, rate in enumerate(rates):
                queue_name = f"bench-{number}"
                harness.log(f"  queue {queue_name}: {args.items:,} items, overlap {args.overlap}")
                make_queue(server, queue_name, args.items, args.overlap)
                with harness.py_spy_recording(
                    args.py_spy, server.process.pid, samples, gil=not args.py_spy_all_threads
                ):
                    results.append(measure(backend, server, queue_name, keys, rate, args))

    print()
    header = (
        f"{'backend':<11} {'mode':<22} {'rt/s':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'lease p99':>9} {'submit p99':>10} {'failed':>6} {'p99<50ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:<11} {r.mode:<22} {r.round_trips_per_second:>6,.0f} {r.p50_ms:>7.1f} "
            f"{r.p95_ms:>7.1f} {r.p99_ms:>7.1f} {r.max_ms:>7.1f} {r.lease_p99_ms:>9.1f} "
            f"{r.submit_p99_ms:>10.1f} {r.failed:>6} {'yes' if r.p99_under_target else 'NO':>8}"
        )
    document = {
        "benchmark": "leases",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "load_average_before": load_before,
        "revision": revision,
        "settings": {
            "annotators": args.annotators,
            "overlap": args.overlap,
            "processes": args.processes,
            "loads": args.loads,
            "duration": args.duration,
            "warmup": args.warmup,
            "items_per_queue": args.items,
        },
        "results": [asdict(r) for r in results],
    }
    path = harness.write_results(args.output, document)
    print(f"results written to {path}")
    return 0 if all(r.failed == 0 and r.ran_dry == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
