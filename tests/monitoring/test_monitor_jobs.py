"""Scheduled monitors run by workers: the schedule enqueues each slot once however many workers look,
and real ``prodloop worker`` processes run a real outcome monitor on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from prodloop.capture import SignalIn, TraceIn, ingest_traces, record_signals
from prodloop.jobs import list_jobs, run_worker
from prodloop.monitoring import get_monitor, list_alerts, list_runs, save_monitor
from prodloop.monitoring.jobs import enqueue_due_monitors
from prodloop.server.auth import ensure_project
from prodloop.store.schema import monitors
from tests.monitoring.support import FakeCheck, finding


def _due_now(engine: sa.Engine, name: str) -> int:
    """Make the monitor due (its next run one second ago); returns that time."""
    due = int((datetime.now(UTC) - timedelta(seconds=1)).timestamp()) * 10**9
    with engine.begin() as connection:
        connection.execute(sa.update(monitors).where(monitors.c.name == name).values(next_run_ns=due))
    return due


def test_each_slot_is_enqueued_once_by_racing_schedulers(engine: sa.Engine, fake: FakeCheck) -> None:
    pid = ensure_project(engine, "shop")
    save_monitor(
        engine, pid, {"name": "hourly", "feature": "f", "schedule": "1h", "checks": [{"type": "fake"}]}
    )
    due = _due_now(engine, "hourly")
    counts: list[int] = []
    now_ns = due + 2 * 10**9
    threads = [
        threading.Thread(target=lambda: counts.append(enqueue_due_monitors(engine, now_ns))) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 1
    jobs = list_jobs(engine, kind="monitor.run")
    assert len(jobs) == 1 and jobs[0]["payload"] == {"monitor_id": get_monitor(engine, pid, "hourly")["id"]}
    # The next slot is an hour after the one taken, and nothing more is due now.
    assert get_monitor(engine, pid, "hourly")["next_run"] is not None
    with engine.connect() as connection:
        assert connection.execute(sa.select(monitors.c.next_run_ns)).scalar_one() == due + 3600 * 10**9
    assert enqueue_due_monitors(engine, now_ns) == 0

    fake.plan = [finding()]
    stats = run_worker(engine, once=True, poll_seconds=0.01)
    assert stats.done == 1
    runs = list_runs(engine, pid, "hourly")
    assert len(runs) == 1 and runs[0]["status"] == "ok"
    assert [a["key"] for a in list_alerts(engine, pid)] == ["outcome:handled_rate"]


def test_a_paused_monitor_is_not_scheduled(engine: sa.Engine, fake: FakeCheck) -> None:
    pid = ensure_project(engine, "shop")
    save_monitor(
        engine,
        pid,
        {"name": "paused", "feature": "f", "schedule": "1h", "enabled": False, "checks": [{"type": "fake"}]},
    )
    assert get_monitor(engine, pid, "paused")["next_run"] is None
    assert enqueue_due_monitors(engine, 2**62) == 0


def _outcome_store(engine: sa.Engine, pid: int, now: datetime) -> None:
    """20 days of a feature whose handled rate falls from 80% to 40% in the last 3 days."""
    traces, signals = [], []
    for day in range(20):
        for n in range(40):
            trace_id = f"{day + 1:04x}{n + 1:028x}"
            start = now - timedelta(days=20 - day) + timedelta(minutes=10 * n)
            traces.append(
                TraceIn(trace_id=trace_id, feature="support", input="q", output="a", start_time=start)
            )
            handled = n % 10 < (4 if day >= 17 else 8)
            signals.append(
                SignalIn(
                    trace_id=trace_id,
                    kind="outcome",
                    name="resolved",
                    value=handled,
                    timestamp=start + timedelta(hours=1),
                )
            )
    ingest_traces(engine, pid, traces)
    record_signals(engine, pid, signals)


def test_worker_processes_run_a_scheduled_outcome_monitor(engine: sa.Engine) -> None:
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    pid = ensure_project(engine, "default")
    _outcome_store(engine, pid, now)
    save_monitor(
        engine,
        pid,
        {
            "name": "handled",
            "feature": "support",
            "schedule": "1d",
            "reference": {"window": "14d"},
            "current": {"window": "3d"},
            "checks": [{"type": "outcome", "metric": "handled_rate", "min_samples": 50}],
        },
    )
    _due_now(engine, "handled")
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PRODLOOP_WORKER_POLL_SECONDS": "0.05"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "prodloop", "worker", "--db", url, "--once", "--name", f"w{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    runs = list_runs(engine, pid, "handled")
    assert len(runs) == 1, outputs  # two workers, one run
    assert runs[0]["status"] == "ok", runs[0]["error"]
    alerts = list_alerts(engine, pid)
    assert [a["key"] for a in alerts] == ["outcome:handled_rate"]
    assert "handled rate" in alerts[0]["title"]
    jobs = list_jobs(engine, kind="monitor.run")
    assert [j["status"] for j in jobs] == ["done"] and jobs[0]["worker"] in ("w0", "w1")
