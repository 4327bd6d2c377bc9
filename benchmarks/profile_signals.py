"""What one ``POST /api/v1/signals`` of one signal costs, without the network and without contention.

Stores some traces, then calls the route's work in this process, one request at a time:
``record_signals`` alone (the store's part), and the whole app through ``httpx.ASGITransport``
(routing, authentication, JSON and Pydantic, the thread pool), on SQLite and on PostgreSQL
(``--pg-url``). The difference between the two is the web stack's share. ``--cprofile`` prints the
top functions of the ``record_signals`` loop.

    .venv/bin/python benchmarks/profile_signals.py --pg-url "$PRODLOOP_TEST_DATABASE_URL"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import secrets
import time
from collections.abc import Iterator
from typing import Any

import harness


@contextlib.contextmanager
def app_and_store(backend: str, pg_url: str | None) -> Iterator[tuple[Any, Any, int, str]]:
    from prodloop.server import create_app
    from prodloop.server.auth import create_api_key, ensure_project
    from prodloop.settings import Settings

    with harness.scratch_store(backend, pg_url) as engine:
        key = create_api_key(engine, "default", "admin")
        settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
        yield create_app(engine, settings), engine, ensure_project(engine, "default"), key


def _signals(trace_ids: list[str], n: int) -> list[dict[str, Any]]:
    rng = random.Random(3)
    return [
        {
            "id": f"p-{i}-{secrets.token_hex(4)}",
            "trace_id": rng.choice(trace_ids),
            "kind": "explicit",
            "name": "thumbs",
            "value": "up",
        }
        for i in range(n)
    ]


def run(backend: str, pg_url: str | None, requests: int, profile: bool, top: int) -> None:
    import httpx

    from prodloop.capture import SignalIn, TraceIn, ingest_traces, record_signals

    with app_and_store(backend, pg_url) as (app, engine, project_id, key):
        traces = [
            TraceIn.model_validate({"name": "chat turn", "input": "hi", "output": "hello"})
            for _ in range(1000)
        ]
        trace_ids = ingest_traces(engine, project_id, traces)["trace_ids"]
        direct = [SignalIn.model_validate(s) for s in _signals(trace_ids, requests)]
        record_signals(engine, project_id, direct[:1])
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        t0 = time.perf_counter()
        for signal in direct[1:]:
            record_signals(engine, project_id, [signal])
        store_ms = (time.perf_counter() - t0) * 1000 / (requests - 1)
        if profiler:
            profiler.disable()

        bodies = [json.dumps({"signals": [s]}).encode() for s in _signals(trace_ids, requests)]

        async def through_app() -> float:
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", headers=headers
            ) as client:
                (await client.post("/api/v1/signals", content=bodies[0])).raise_for_status()
                t0 = time.perf_counter()
                for body in bodies[1:]:
                    (await client.post("/api/v1/signals", content=body)).raise_for_status()
                return (time.perf_counter() - t0) * 1000 / (requests - 1)

        app_ms = asyncio.run(through_app())
    print(
        f"{backend}: record_signals {store_ms:.2f} ms/request; whole app in-process {app_ms:.2f} ms/request "
        f"(web stack and client ≈ {app_ms - store_ms:.2f} ms)"
    )
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(top)
        print(text.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--pg-url", default=os.environ.get("PRODLOOP_TEST_DATABASE_URL"))
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for backend in (b.strip() for b in args.backends.split(",") if b.strip()):
        if backend == "postgresql" and not args.pg_url:
            print("postgresql: skipped (no --pg-url)")
            continue
        run(backend, args.pg_url, args.requests, args.cprofile, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
