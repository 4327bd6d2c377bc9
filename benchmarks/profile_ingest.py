"""Where the time of one OTLP export goes on the server, step by step, without HTTP.

Makes the same GenAI chat-turn spans as ``ingest.py`` with the OpenTelemetry SDK, encodes them in
batches as the OTLP exporter does, and then runs the server's ingest path on them in this process:
``parse_request`` → ``span_records`` → ``write_spans``, timing each step per batch, on a fresh
SQLite store (and PostgreSQL with ``--pg-url``). ``--cprofile`` prints the top functions.

    .venv/bin/python benchmarks/profile_ingest.py --spans 20000
    .venv/bin/python benchmarks/profile_ingest.py --cprofile --pg-url "$PRODLOOP_TEST_DATABASE_URL"
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import time
from collections.abc import Iterator
from typing import Any

import harness
import ingest


class _Collect:
    """A queue stand-in for ``ingest.produce``'s results and ready signals, in one process."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, item: Any) -> None:
        self.items.append(item)


class _Go:
    def wait(self, timeout: float | None = None) -> bool:
        return True


def encoded_batches(spans: int, batch_size: int) -> list[bytes]:
    """OTLP protobuf bodies of ``batch_size`` spans each, as the SDK's exporter would send them."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    bodies: list[bytes] = []
    original = trace_exporter.OTLPSpanExporter.export

    def capture(self: Any, batch: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        bodies.append(encode_spans(batch).SerializePartialToString())
        return SpanExportResult.SUCCESS

    trace_exporter.OTLPSpanExporter.export = capture  # type: ignore[method-assign,assignment]
    try:
        job = ingest.ProducerJob(
            index=0,
            endpoint="http://127.0.0.1:9/v1/traces",
            headers={},
            traces=spans // ingest.SPANS_PER_TRACE,
            seed=7,
            batch_size=batch_size,
            queue_size=max(2048, batch_size * 4),
            timeout=30.0,
        )
        out = _Collect()
        ingest.produce(job, _Collect(), _Go(), out)
    finally:
        trace_exporter.OTLPSpanExporter.export = original  # type: ignore[method-assign]
    return bodies


@contextlib.contextmanager
def store(backend: str, pg_url: str | None) -> Iterator[Any]:
    from prodloop.server.auth import ensure_project

    with harness.scratch_store(backend, pg_url) as engine:
        yield engine, ensure_project(engine, "default")


def run(backend: str, bodies: list[bytes], pg_url: str | None, profile: bool, top: int) -> dict[str, float]:
    from prodloop.capture import encode_response, parse_request, span_records, write_spans
    from prodloop.capture.otlp import PROTOBUF

    totals = {"parse_request": 0.0, "span_records": 0.0, "write_spans": 0.0, "encode_response": 0.0}
    spans = 0
    profiler = cProfile.Profile() if profile else None
    with store(backend, pg_url) as (engine, project_id):
        # One warm-up batch so that first-call costs (statement compilation, connections) are not counted.
        write_spans(engine, project_id, span_records(parse_request(bodies[0], PROTOBUF))[0])
        if profiler:
            profiler.enable()
        for body in bodies[1:]:
            t0 = time.perf_counter()
            request = parse_request(body, PROTOBUF)
            t1 = time.perf_counter()
            records, _ = span_records(request)
            t2 = time.perf_counter()
            write_spans(engine, project_id, records)
            t3 = time.perf_counter()
            encode_response(0, "", PROTOBUF)
            t4 = time.perf_counter()
            totals["parse_request"] += t1 - t0
            totals["span_records"] += t2 - t1
            totals["write_spans"] += t3 - t2
            totals["encode_response"] += t4 - t3
            spans += len(records)
        if profiler:
            profiler.disable()
    total = sum(totals.values())
    print(
        f"\n{backend}: {spans} spans in {len(bodies) - 1} batches, {total:.2f} s "
        f"= {spans / total:,.0f} spans/s"
    )
    for step, seconds in totals.items():
        print(f"  {step:<16} {seconds * 1e6 / spans:8.1f} µs/span  {100 * seconds / total:5.1f} %")
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(top)
        print(text.getvalue())
    return {"spans_per_second": spans / total, **{k: v * 1e6 / spans for k, v in totals.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--pg-url", default=os.environ.get("PRODLOOP_TEST_DATABASE_URL"))
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--cprofile", action="store_true", help="Print the functions that take the most time."
    )
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    bodies = encoded_batches(args.spans, args.batch_size)
    made = time.perf_counter() - t0
    size = sum(map(len, bodies)) / len(bodies)
    print(
        f"client side: made and encoded {args.spans} spans in {made:.2f} s "
        f"({made * 1e6 / args.spans:.0f} µs/span); {len(bodies)} bodies of {size / 1024:.0f} KiB on average"
    )
    for backend in (b.strip() for b in args.backends.split(",") if b.strip()):
        if backend == "postgresql" and not args.pg_url:
            print("postgresql: skipped (no --pg-url)")
            continue
        run(backend, bodies, args.pg_url, args.cprofile, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
