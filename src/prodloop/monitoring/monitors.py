"""Monitors in the store: create, replace, list, enable and disable.

A monitor's definition is stored as given (validated and normalised), so that each run can record the
exact definition that produced it. A scheduled monitor carries the time of its next run; workers
take due monitors from there (``prodloop.monitoring.jobs``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from prodloop.capture.queries import iso
from prodloop.errors import Conflict, NotFound
from prodloop.monitoring.checks import validate_checks
from prodloop.monitoring.definitions import MonitorDefinition, parse_definition
from prodloop.store import read_transaction, run_write
from prodloop.store.schema import alerts, monitor_runs, monitors


def _monitor_dict(row: Any, open_alerts: int = 0, last_run: Any = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "feature": row.feature,
        "enabled": row.enabled,
        "schedule_seconds": row.schedule_seconds,
        "next_run": iso(row.next_run_ns),
        "definition": row.definition,
        "created_at": iso(row.created_ns),
        "updated_at": iso(row.updated_ns),
        "open_alerts": open_alerts,
        "last_run": None
        if last_run is None
        else {
            "id": last_run.id,
            "status": last_run.status,
            "started_at": iso(last_run.started_ns),
            "as_of": iso(last_run.as_of_ns),
        },
    }


def monitor_row(connection: sa.Connection, project_id: int, monitor: str | int) -> Any:
    """The monitor named (or numbered) ``monitor``, or a 404 that says how to list them."""
    where = [monitors.c.project_id == project_id]
    if isinstance(monitor, int) or (isinstance(monitor, str) and monitor.isdigit()):
        where.append(monitors.c.id == int(monitor))
    else:
        where.append(monitors.c.name == monitor)
    row = connection.execute(sa.select(monitors).where(*where)).first()
    if row is None:
        raise NotFound(f"no monitor {monitor!r} in this project; `prodloop monitor ls` lists them")
    return row


def _values(definition: MonitorDefinition, now_ns: int) -> dict[str, Any]:
    schedule = int(definition.schedule.total_seconds()) if definition.schedule else None
    return {
        "feature": definition.feature,
        "definition": definition.to_document(),
        "schedule_seconds": schedule,
        # A new or changed schedule runs first at once; the worker then keeps the rhythm.
        "next_run_ns": now_ns if schedule and definition.enabled else None,
        "enabled": definition.enabled,
        "updated_ns": now_ns,
    }


def save_monitor(
    engine: sa.Engine, project_id: int, document: dict[str, Any], *, replace: bool = False
) -> tuple[dict[str, Any], bool]:
    """Store a monitor from its definition; returns ``(monitor, created)``.

    A monitor whose name exists is a 409 unless ``replace`` is set; then its definition is replaced
    (earlier runs keep the definition they ran with)."""
    definition = parse_definition(document)
    validate_checks(definition)
    now_ns = time.time_ns()

    def write(connection: sa.Connection) -> tuple[int, bool]:
        existing = connection.execute(
            sa.select(monitors.c.id).where(
                monitors.c.project_id == project_id, monitors.c.name == definition.name
            )
        ).scalar()
        values = _values(definition, now_ns)
        if existing is not None:
            if not replace:
                raise Conflict(
                    f"monitor {definition.name!r} exists; replace it with "
                    "`prodloop monitor create --replace` (PUT /api/v1/monitors/{name}) or pick another name",
                    {"monitor": definition.name},
                )
            connection.execute(sa.update(monitors).where(monitors.c.id == existing).values(**values))
            return existing, False
        inserted = connection.execute(
            sa.insert(monitors)
            .values(project_id=project_id, name=definition.name, created_ns=now_ns, **values)
            .returning(monitors.c.id)
        ).scalar_one()
        return inserted, True

    monitor_id, created = run_write(engine, write)
    return get_monitor(engine, project_id, monitor_id), created


def get_monitor(engine: sa.Engine, project_id: int, monitor: str | int) -> dict[str, Any]:
    with read_transaction(engine) as connection:
        row = monitor_row(connection, project_id, monitor)
        return _with_state(connection, [row])[0]


def list_monitors(engine: sa.Engine, project_id: int, feature: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(monitors).where(monitors.c.project_id == project_id)
    if feature is not None:
        query = query.where(monitors.c.feature == feature)
    with read_transaction(engine) as connection:
        rows = connection.execute(query.order_by(monitors.c.name)).all()
        return _with_state(connection, rows)


def _with_state(connection: sa.Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    ids = [row.id for row in rows]
    if not ids:
        return []
    open_counts: dict[int, int] = dict(
        connection.execute(
            sa.select(alerts.c.monitor_id, sa.func.count())
            .where(alerts.c.monitor_id.in_(ids), alerts.c.status != "resolved")
            .group_by(alerts.c.monitor_id)
        ).all()
    )
    latest = (
        sa.select(monitor_runs.c.monitor_id, sa.func.max(monitor_runs.c.id).label("run_id"))
        .where(monitor_runs.c.monitor_id.in_(ids))
        .group_by(monitor_runs.c.monitor_id)
        .subquery()
    )
    last_runs = {
        run.monitor_id: run
        for run in connection.execute(
            sa.select(
                monitor_runs.c.id,
                monitor_runs.c.monitor_id,
                monitor_runs.c.status,
                monitor_runs.c.started_ns,
                monitor_runs.c.as_of_ns,
            ).join(latest, latest.c.run_id == monitor_runs.c.id)
        )
    }
    return [_monitor_dict(row, open_counts.get(row.id, 0), last_runs.get(row.id)) for row in rows]


def set_monitor_enabled(
    engine: sa.Engine, project_id: int, monitor: str | int, enabled: bool
) -> dict[str, Any]:
    """Pause or resume a monitor; a resumed scheduled monitor runs at once."""
    now_ns = time.time_ns()

    def write(connection: sa.Connection) -> int:
        row = monitor_row(connection, project_id, monitor)
        document = {**row.definition, "enabled": enabled}
        connection.execute(
            sa.update(monitors)
            .where(monitors.c.id == row.id)
            .values(
                enabled=enabled,
                definition=document,
                next_run_ns=now_ns if enabled and row.schedule_seconds else None,
                updated_ns=now_ns,
            )
        )
        return int(row.id)

    return get_monitor(engine, project_id, run_write(engine, write))
