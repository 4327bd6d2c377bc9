"""OTLP trace ingest: prodloop (SQLite, PostgreSQL) against Arize Phoenix (SQLite), in one run.

Spans are made and sent by the official OpenTelemetry SDK (``TracerProvider`` +
``BatchSpanProcessor(OTLPSpanExporter)``) in producer processes, the way an application exports
them. Each trace is a GenAI chat turn: a root span and an LLM child span with ``gen_ai.*``
attributes and messages of a few hundred characters.

For each target the benchmark reports:

- stored spans/s: spans / seconds from the first span made until the store holds all of them,
  committed and queryable (counted in the target's own database);
- export latency p50/p99: the wall time of each ``OTLPSpanExporter.export()`` call (one batch,
  including the SDK's protobuf encoding and the HTTP round trip);

and the ratio of prodloop's rate to Phoenix's. Results go to ``benchmarks/results/ingest.json``.

    .venv/bin/python benchmarks/ingest.py                     # SQLite, PostgreSQL, Phoenix
    .venv/bin/python benchmarks/ingest.py --backends sqlite --skip-phoenix --spans 20000

Phoenix is installed (``pip install arize-phoenix``) into ``benchmarks/.venv-phoenix`` on the
first run and reused afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness

PHOENIX_VENV = harness.BENCHMARKS / ".venv-phoenix"
SPANS_PER_TRACE = 2
TARGET_SPANS_PER_SECOND = 5_000
TARGET_RATIO = 10.0

_WORDS = (
    "order refund shipping invoice account password reset delivery tracking warranty subscription plan "
    "upgrade cancel charge card payment address email support agent ticket status delayed damaged item "
    "replacement return label policy days business customer request please thanks help issue error "
    "billing cycle prorated credit balance statement monthly annual discount coupon code expired valid"
).split()
_SYSTEM = (
    "You are the customer-support assistant of an online shop. Answer in the customer's language, in "
    "at most three short paragraphs. Use the order and policy facts given in the context; never invent "
    "order numbers, prices or dates. If the customer asks for a refund above 200 EUR, or is angry after "
    "two answers, offer to hand over to a human agent."
)
_MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-haiku-4", "claude-haiku-4"),
)


@dataclass(frozen=True)
class ProducerJob:
    """What one producer process sends."""

    index: int
    endpoint: str
    headers: dict[str, str]
    traces: int
    seed: int
    batch_size: int
    queue_size: int
    timeout: float


def _sentence(rng: random.Random, low: int, high: int) -> str:
    length = rng.randint(low, high)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(_WORDS))
    return " ".join(words).capitalize() + "."


def produce(job: ProducerJob, ready: Any, start: Any, results: Any) -> None:
    """One application process: make ``job.traces`` chat turns and export them with the SDK."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.trace import SpanKind, Status, StatusCode

    rng = random.Random(job.seed)
    questions = [_sentence(rng, 150, 300) for _ in range(64)]
    answers = [_sentence(rng, 300, 600) for _ in range(64)]

    exporter = OTLPSpanExporter(endpoint=job.endpoint, headers=job.headers, timeout=job.timeout)
    latencies_ms: list[float] = []
    state = {"exported": 0, "failed_exports": 0, "failed_spans": 0}
    drained = threading.Condition()
    export = exporter.export

    def timed_export(batch: Any) -> Any:
        began = time.perf_counter()
        result = export(batch)
        latencies_ms.append((time.perf_counter() - began) * 1000)
        with drained:
            state["exported"] += len(batch)
            if result != SpanExportResult.SUCCESS:
                state["failed_exports"] += 1
                state["failed_spans"] += len(batch)
            drained.notify_all()
        return result

    exporter.export = timed_export  # type: ignore[method-assign,assignment]
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": "support-assistant",
                "service.version": "2026.11.3",
                "deployment.environment.name": "benchmark",
                "host.name": f"app-{job.index}",
            }
        )
    )
    processor = BatchSpanProcessor(
        exporter,
        max_queue_size=job.queue_size,
        max_export_batch_size=job.batch_size,
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("prodloop.benchmarks.ingest", "1.0")
    # A real application drops spans when the queue is full; the benchmark waits instead, so that
    # every span arrives and the rate measured is the one the server sustains.
    backlog = job.queue_size - job.batch_size

    ready.put(job.index)
    if not start.wait(timeout=120):
        results.put({"index": job.index, "error": "start signal never came"})
        return
    first = time.monotonic()
    cpu0 = sum(os.times()[:2])
    deadline = first + job.timeout * 10
    made = 0
    for i in range(job.traces):
        with drained:
            while made - state["exported"] > backlog:
                if not drained.wait(timeout=max(0.0, deadline - time.monotonic())):
                    results.put({"index": job.index, "error": "exports stalled"})
                    return
        provider_name, model, response_model = _MODELS[i % len(_MODELS)]
        question, answer = rng.choice(questions), rng.choice(answers)
        conversation = f"conv-{job.seed}-{i // 4}"
        in_tokens, out_tokens = rng.randint(300, 1500), rng.randint(60, 400)
        begin = time.time_ns()
        llm_ms = rng.randint(400, 3000)
        root = tracer.start_span(
            "POST /chat",
            kind=SpanKind.SERVER,
            start_time=begin,
            attributes={
                "http.request.method": "POST",
                "http.route": "/chat",
                "http.response.status_code": 200,
                "gen_ai.conversation.id": conversation,
                "prodloop.release": "support-assistant@2026.11.3",
                "prodloop.join_key": f"ticket-{job.seed}-{i}",
                "user.id": f"user-{rng.randint(1, 5000)}",
                "input.value": question,
                "output.value": answer,
            },
        )
        context = trace.set_span_in_context(root)
        llm = tracer.start_span(
            f"chat {model}",
            context=context,
            kind=SpanKind.CLIENT,
            start_time=begin + 4_000_000,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider_name,
                "gen_ai.request.model": model,
                "gen_ai.response.model": response_model,
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 800,
                "gen_ai.response.id": f"resp-{job.seed}-{i}",
                "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.usage.input_tokens": in_tokens,
                "gen_ai.usage.output_tokens": out_tokens,
                "gen_ai.conversation.id": conversation,
                "gen_ai.input.messages": json.dumps(
                    [
                        {"role": "system", "parts": [{"type": "text", "content": _SYSTEM}]},
                        {"role": "user", "parts": [{"type": "text", "content": question}]},
                    ]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": answer}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
                "openinference.span.kind": "LLM",
                "server.address": "api.example.invalid",
            },
        )
        llm.set_status(Status(StatusCode.OK))
        llm.end(end_time=begin + 4_000_000 + llm_ms * 1_000_000)
        root.end(end_time=begin + 10_000_000 + llm_ms * 1_000_000)
        made += SPANS_PER_TRACE
    made_at = time.monotonic()
    flushed = provider.force_flush(timeout_millis=int(job.timeout * 1000 * 10))
    done = time.monotonic()
    provider.shutdown()
    results.put(
        {
            "index": job.index,
            "spans": made,
            "first": first,
            "made_seconds": made_at - first,
            "done": done,
            "cpu_seconds": sum(os.times()[:2]) - cpu0,
            "flushed": flushed,
            "latencies_ms": latencies_ms,
            **state,
        }
    )


@dataclass
class Target:
    """A server to send spans to, and how to count the spans it has committed."""

    name: str
    endpoint: str
    headers: dict[str, str]
    count: Callable[[], int]
    info: dict[str, Any]
    pid: int
    check: Callable[[], str] | None = None


@dataclass
class Measurement:
    target: str
    spans: int
    producers: int
    seconds: float
    stored_spans_per_second: float
    acked_seconds: float
    export_p50_ms: float
    export_p99_ms: float
    export_max_ms: float
    exports: int
    failed_exports: int
    complete: bool
    queryable: str
    cpu_seconds: dict[str, float]
    info: dict[str, Any]


def _run_producers(
    target: Target, spans: int, producers: int, batch_size: int, queue_size: int, timeout: float, stall: float
) -> Measurement:
    """Send ``spans`` spans from ``producers`` processes and wait until the target has committed them."""
    context = mp.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    start = context.Event()
    traces = max(1, spans // SPANS_PER_TRACE)
    shares = [traces // producers + (1 if i < traces % producers else 0) for i in range(producers)]
    baseline = target.count()
    expected = baseline + sum(shares) * SPANS_PER_TRACE
    processes = []
    for i, share in enumerate(shares):
        job = ProducerJob(
            index=i,
            endpoint=target.endpoint,
            headers=target.headers,
            traces=share,
            seed=random.randrange(1 << 30),
            batch_size=batch_size,
            queue_size=queue_size,
            timeout=30.0,
        )
        process = context.Process(target=produce, args=(job, ready, start, results), daemon=True)
        process.start()
        processes.append(process)
    reports: list[dict[str, Any]] = []
    try:
        for _ in processes:
            ready.get(timeout=120)
        machine_cpu0 = harness.machine_cpu_seconds()
        server_cpu0 = harness.cpu_seconds(target.pid)
        start.set()
        began = time.monotonic()
        deadline = began + timeout
        finished_at: float | None = None
        last_count, last_change = baseline, began
        stored = baseline
        while True:
            now = time.monotonic()
            with contextlib.suppress(queue.Empty):
                while True:
                    report = results.get_nowait()
                    if "error" in report:
                        raise RuntimeError(f"producer {report['index']}: {report['error']}")
                    reports.append(report)
            if len(reports) < len(processes):
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a producer process exited with status {dead[0].exitcode}")
            elif finished_at is None:
                finished_at = now
            stored = target.count()
            now = time.monotonic()
            if stored >= expected:
                break
            if stored != last_count:
                last_count, last_change = stored, now
            if now > deadline:
                harness.log(
                    f"  {target.name}: gave up after {timeout:.0f} s with {stored - baseline} spans stored"
                )
                break
            if finished_at is not None and now - max(last_change, finished_at) > stall:
                harness.log(f"  {target.name}: no new spans for {stall:.0f} s; {stored - baseline} stored")
                break
            # Counting costs the target a little CPU too: poll often enough for 1% resolution, no more.
            time.sleep(0.05 if finished_at is not None else 0.25)
        ended = time.monotonic()
        machine_cpu = harness.machine_cpu_seconds() - machine_cpu0
        server_cpu = harness.cpu_seconds(target.pid) - server_cpu0
    finally:
        start.set()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
    first = min((r["first"] for r in reports), default=began)
    latencies = [x for r in reports for x in r["latencies_ms"]]
    seconds = ended - first
    sent = stored - baseline
    complete = stored >= expected
    queryable = target.check() if (complete and target.check) else ""
    return Measurement(
        target=target.name,
        spans=sent,
        producers=producers,
        seconds=round(seconds, 3),
        stored_spans_per_second=round(sent / seconds, 1) if complete else float("nan"),
        acked_seconds=round(max((r["done"] for r in reports), default=ended) - first, 3),
        export_p50_ms=round(harness.percentile(latencies, 50), 2),
        export_p99_ms=round(harness.percentile(latencies, 99), 2),
        export_max_ms=round(max(latencies, default=float("nan")), 2),
        exports=len(latencies),
        failed_exports=sum(r["failed_exports"] for r in reports),
        complete=complete,
        queryable=queryable,
        cpu_seconds={
            "machine": round(machine_cpu, 2),
            "server": round(server_cpu, 2),
            "producers": round(sum(r["cpu_seconds"] for r in reports), 2),
        },
        info=target.info,
    )


def measure(target: Target, args: argparse.Namespace, spans: int) -> Measurement:
    """Warm the target up, then send ``spans`` spans ``args.repeat`` times; the median run counts."""
    harness.log(f"  {target.name}: warming up")
    _run_producers(target, 200, 1, args.batch_size, args.queue_size, timeout=120, stall=30)
    runs: list[Measurement] = []
    samples = harness.RESULTS / f"ingest-{target.name}.folded"
    with harness.py_spy_recording(args.py_spy, target.pid, samples, gil=not args.py_spy_all_threads):
        for _ in range(args.repeat):
            busy = harness.wait_for_quiet(args.quiet_wait, exclude=[target.pid])
            harness.log(f"  {target.name}: sending {spans} spans from {args.producers} producer process(es)")
            result = _run_producers(
                target, spans, args.producers, args.batch_size, args.queue_size, args.timeout, args.stall
            )
            result.info = {**target.info, "busy_cpus_before": busy}
            cpu = result.cpu_seconds
            harness.log(
                f"  {target.name}: {result.spans} spans stored in {result.seconds:.2f} s = "
                f"{result.stored_spans_per_second:,.0f} spans/s; export p50 {result.export_p50_ms:.1f} ms, "
                f"p99 {result.export_p99_ms:.1f} ms; CPU s: server {cpu['server']:.1f}, "
                f"producers {cpu['producers']:.1f}, whole machine {cpu['machine']:.1f}"
            )
            runs.append(result)
            if not result.complete:
                break
    runs.sort(key=lambda r: r.stored_spans_per_second if r.complete else -1.0)
    median = runs[len(runs) // 2] if all(r.complete for r in runs) else runs[0]
    median.info["runs_stored_spans_per_second"] = [r.stored_spans_per_second for r in runs]
    return median


@contextlib.contextmanager
def prodloop_target(backend: str, args: argparse.Namespace) -> Iterator[Target]:
    import sqlalchemy as sa

    with contextlib.ExitStack() as stack:
        database_url = None
        if backend == "postgresql":
            if not args.pg_url:
                raise SystemExit(
                    "--pg-url (or PRODLOOP_TEST_DATABASE_URL) is needed for the PostgreSQL backend"
                )
            database_url = stack.enter_context(harness.postgres_database(args.pg_url))
        extra_env = {}
        if args.sqlite_synchronous:
            extra_env["PRODLOOP_SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
        server = stack.enter_context(
            harness.prodloop_server(database_url, extra_env, executable=args.prodloop)
        )
        url = server.info["database_url"]
        engine = sa.create_engine(
            url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.NullPool
        )
        stack.callback(engine.dispose)
        key = server.info["key"]

        def count() -> int:
            with engine.connect() as connection:
                return int(connection.exec_driver_sql("SELECT count(*) FROM spans").scalar_one())

        def check() -> str:
            auth = {"Authorization": f"Bearer {key}"}
            status, body = harness.http_get(f"{server.url}/api/v1/traces?limit=1", auth, timeout=30)
            if status != 200:
                return f"GET /api/v1/traces answered {status}"
            page = json.loads(body)
            trace_id = page["traces"][0]["trace_id"]
            status, body = harness.http_get(f"{server.url}/api/v1/traces/{trace_id}", auth, timeout=30)
            if status != 200:
                return f"GET /api/v1/traces/{trace_id} answered {status}"
            return "ok"

        yield Target(
            name=f"prodloop-{backend}",
            endpoint=f"{server.url}/v1/traces",
            headers={"Authorization": f"Bearer {key}"},
            count=count,
            pid=server.process.pid,
            check=check,
            info={
                "store": harness.describe_url(url),
                "sqlite_synchronous": (args.sqlite_synchronous or "FULL (default)")
                if backend == "sqlite"
                else None,
                "version": _prodloop_version(),
            },
        )


def _prodloop_version() -> str:
    from prodloop import __version__

    return __version__


def ensure_phoenix(version: str | None) -> str:
    """Install Arize Phoenix into its own virtual environment (once); returns its version."""
    python = PHOENIX_VENV / "bin" / "python"
    probe = [str(python), "-c", "import phoenix; print(phoenix.__version__)"]
    if (PHOENIX_VENV / "bin" / "phoenix").exists():
        found = subprocess.run(probe, capture_output=True, text=True, timeout=120)
        if found.returncode == 0 and (version is None or found.stdout.strip() == version):
            return found.stdout.strip()
    harness.log(f"installing arize-phoenix into {PHOENIX_VENV} (a few minutes, once)")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PHOENIX_VENV)], check=True, timeout=300)
    requirement = f"arize-phoenix=={version}" if version else "arize-phoenix"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True, timeout=600)
    subprocess.run([str(python), "-m", "pip", "install", "-q", requirement], check=True, timeout=1800)
    return subprocess.run(probe, capture_output=True, text=True, timeout=120, check=True).stdout.strip()


@contextlib.contextmanager
def phoenix_target(args: argparse.Namespace) -> Iterator[Target]:
    version = ensure_phoenix(args.phoenix_version)
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-") as tmp:
        workdir = Path(tmp)
        port, grpc_port = harness.free_port(), harness.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        env.update(
            PHOENIX_WORKING_DIR=str(workdir),
            PHOENIX_HOST=harness.HOST,
            PHOENIX_PORT=str(port),
            PHOENIX_GRPC_PORT=str(grpc_port),
            PHOENIX_TELEMETRY_ENABLED="false",
            PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
        )
        command = [str(PHOENIX_VENV / "bin" / "phoenix"), "serve"]
        with harness.run_server("phoenix", command, env, port, workdir, "/healthz", timeout=300) as server:
            database = workdir / "phoenix.db"
            if not database.exists():
                raise RuntimeError(f"Phoenix made no {database}:\n{server.log_tail()}")

            def count() -> int:
                with contextlib.closing(
                    sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
                ) as db:
                    return int(db.execute("SELECT count(*) FROM spans").fetchone()[0])

            yield Target(
                name="phoenix-sqlite",
                endpoint=f"{server.url}/v1/traces",
                headers={},
                count=count,
                pid=server.process.pid,
                info={"store": "sqlite (PHOENIX_WORKING_DIR/phoenix.db)", "version": version},
            )


def _table(results: list[Measurement]) -> str:
    header = f"{'target':<20} {'spans':>8} {'seconds':>8} {'stored spans/s':>15} "
    header += f"{'export p50 ms':>14} {'p99 ms':>8}"
    lines = [header, "-" * len(header)]
    for r in results:
        rate = f"{r.stored_spans_per_second:,.0f}" if r.complete else "incomplete"
        lines.append(
            f"{r.target:<20} {r.spans:>8} {r.seconds:>8.2f} {rate:>15} "
            f"{r.export_p50_ms:>14.1f} {r.export_p99_ms:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=50_000, help="Spans sent to each prodloop backend.")
    parser.add_argument(
        "--phoenix-spans", type=int, default=5_000, help="Spans sent to Phoenix (it is slow)."
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="Comma-separated: sqlite, postgresql."
    )
    parser.add_argument("--skip-phoenix", action="store_true", help="Do not run Phoenix.")
    parser.add_argument("--phoenix-version", default=None, help="Pin arize-phoenix to this version.")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("PRODLOOP_TEST_DATABASE_URL"),
        help="PostgreSQL URL of a user that may create databases (default: PRODLOOP_TEST_DATABASE_URL).",
    )
    parser.add_argument(
        "--producers",
        type=int,
        default=2,
        help="Application processes exporting at once, each with its own SDK.",
    )
    parser.add_argument(
        "--prodloop", default=None, help="The prodloop executable (default: .venv/bin/prodloop)."
    )
    parser.add_argument(
        "--batch-size", type=int, default=512, help="BatchSpanProcessor max_export_batch_size."
    )
    parser.add_argument("--queue-size", type=int, default=2048, help="BatchSpanProcessor max_queue_size.")
    parser.add_argument(
        "--sqlite-synchronous",
        default=None,
        help="PRODLOOP_SQLITE_SYNCHRONOUS for the server (default: FULL).",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="Measurements per target; the median is reported."
    )
    parser.add_argument("--timeout", type=float, default=900, help="Most seconds one measurement may take.")
    parser.add_argument(
        "--stall", type=float, default=60, help="Give up when no span is stored for this long."
    )
    harness.add_common_options(parser, output="ingest.json")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}; use sqlite and/or postgresql")

    revision = harness.revision()  # before the servers start: the code they run
    results: list[Measurement] = []
    for backend in backends:
        harness.log(f"prodloop on {backend}")
        with prodloop_target(backend, args) as target:
            results.append(measure(target, args, args.spans))
    if not args.skip_phoenix:
        harness.log("Arize Phoenix on SQLite")
        with phoenix_target(args) as target:
            results.append(measure(target, args, args.phoenix_spans))

    by_name = {r.target: r for r in results}
    phoenix = by_name.get("phoenix-sqlite")
    ratios = {}
    if phoenix and phoenix.complete:
        for r in results:
            if r is not phoenix and r.complete:
                ratios[f"{r.target}/phoenix-sqlite"] = round(
                    r.stored_spans_per_second / phoenix.stored_spans_per_second, 1
                )
    targets: dict[str, Any] = {}
    sqlite_result = by_name.get("prodloop-sqlite")
    if sqlite_result:
        targets["sqlite_spans_per_second >= 5000"] = (
            sqlite_result.complete and sqlite_result.stored_spans_per_second >= TARGET_SPANS_PER_SECOND
        )
    if "prodloop-sqlite/phoenix-sqlite" in ratios:
        targets["sqlite ratio >= 10x phoenix"] = ratios["prodloop-sqlite/phoenix-sqlite"] >= TARGET_RATIO

    print()
    print(_table(results))
    for name, ratio in ratios.items():
        print(f"ratio {name}: {ratio:.1f}x")
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'MISSED'}")
    document = {
        "benchmark": "ingest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": harness.machine(),
        "revision": revision,
        "settings": {
            "spans": args.spans,
            "phoenix_spans": args.phoenix_spans,
            "producers": args.producers,
            "batch_size": args.batch_size,
            "queue_size": args.queue_size,
            "repeat": args.repeat,
            "spans_per_trace": SPANS_PER_TRACE,
            "exporter": "opentelemetry-exporter-otlp-proto-http OTLPSpanExporter (protobuf, no compression)",
        },
        "results": [asdict(r) for r in results],
        "ratios": ratios,
        "targets": targets,
    }
    path = harness.write_results(args.output, document)
    print(f"results written to {path}")
    return 0 if all(r.complete for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
