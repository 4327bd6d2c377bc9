"""Scheduled monitors, run by ``prodloop worker``.

On every tick each worker asks :func:`enqueue_due_monitors` for due monitors. Moving a monitor's next
run forward is a compare-and-set on the time it had, so when several workers look at once exactly one
of them enqueues the run; the job's dedup key makes a second enqueue of the same slot a no-op as well.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from prodloop.jobs import JobContext, enqueue, register_handler, register_scheduler
from prodloop.monitoring.runs import run_monitor
from prodloop.store import read_transaction, run_write
from prodloop.store.schema import monitors

RUN_KIND = "monitor.run"


def run_monitor_job(context: JobContext) -> dict[str, Any]:
    """Run the monitor named in the job; the result is a summary of the stored run."""
    payload = context.payload
    if context.project_id is None:
        raise ValueError("a monitor.run job needs a project")
    as_of = datetime.fromisoformat(payload["as_of"]) if payload.get("as_of") else datetime.now(UTC)
    run = run_monitor(context.engine, context.project_id, int(payload["monitor_id"]), as_of=as_of)
    return {
        "run_id": run["id"],
        "status": run["status"],
        "alerts": run["alerts"],
        "routed": run["routed"],
        "error": run["error"],
    }


def enqueue_due_monitors(engine: sa.Engine, now_ns: int) -> int:
    """Enqueue a run of every enabled monitor whose next run is due; returns how many."""
    with read_transaction(engine) as connection:
        due = connection.execute(
            sa.select(
                monitors.c.id, monitors.c.project_id, monitors.c.next_run_ns, monitors.c.schedule_seconds
            )
            .where(
                monitors.c.enabled.is_(True),
                monitors.c.next_run_ns.is_not(None),
                monitors.c.next_run_ns <= now_ns,
            )
            .order_by(monitors.c.next_run_ns)
            .limit(100)
        ).all()
    enqueued = 0
    for monitor in due:
        step = int(monitor.schedule_seconds) * 10**9
        # The next slot after now, so a worker that was down for a while runs a monitor once, not
        # once for every slot it missed.
        following = monitor.next_run_ns + step * max(1, (now_ns - monitor.next_run_ns) // step + 1)

        def advance(connection: sa.Connection, m: Any = monitor, nxt: int = following) -> int | None:
            """Move the monitor to its next slot and enqueue this one, in one transaction."""
            moved = connection.execute(
                sa.update(monitors)
                .where(monitors.c.id == m.id, monitors.c.next_run_ns == m.next_run_ns)
                .values(next_run_ns=nxt)
            )
            if moved.rowcount != 1:
                return None  # another worker took this slot
            return enqueue(
                connection,
                RUN_KIND,
                {"monitor_id": m.id},
                project_id=m.project_id,
                dedup_key=f"monitor:{m.id}:{m.next_run_ns}",
            )

        enqueued += run_write(engine, advance) is not None
    return enqueued


register_handler(RUN_KIND, run_monitor_job)
register_scheduler("monitors", enqueue_due_monitors)
