"""Alerts: raised from findings, deduplicated, with a lifecycle, webhooks, and a route into a queue.

A finding whose key matches an alert of the same monitor that is not resolved adds an occurrence to
that alert instead of raising another (a unique index holds this under concurrent runs too). An alert
is ``open``, then ``acknowledged`` by a person, then ``resolved`` by a person or, when the monitor
resolves by itself, by the first run that no longer finds its problem. Every change is an event.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import sqlalchemy as sa

from prodloop.capture.queries import iso
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.monitoring.findings import Finding
from prodloop.store import read_transaction, run_write
from prodloop.store.schema import alert_events, alerts, monitors, queues

log = logging.getLogger(__name__)

STATUSES = ("open", "acknowledged", "resolved")
WEBHOOK_TIMEOUT_SECONDS = 5.0


def alert_dict(row: Any, monitor_name: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "monitor_id": row.monitor_id,
        "monitor": monitor_name,
        "key": row.key,
        "status": row.status,
        "severity": row.severity,
        "title": row.title,
        "detail": row.detail,
        "slice": row.slice,
        "occurrences": row.occurrences,
        "first_run_id": row.first_run_id,
        "last_run_id": row.last_run_id,
        "opened_at": iso(row.opened_ns),
        "last_seen_at": iso(row.last_seen_ns),
        "acknowledged_at": iso(row.acknowledged_ns),
        "acknowledged_by": row.acknowledged_by,
        "resolved_at": iso(row.resolved_ns),
        "resolved_by": row.resolved_by,
        "queue_id": row.queue_id,
        "routed_items": row.routed_items,
        "routed_at": iso(row.routed_ns),
    }


def _event(
    connection: sa.Connection, alert_id: int, kind: str, at_ns: int, actor: str | None, **detail: Any
) -> None:
    connection.execute(
        sa.insert(alert_events).values(alert_id=alert_id, kind=kind, actor=actor, at_ns=at_ns, detail=detail)
    )


def record_findings(
    connection: sa.Connection,
    project_id: int,
    monitor_id: int,
    run_id: int,
    findings: list[Finding],
    now_ns: int,
    *,
    resolve_missing: bool,
) -> dict[str, list[int]]:
    """Turn a run's findings into alerts, inside the run's write transaction.

    Returns the ids of alerts ``opened``, ``seen`` again and ``resolved`` (when ``resolve_missing``,
    the monitor's unresolved alerts whose key this run did not find)."""
    outcome: dict[str, list[int]] = {"opened": [], "seen": [], "resolved": []}
    unresolved = {
        row.key: row
        for row in connection.execute(
            sa.select(alerts).where(alerts.c.monitor_id == monitor_id, alerts.c.status != "resolved")
        )
    }
    by_key: dict[str, Finding] = {}
    for finding in findings:  # two findings with one key in a run: the first (most severe) wins
        by_key.setdefault(finding.key, finding)
    for key, finding in by_key.items():
        existing = unresolved.get(key)
        values = {
            "severity": finding.severity,
            "title": finding.title,
            "detail": finding.detail,
            "slice": finding.slice,
            "last_run_id": run_id,
            "last_seen_ns": now_ns,
        }
        if existing is not None:
            connection.execute(
                sa.update(alerts)
                .where(alerts.c.id == existing.id)
                .values(occurrences=alerts.c.occurrences + 1, **values)
            )
            _event(connection, existing.id, "seen", now_ns, None, run_id=run_id)
            outcome["seen"].append(existing.id)
            continue
        alert_id = connection.execute(
            sa.insert(alerts)
            .values(
                project_id=project_id,
                monitor_id=monitor_id,
                key=key,
                status="open",
                occurrences=1,
                first_run_id=run_id,
                opened_ns=now_ns,
                **values,
            )
            .returning(alerts.c.id)
        ).scalar_one()
        _event(connection, alert_id, "opened", now_ns, None, run_id=run_id)
        outcome["opened"].append(alert_id)
    if resolve_missing:
        for key, row in unresolved.items():
            if key not in by_key:
                connection.execute(
                    sa.update(alerts)
                    .where(alerts.c.id == row.id)
                    .values(status="resolved", resolved_ns=now_ns, resolved_by="monitor")
                )
                _event(
                    connection, row.id, "resolved", now_ns, "monitor", run_id=run_id, reason="not found again"
                )
                outcome["resolved"].append(row.id)
    return outcome


def _alert_query(project_id: int) -> sa.Select[Any]:
    return (
        sa.select(alerts, monitors.c.name.label("monitor_name"))
        .join(monitors, monitors.c.id == alerts.c.monitor_id)
        .where(alerts.c.project_id == project_id)
    )


def _alert_row(connection: sa.Connection, project_id: int, alert_id: int) -> Any:
    row = connection.execute(_alert_query(project_id).where(alerts.c.id == alert_id)).first()
    if row is None:
        raise NotFound(f"no alert {alert_id} in this project; `prodloop alert ls` lists them")
    return row


def list_alerts(
    engine: sa.Engine,
    project_id: int,
    *,
    status: str | None = None,
    monitor: str | None = None,
    feature: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Alerts, newest first; ``status`` may be ``open``, ``acknowledged``, ``resolved`` or
    ``unresolved`` (open or acknowledged)."""
    query = _alert_query(project_id)
    if status == "unresolved":
        query = query.where(alerts.c.status != "resolved")
    elif status is not None:
        if status not in STATUSES:
            raise ValidationFailed(
                f"status {status!r} is not one of {', '.join((*STATUSES, 'unresolved'))}", {"status": status}
            )
        query = query.where(alerts.c.status == status)
    if monitor is not None:
        query = query.where(monitors.c.name == monitor)
    if feature is not None:
        query = query.where(monitors.c.feature == feature)
    with read_transaction(engine) as connection:
        rows = connection.execute(query.order_by(alerts.c.opened_ns.desc(), alerts.c.id.desc()).limit(limit))
        return [alert_dict(row, row.monitor_name) for row in rows]


def get_alert(engine: sa.Engine, project_id: int, alert_id: int) -> dict[str, Any]:
    """One alert with its events (oldest first) and the queue its slice went to."""
    with read_transaction(engine) as connection:
        row = _alert_row(connection, project_id, alert_id)
        events = connection.execute(
            sa.select(alert_events).where(alert_events.c.alert_id == alert_id).order_by(alert_events.c.id)
        ).all()
        queue_name = None
        if row.queue_id is not None:
            queue_name = connection.execute(
                sa.select(queues.c.name).where(queues.c.id == row.queue_id)
            ).scalar()
    return {
        **alert_dict(row, row.monitor_name),
        "queue": queue_name,
        "events": [
            {"kind": e.kind, "actor": e.actor, "at": iso(e.at_ns), "detail": e.detail} for e in events
        ],
    }


def _transition(
    engine: sa.Engine, project_id: int, alert_id: int, to: str, actor: str, note: str | None
) -> int:
    now_ns = time.time_ns()

    def write(connection: sa.Connection) -> int:
        row = _alert_row(connection, project_id, alert_id)
        if row.status == "resolved":
            raise Conflict(f"alert {alert_id} is resolved already", {"status": row.status})
        if to == "acknowledged" and row.status == "acknowledged":
            return int(row.monitor_id)
        values: dict[str, Any] = {"status": to}
        if to == "acknowledged":
            values.update(acknowledged_ns=now_ns, acknowledged_by=actor)
        else:
            values.update(resolved_ns=now_ns, resolved_by=actor)
        connection.execute(sa.update(alerts).where(alerts.c.id == alert_id).values(**values))
        _event(connection, alert_id, to, now_ns, actor, **({"note": note} if note else {}))
        return int(row.monitor_id)

    return run_write(engine, write)


def acknowledge_alert(
    engine: sa.Engine, project_id: int, alert_id: int, actor: str, note: str | None = None
) -> dict[str, Any]:
    """Someone is looking at it: the alert stays until resolved, and later runs add occurrences."""
    _transition(engine, project_id, alert_id, "acknowledged", actor, note)
    alert = get_alert(engine, project_id, alert_id)
    notify(engine, project_id, [alert_id], "alert.acknowledged")
    return alert


def resolve_alert(
    engine: sa.Engine, project_id: int, alert_id: int, actor: str, note: str | None = None
) -> dict[str, Any]:
    """Close the alert; if the problem is found again, a new alert opens."""
    _transition(engine, project_id, alert_id, "resolved", actor, note)
    alert = get_alert(engine, project_id, alert_id)
    notify(engine, project_id, [alert_id], "alert.resolved")
    return alert


def notify(engine: sa.Engine, project_id: int, alert_ids: list[int], event: str) -> None:
    """POST each alert to its monitor's webhook, if it has one, and record how that went.

    A webhook that fails or times out is recorded on the alert and never fails the run or the request
    that caused it."""
    if not alert_ids:
        return
    with read_transaction(engine) as connection:
        rows = connection.execute(
            _alert_query(project_id)
            .add_columns(monitors.c.definition.label("monitor_definition"))
            .where(alerts.c.id.in_(alert_ids))
        ).all()
    sent = []
    for row in rows:
        url = (row.monitor_definition or {}).get("webhook")
        if not url:
            continue
        body = {"event": event, "alert": alert_dict(row, row.monitor_name)}
        try:
            response = httpx.post(url, json=body, timeout=WEBHOOK_TIMEOUT_SECONDS)
            result: dict[str, Any] = {"event": event, "status": response.status_code}
        except httpx.HTTPError as error:
            log.warning("webhook for alert %s failed: %s", row.id, error)
            result = {"event": event, "error": f"{type(error).__name__}: {error}"}
        sent.append((row.id, result))
    if sent:
        now_ns = time.time_ns()

        def write(connection: sa.Connection) -> None:
            for alert_id, result in sent:
                _event(connection, alert_id, "webhook", now_ns, None, **result)

        run_write(engine, write)
