"""Concurrent clients against a real server: signals racing their traces are all joined, and a
signal sent twice at once is stored once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import sqlalchemy as sa

from prodloop.store.schema import signals, traces
from tests.conftest import LiveServer, auth

CLIENTS = 16
TICKETS = 120


def test_signals_racing_their_traces_are_all_joined(
    engine: sa.Engine, live_server: LiveServer, admin_key: str
) -> None:
    limits = httpx.Limits(max_connections=CLIENTS)
    client = httpx.Client(base_url=live_server.url, headers=auth(admin_key), timeout=60, limits=limits)

    def send_trace(i: int) -> int:
        body = {"traces": [{"feature": "race", "join_key": f"T-{i}", "input": f"q{i}", "output": f"a{i}"}]}
        return client.post("/api/v1/traces", json=body).status_code

    def send_signal(i: int) -> int:
        # Every outcome is sent twice with the same id, by two clients at once.
        signal = {
            "id": f"o-{i}",
            "join_key": f"T-{i}",
            "kind": "outcome",
            "name": "resolved",
            "value": i % 2 == 0,
        }
        return client.post("/api/v1/signals", json={"signals": [signal]}).status_code

    jobs = []
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        for i in range(TICKETS):
            jobs.append(pool.submit(send_signal, i))
            jobs.append(pool.submit(send_trace, i))
            jobs.append(pool.submit(send_signal, i))
        statuses = [job.result() for job in jobs]
    client.close()
    assert set(statuses) == {200}

    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(signals.c.client_id, signals.c.trace_id, signals.c.join_key)
        ).all()
        trace_by_key = dict(connection.execute(sa.select(traces.c.join_key, traces.c.trace_id)).all())
    assert len(stored) == TICKETS, "a signal sent twice at once was stored twice"
    unjoined = [key for _, trace_id, key in stored if trace_id is None]
    assert unjoined == [], f"signals left without their trace: {unjoined[:5]}"
    assert all(trace_id == trace_by_key[key] for _, trace_id, key in stored)
