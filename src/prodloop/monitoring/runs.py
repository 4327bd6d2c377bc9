"""Running a monitor: its checks over the run's windows, the results stored, findings made alerts.

Each run stores the definition it ran with and every check's results, so that a run can be read (and
replayed) from its record. A check that fails is recorded as that check's failure; the other checks
still run and their findings still count, but alerts are resolved by themselves only after a run in
which every check succeeded.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from prodloop.capture.queries import iso, to_ns
from prodloop.errors import NotFound, ProdloopError
from prodloop.monitoring.alerts import notify, record_findings
from prodloop.monitoring.checks import CheckContext, validate_checks
from prodloop.monitoring.definitions import parse_definition, windows
from prodloop.monitoring.findings import Finding
from prodloop.monitoring.monitors import monitor_row
from prodloop.monitoring.routing import route_alert
from prodloop.store import read_transaction, run_write
from prodloop.store.schema import monitor_runs

log = logging.getLogger(__name__)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None: a run's record is JSON that every database accepts."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    return value


def run_monitor(
    engine: sa.Engine,
    project_id: int,
    monitor: str | int,
    *,
    as_of: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    route: bool = True,
) -> dict[str, Any]:
    """Run ``monitor`` once as of ``as_of`` (default: now) and return the stored run.

    New alerts are sent to the monitor's webhook, and routed to its queue when the monitor has a
    ``route`` (and ``route`` is left on)."""
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    with read_transaction(engine) as connection:
        row = monitor_row(connection, project_id, monitor)
    definition = parse_definition(row.definition)
    checks = validate_checks(definition)
    span = windows(definition, as_of)
    context = CheckContext(
        engine=engine,
        project_id=project_id,
        monitor=definition,
        as_of=as_of,
        current=span["current"],
        reference=span["reference"],
        reference_release=span["reference_release"],
        progress=progress,
    )
    started_ns = time.time_ns()
    results: list[dict[str, Any]] = []
    findings: list[Finding] = []
    errors: list[str] = []
    for position, (check, arguments) in enumerate(checks):
        record: dict[str, Any] = {"check": check.name, "arguments": arguments.model_dump(mode="json")}
        try:
            outcome = check.run(context, arguments)
        except Exception as error:  # a check's failure is the check's, never the whole run's
            message = (
                error.message if isinstance(error, ProdloopError) else f"{type(error).__name__}: {error}"
            )
            if not isinstance(error, ProdloopError):
                log.warning("check %s of monitor %s failed\n%s", check.name, row.name, traceback.format_exc())
            errors.append(f"checks.{position} ({check.name}) failed: {message}")
            record.update(status="failed", error=message)
        else:
            record.update(
                status="ok", results=outcome.results, findings=[f.to_dict() for f in outcome.findings]
            )
            findings.extend(outcome.findings)
        results.append(record)
    finished_ns = time.time_ns()
    run_record = _json_safe(
        {
            "window": {
                "current": [iso(to_ns(span["current"][0])), iso(to_ns(span["current"][1]))],
                "reference": [iso(to_ns(t)) for t in span["reference"]] if span["reference"] else None,
                "reference_release": span["reference_release"],
            },
            "checks": results,
        }
    )
    safe_findings = [
        Finding(f.key, f.title, f.severity, _json_safe(f.detail), _json_safe(f.slice)) for f in findings
    ]

    def write(connection: sa.Connection) -> tuple[int, dict[str, list[int]]]:
        run_id = connection.execute(
            sa.insert(monitor_runs)
            .values(
                project_id=project_id,
                monitor_id=row.id,
                status="failed" if errors else "ok",
                started_ns=started_ns,
                finished_ns=finished_ns,
                as_of_ns=to_ns(as_of),
                definition=row.definition,
                results=run_record,
                error="\n".join(errors) or None,
            )
            .returning(monitor_runs.c.id)
        ).scalar_one()
        changed = record_findings(
            connection,
            project_id,
            row.id,
            run_id,
            safe_findings,
            finished_ns,
            resolve_missing=definition.auto_resolve and not errors,
        )
        return run_id, changed

    run_id, changed = run_write(engine, write)
    notify(engine, project_id, changed["opened"], "alert.opened")
    notify(engine, project_id, changed["resolved"], "alert.resolved")
    routed = []
    if route and definition.route is not None:
        for alert_id in changed["opened"]:
            try:
                routed.append(
                    route_alert(
                        engine,
                        project_id,
                        alert_id,
                        definition.route.queue,
                        items=definition.route.items,
                        priority=definition.route.priority,
                        actor=f"monitor:{definition.name}",
                    )
                )
            except ProdloopError as error:  # a missing queue must not lose the run
                routed.append({"alert_id": alert_id, "error": error.message})
    run = get_run(engine, project_id, run_id)
    run["alerts"] = changed
    run["routed"] = routed
    return run


def _run_dict(row: Any, monitor_name: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "monitor_id": row.monitor_id,
        "monitor": monitor_name,
        "status": row.status,
        "started_at": iso(row.started_ns),
        "finished_at": iso(row.finished_ns),
        "seconds": round((row.finished_ns - row.started_ns) / 1e9, 3),
        "as_of": iso(row.as_of_ns),
        "definition": row.definition,
        "results": row.results,
        "error": row.error,
    }


def get_run(engine: sa.Engine, project_id: int, run_id: int) -> dict[str, Any]:
    with read_transaction(engine) as connection:
        row = connection.execute(
            sa.select(monitor_runs).where(
                monitor_runs.c.project_id == project_id, monitor_runs.c.id == run_id
            )
        ).first()
    if row is None:
        raise NotFound(f"no monitor run {run_id} in this project")
    return _run_dict(row)


def list_runs(
    engine: sa.Engine, project_id: int, monitor: str | int, limit: int = 50
) -> list[dict[str, Any]]:
    """The monitor's runs, newest first (results left out; read one run for them)."""
    with read_transaction(engine) as connection:
        row = monitor_row(connection, project_id, monitor)
        runs = connection.execute(
            sa.select(monitor_runs)
            .where(monitor_runs.c.monitor_id == row.id)
            .order_by(monitor_runs.c.id.desc())
            .limit(limit)
        ).all()
    return [
        {k: v for k, v in _run_dict(r, row.name).items() if k not in ("results", "definition")} for r in runs
    ]
