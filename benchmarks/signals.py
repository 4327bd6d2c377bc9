"""``POST /api/v1/signals`` under 50 concurrent clients: requests/s and latency percentiles.

Starts ``prodloop serve`` (SQLite, and PostgreSQL when a URL is given), stores some traces, then
runs concurrent clients that each send one signal per request (a thumbs-up, a copy, an outcome), the
way an application reports feedback as it happens. Each client holds its own keep-alive connection.

Two load shapes:

- closed loop (`closed`): each client sends its next request as soon as the previous one is answered,
  so the server runs flat out; latency then includes the queueing behind the 49 other clients.
- open loop (``--loads R``): the clients together send R requests/s on a fixed schedule, and a
  request's latency counts from when it was due, so a slow server cannot hide its backlog.

The load generator runs in its own processes with asyncio; the default client writes HTTP/1.1 by hand
on asyncio streams, so that on a 2-core machine the client takes little CPU from the server
(``--client httpx`` uses ``httpx.AsyncClient`` instead). CPU seconds of server and clients are reported.

    .venv/bin/python benchmarks/signals.py       # closed loop, then 100 req/s; SQLite (+ PostgreSQL)
    .venv/bin/python benchmarks/signals.py --loads closed,50,100,200 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import harness

TARGET_P99_MS = 20.0


@dataclass(frozen=True)
class LoadJob:
    """What one load-generator process does."""

    index: int
    host: str
    port: int
    key: str
    clients: int
    trace_ids: list[str]
    warmup: float
    duration: float
    rate_per_client: float | None
    client: str


def _signal(rng: random.Random, trace_id: str, signal_id: str) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.7:
        return {
            "id": signal_id,
            "trace_id": trace_id,
            "kind": "explicit",
            "name": "thumbs",
            "value": "up" if rng.random() < 0.8 else "down",
            "user_id": f"user-{rng.randint(1, 5000)}",
        }
    if roll < 0.9:
        return {
            "id": signal_id,
            "trace_id": trace_id,
            "kind": "implicit",
            "name": rng.choice(("copy", "regenerate")),
        }
    return {
        "id": signal_id,
        "trace_id": trace_id,
        "kind": "outcome",
        "name": "resolved",
        "value": rng.random() < 0.6,
    }


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection that POSTs JSON: the least CPU a client can spend."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
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
        length = None
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise RuntimeError("response without Content-Length")
        await self.reader.readexactly(length)
        if close:
            await self.aclose()
        return status

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxClient:
    def __init__(self, host: str, port: int, key: str) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=f"http://{host}:{port}",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            limits=httpx.Limits(max_connections=1),
            timeout=30,
        )

    async def post(self, path: str, body: bytes) -> int:
        response = await self.client.post(path, content=body)
        return response.status_code

    async def aclose(self) -> None:
        await self.client.aclose()


async def _client_loop(
    job: LoadJob, number: int, measure_from: float, end: float, out: dict[str, Any]
) -> None:
    rng = random.Random(job.index * 1000 + number)
    client: RawHttpClient | HttpxClient = (
        RawHttpClient(job.host, job.port, job.key)
        if job.client == "raw"
        else HttpxClient(job.host, job.port, job.key)
    )
    interval = 1 / job.rate_per_client if job.rate_per_client else 0.0
    # Spread the clients' schedules over one interval so that they do not all fire at once.
    due = time.monotonic() + rng.random() * interval
    sent = 0
    try:
        while True:
            if interval:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            began = time.monotonic()
            if began >= end:
                break
            signal = _signal(
                rng, rng.choice(job.trace_ids), f"bench-{job.index}-{number}-{sent}-{secrets.token_hex(4)}"
            )
            body = json.dumps({"signals": [signal]}).encode()
            try:
                status = await asyncio.wait_for(client.post("/api/v1/signals", body), timeout=30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
                status = 0
                out["errors"].append(f"{type(exc).__name__}: {exc}")
                await client.aclose()
            done = time.monotonic()
            sent += 1
            start = due if interval else began
            if start >= measure_from:
                out["latencies_ms"].append((done - start) * 1000)
                out["statuses"][status] = out["statuses"].get(status, 0) + 1
            if interval:
                due += interval
    finally:
        await client.aclose()


async def _load(job: LoadJob, start_at: float) -> dict[str, Any]:
    out: dict[str, Any] = {"latencies_ms": [], "statuses": {}, "errors": []}
    measure_from = start_at + job.warmup
    end = measure_from + job.duration
    await asyncio.gather(*(_client_loop(job, n, measure_from, end, out) for n in range(job.clients)))
    return out


def load_worker(job: LoadJob, ready: Any, start: Any, results: Any) -> None:
    """One load-generator process: ``job.clients`` clients on one asyncio loop."""
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


@dataclass
class Measurement:
    backend: str
    mode: str
    clients: int
    seconds: float
    requests: int
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    server_cpu_percent: float
    client_cpu_percent: float
    machine_cpu_percent: float
    p99_under_target: bool
    info: dict[str, Any]


def _post_json(url: str, key: str, document: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(document).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def create_traces(server: harness.Server, count: int) -> list[str]:
    """Store ``count`` chat traces through the native API and return their ids."""
    rng = random.Random(11)
    ids: list[str] = []
    for first in range(0, count, 250):
        batch = []
        for i in range(first, min(first + 250, count)):
            trace_id = secrets.token_hex(16)
            ids.append(trace_id)
            batch.append(
                {
                    "trace_id": trace_id,
                    "feature": "support-assistant",
                    "release": "support-assistant@2026.11.3",
                    "join_key": f"ticket-{i}",
                    "name": "chat turn",
                    "input": f"Where is my order {rng.randint(10_000, 99_999)}? It was due last week.",
                    "output": "Your order left our warehouse on Monday; it should arrive within two days.",
                    "spans": [
                        {
                            "name": "chat gpt-4o-mini",
                            "operation": "chat",
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "input_tokens": rng.randint(300, 1500),
                            "output_tokens": rng.randint(60, 400),
                        }
                    ],
                }
            )
        _post_json(f"{server.url}/api/v1/traces", server.info["key"], {"traces": batch})
    return ids


def run_load(
    server: harness.Server, trace_ids: list[str], rate: float | None, args: argparse.Namespace
) -> dict[str, Any]:
    host, port = harness.HOST, int(server.url.rsplit(":", 1)[1])
    shares = [
        args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
        for i in range(args.processes)
    ]
    rate_per_client = rate / args.clients if rate else None
    jobs = []
    for i, share in enumerate(shares):
        job = LoadJob(
            index=i,
            host=host,
            port=port,
            key=server.info["key"],
            clients=share,
            trace_ids=trace_ids,
            warmup=args.warmup,
            duration=args.duration,
            rate_per_client=rate_per_client,
            client=args.client,
        )
        jobs.append(job)
    return harness.run_load_processes(server, load_worker, jobs, args.warmup, args.duration)


def measure(
    backend: str, server: harness.Server, trace_ids: list[str], rate: float | None, args: argparse.Namespace
) -> Measurement:
    busy = harness.wait_for_quiet(args.quiet_wait, exclude=[server.process.pid])
    mode = f"open loop, {rate:g} req/s" if rate else "closed loop"
    harness.log(f"  {args.clients} clients, {mode}, {args.warmup:g} s warm-up + {args.duration:g} s measured")
    run = run_load(server, trace_ids, rate, args)
    reports = run["reports"]
    latencies = [x for r in reports for x in r["latencies_ms"]]
    statuses: dict[int, int] = {}
    for r in reports:
        for status, n in r["statuses"].items():
            statuses[int(status)] = statuses.get(int(status), 0) + n
    errors = [e for r in reports for e in r["errors"]]
    if errors:
        harness.log(f"  client errors (first ones): {errors[:3]}")
    # The clients' CPU covers warm-up and measurement; scale it to the measured part.
    client_cpu = sum(r["cpu_seconds"] for r in reports) * args.duration / (args.duration + args.warmup)
    p99 = harness.percentile(latencies, 99)
    result = Measurement(
        backend=backend,
        mode=mode,
        clients=args.clients,
        seconds=args.duration,
        requests=len(latencies),
        requests_per_second=round(len(latencies) / args.duration, 1),
        p50_ms=round(harness.percentile(latencies, 50), 2),
        p95_ms=round(harness.percentile(latencies, 95), 2),
        p99_ms=round(p99, 2),
        max_ms=round(max(latencies, default=float("nan")), 2),
        non_2xx=sum(n for status, n in statuses.items() if not 200 <= status < 300),
        server_cpu_percent=round(100 * run["server_cpu"] / run["wall"], 1),
        client_cpu_percent=round(100 * client_cpu / args.duration, 1),
        machine_cpu_percent=round(100 * run["machine_cpu"] / run["wall"], 1),
        p99_under_target=p99 < TARGET_P99_MS,
        info={**server.info, "key": None, "statuses": statuses, "busy_cpus_before": busy},
    )
    result.info.pop("key")
    harness.log(
        f"  {backend}: {result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
        f"p95 {result.p95_ms:.1f} ms, p99 {result.p99_ms:.1f} ms ({result.non_2xx} not 2xx); "
        f"CPU server {result.server_cpu_percent:.0f}%, clients {result.client_cpu_percent:.0f}%, "
        f"whole machine {result.machine_cpu_percent:.0f}% of one CPU"
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
    parser.add_argument(
        "--clients", type=int, default=50, help="Concurrent clients, each with its own connection."
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="Load-generator processes the clients share."
    )
    parser.add_argument(
        "--prodloop", default=None, help="The prodloop executable (default: .venv/bin/prodloop)."
    )
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="HTTP client of the load.")
    parser.add_argument(
        "--loads",
        default="closed,100",
        help="Comma-separated loads to run in turn: `closed` (closed loop) or a total rate in requests/s "
        "(open loop).",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="Measured seconds.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds of load before measuring.")
    parser.add_argument("--traces", type=int, default=2000, help="Traces stored before the load.")
    parser.add_argument(
        "--sqlite-synchronous",
        default=None,
        help="PRODLOOP_SQLITE_SYNCHRONOUS for the server (default: FULL).",
    )
    harness.add_common_options(parser, output="signals.json")
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
        parser.error(f"--loads {args.loads!r}: use `closed` or numbers of requests/s")
    if args.processes < 1 or args.clients < args.processes:
        parser.error("need at least one client per load process")

    load_before = harness.load_average()
    revision = harness.revision()  # before the servers start: the code they run
    results: list[Measurement] = []
    for backend in backends:
        harness.log(f"prodloop on {backend}")
        with harness.backend_server(backend, args) as server:
            samples = harness.RESULTS / f"signals-{backend}.folded"
            harness.log(f"  storing {args.traces} traces")
            trace_ids = create_traces(server, args.traces)
            with harness.py_spy_recording(
                args.py_spy, server.process.pid, samples, gil=not args.py_spy_all_threads
            ):
                for rate in rates:
                    results.append(measure(backend, server, trace_ids, rate, args))

    print()
    header = (
        f"{'backend':<11} {'mode':<24} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'errors':>6} {'p99<20ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:<11} {r.mode:<24} {r.requests_per_second:>7,.0f} {r.p50_ms:>7.1f} {r.p95_ms:>7.1f} "
            f"{r.p99_ms:>7.1f} {r.max_ms:>7.1f} {r.non_2xx:>6} {'yes' if r.p99_under_target else 'NO':>8}"
        )
    document = {
        "benchmark": "signals",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "load_average_before": load_before,
        "revision": revision,
        "settings": {
            "clients": args.clients,
            "processes": args.processes,
            "client": args.client,
            "loads": args.loads,
            "duration": args.duration,
            "warmup": args.warmup,
            "traces": args.traces,
            "signals_per_request": 1,
        },
        "results": [asdict(r) for r in results],
    }
    path = harness.write_results(args.output, document)
    print(f"results written to {path}")
    return 0 if all(r.non_2xx == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
