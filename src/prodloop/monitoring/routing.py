"""Closing the loop: an alert's slice goes to an annotation queue, with the alert linked on each item.

An alert's slice names the traces that drive it: ranked trace ids (the domain classifier's most
confident rows, the members of a new cluster, the failed outcomes of a degraded segment), optionally
with a stratum for each (cluster, attribute value), or else a filter (feature, time window, release,
root-span attributes). Routing takes the most telling candidates and samples them stratified, so that
each stratum is represented in proportion (and every stratum at least once while the sample allows).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from prodloop.annotation import ItemIn, add_items, get_queue
from prodloop.annotation.queues import sample_traces
from prodloop.capture.queries import to_ns, trace_summaries
from prodloop.errors import ValidationFailed
from prodloop.monitoring.alerts import _alert_row, _event
from prodloop.store import read_transaction, run_write
from prodloop.store.schema import alerts, spans, traces

#: How many of the most telling traces a ranked slice offers for each item asked for.
CANDIDATES_PER_ITEM = 3


def _day(start_ns: int) -> str:
    return datetime.fromtimestamp(start_ns / 1e9, UTC).date().isoformat()


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def slice_traces(
    engine: sa.Engine, project_id: int, slice_: dict[str, Any], limit: int | None = None
) -> list[dict[str, Any]]:
    """The traces of an alert slice, most telling first, each with a ``stratum``."""
    strata = slice_.get("strata") or {}
    ranked = slice_.get("trace_ids")
    if ranked:
        chosen = list(dict.fromkeys(ranked))[:limit] if limit else list(dict.fromkeys(ranked))
        summaries = trace_summaries(engine, project_id, chosen)
        found = []
        for trace_id in chosen:
            summary = summaries.get(trace_id)
            if summary is not None:
                start = summary.get("start_time") or ""
                found.append({**summary, "stratum": strata.get(trace_id, str(start)[:10])})
        return found
    where: list[sa.ColumnElement[bool]] = [traces.c.project_id == project_id]
    if slice_.get("feature"):
        where.append(traces.c.feature == slice_["feature"])
    if (since := _time(slice_.get("since"))) is not None:
        where.append(traces.c.start_ns >= to_ns(since))
    if (until := _time(slice_.get("until"))) is not None:
        where.append(traces.c.start_ns < to_ns(until))
    if slice_.get("release"):
        where.append(traces.c.release == slice_["release"])
    query = sa.select(traces.c.trace_id, traces.c.start_ns)
    attributes: dict[str, Any] = slice_.get("attributes") or {}
    if attributes:
        root = sa.and_(
            spans.c.project_id == traces.c.project_id,
            spans.c.trace_id == traces.c.trace_id,
            spans.c.span_id == traces.c.root_span_id,
        )
        query = query.join(spans, root)
        for name, value in attributes.items():
            where.append(spans.c.attributes[name].as_string() == str(value))
    query = query.where(*where).order_by(traces.c.start_ns.desc(), traces.c.trace_id.desc())
    if limit:
        query = query.limit(limit)
    with read_transaction(engine) as connection:
        rows = connection.execute(query).all()
    summaries = trace_summaries(engine, project_id, [row.trace_id for row in rows])
    return [
        {**summaries[row.trace_id], "stratum": strata.get(row.trace_id, _day(row.start_ns))}
        for row in rows
        if row.trace_id in summaries
    ]


def route_alert(
    engine: sa.Engine,
    project_id: int,
    alert_id: int,
    queue: str | int,
    *,
    items: int = 50,
    priority: int = 0,
    actor: str | None = None,
) -> dict[str, Any]:
    """Add a stratified sample of ``items`` traces from the alert's slice to ``queue``, each item
    linked to the alert; the alert records where its slice went. Routing again adds only traces
    not in the queue yet."""
    with read_transaction(engine) as connection:
        alert = _alert_row(connection, project_id, alert_id)
    sent = send_slice(
        engine,
        project_id,
        alert.slice,
        queue,
        items=items,
        priority=priority,
        source="alert",
        alert_id=alert_id,
    )
    now_ns = time.time_ns()

    def write(connection: sa.Connection) -> None:
        connection.execute(
            sa.update(alerts)
            .where(alerts.c.id == alert_id)
            .values(
                queue_id=sent["queue_id"],
                routed_items=sa.func.coalesce(alerts.c.routed_items, 0) + sent["added"],
                routed_ns=now_ns,
            )
        )
        _event(
            connection,
            alert_id,
            "routed",
            now_ns,
            actor,
            queue=sent["queue"],
            added=sent["added"],
            skipped=sent["skipped"],
            strata=sent["strata"][:50],
        )

    run_write(engine, write)
    return {"alert_id": alert_id, **{k: v for k, v in sent.items() if k != "queue_id"}}


def send_slice(
    engine: sa.Engine,
    project_id: int,
    slice_: dict[str, Any],
    queue: str | int,
    *,
    items: int = 50,
    priority: int = 0,
    source: str = "alert",
    alert_id: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Add a stratified sample of ``items`` of the slice's traces to ``queue``: of its most telling
    candidates when it ranks them, of all its traces otherwise. Traces already in the queue are
    skipped. Returns ``{"queue", "queue_id", "added", "skipped", "candidates", "strata"}``."""
    if items < 1:
        raise ValidationFailed(f"send at least 1 item, got {items}", {"items": items})
    target = get_queue(engine, project_id, queue)
    ranked = bool(slice_.get("trace_ids"))
    candidates = slice_traces(
        engine, project_id, slice_, limit=items * CANDIDATES_PER_ITEM if ranked else None
    )
    if not candidates:
        raise ValidationFailed(f"the slice holds no traces to send (slice: {slice_})", {"slice": slice_})
    # By default an alert's sample is seeded by the alert: routing it again picks the same traces.
    chosen = sample_traces(
        candidates, items, "stratified", "stratum", seed=seed if seed is not None else alert_id or 0
    )
    result = add_items(
        engine,
        project_id,
        target["id"],
        [
            ItemIn(trace_id=t["trace_id"], input=t["input"], output=t["output"], priority=priority)
            for t in chosen
        ],
        source=source,
        alert_id=alert_id,
    )
    return {
        "queue": target["name"],
        "queue_id": target["id"],
        "added": result["added"],
        "skipped": result["skipped"],
        "candidates": len(candidates),
        "strata": sorted({str(t["stratum"]) for t in chosen}),
    }
