"""Feedback and outcome signals: stored, joined to their trace whenever both exist, and counted.

A signal names its trace by ``trace_id`` or by ``join_key``. One that arrives before its trace waits
with no trace id; :func:`prodloop.capture.traces.write_spans` attaches it when a trace with that join
key arrives. One that arrives days later is attached at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from prodloop.capture.queries import to_ns
from prodloop.capture.shapes import SignalBatchResult, SignalIn
from prodloop.capture.traces import fill_edit_distances, lock_join_keys, without_nul
from prodloop.store import dialect_insert, read_transaction, run_write
from prodloop.store.schema import signals, traces

_DAY_NS = 86_400 * 10**9


def numeric_value(signal: SignalIn) -> float | None:
    """The number that rates and means use: thumbs up 1, down 0; true 1, false 0; numbers as given."""
    value = signal.value
    if signal.name == "thumbs":
        return 1.0 if value == "up" else 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def record_signals(engine: sa.Engine, project_id: int, batch: Sequence[SignalIn]) -> SignalBatchResult:
    """Store a batch of signals in one transaction, joining each to its trace where it is known."""
    now_ns = time.time_ns()
    rows: list[dict[str, Any]] = []
    for s in batch:
        rows.append(
            {
                "project_id": project_id,
                "client_id": s.id,
                "trace_id": s.trace_id,
                "join_key": s.join_key,
                "kind": s.kind,
                "name": s.name,
                "value": without_nul(s.value),
                "value_num": numeric_value(s),
                "text": without_nul(s.text),
                "edit_distance": None,
                "user_id": s.user_id,
                "metadata": without_nul(s.metadata),
                "timestamp_ns": to_ns(s.timestamp) if s.timestamp else now_ns,
                "received_ns": now_ns,
            }
        )

    def write(connection: sa.Connection) -> tuple[list[Any], set[str]]:
        keys = {r["join_key"] for r in rows if r["trace_id"] is None}
        if keys:
            lock_join_keys(connection, project_id, sorted(keys))
            found = connection.execute(
                sa.select(traces.c.join_key, traces.c.trace_id).where(
                    traces.c.project_id == project_id, traces.c.join_key.in_(keys)
                )
            ).all()
            by_key = dict(found)
            for r in rows:
                if r["trace_id"] is None:
                    r["trace_id"] = by_key.get(r["join_key"])
        # Ids repeated inside one batch count once, like ids already stored.
        seen: set[str] = set()
        unique = []
        for r in rows:
            if r["client_id"] is not None:
                if r["client_id"] in seen:
                    continue
                seen.add(r["client_id"])
            unique.append(r)
        stmt = (
            dialect_insert(connection, signals)
            .on_conflict_do_nothing(index_elements=[signals.c.project_id, signals.c.client_id])
            .returning(signals.c.trace_id)
        )
        stored = connection.execute(stmt, unique).scalars().all()
        trace_ids = sorted({tid for tid in stored if tid is not None})
        known: set[str] = set()
        if trace_ids:
            known = set(
                connection.execute(
                    sa.select(traces.c.trace_id).where(
                        traces.c.project_id == project_id, traces.c.trace_id.in_(trace_ids)
                    )
                ).scalars()
            )
            if any(r["name"] == "edit" for r in unique):
                fill_edit_distances(connection, project_id, sorted(known))
        return list(stored), known

    stored, known = run_write(engine, write)
    joined = sum(1 for tid in stored if tid in known)
    return SignalBatchResult(
        accepted=len(stored), duplicates=len(rows) - len(stored), joined=joined, waiting=len(stored) - joined
    )


def _window(column: sa.ColumnElement[Any], since: datetime | None, until: datetime | None) -> list[Any]:
    clauses = []
    if since is not None:
        clauses.append(column >= to_ns(since))
    if until is not None:
        clauses.append(column < to_ns(until))
    return clauses


def _has(kind: str | None) -> sa.ColumnElement[bool]:
    clause = sa.and_(signals.c.project_id == traces.c.project_id, signals.c.trace_id == traces.c.trace_id)
    if kind is not None:
        clause = sa.and_(clause, signals.c.kind == kind)
    return sa.exists(sa.select(sa.literal(1)).where(clause))


def feature_coverage(
    engine: sa.Engine,
    project_id: int,
    feature: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """How much of a feature's traffic carries any signal at all, overall, per signal and per day.

    Explicit feedback usually covers about 1% of traces; this makes that number visible next to the
    implicit signals and outcomes that cover far more.
    """
    where = [
        traces.c.project_id == project_id,
        traces.c.feature == feature,
        *_window(traces.c.start_ns, since, until),
    ]
    flag = {
        name: sa.case((_has(kind), 1), else_=0)
        for name, kind in (
            ("explicit", "explicit"),
            ("implicit", "implicit"),
            ("outcome", "outcome"),
            ("any", None),
        )
    }
    day = (traces.c.start_ns // _DAY_NS).label("day")
    with read_transaction(engine) as connection:
        daily_rows = connection.execute(
            sa.select(
                day,
                sa.func.count().label("traces"),
                *(sa.func.sum(expr).label(name) for name, expr in flag.items()),
            )
            .where(*where)
            .group_by(day)
            .order_by(day)
        ).all()
        by_name = connection.execute(
            sa.select(
                signals.c.kind, signals.c.name, sa.func.count(sa.distinct(traces.c.trace_id)), sa.func.count()
            )
            .select_from(
                traces.join(
                    signals,
                    sa.and_(
                        signals.c.project_id == traces.c.project_id, signals.c.trace_id == traces.c.trace_id
                    ),
                )
            )
            .where(*where)
            .group_by(signals.c.kind, signals.c.name)
            .order_by(signals.c.kind, signals.c.name)
        ).all()
        unmatched = connection.execute(
            sa.select(sa.func.count())
            .select_from(
                signals.outerjoin(
                    traces,
                    sa.and_(
                        traces.c.project_id == signals.c.project_id, traces.c.trace_id == signals.c.trace_id
                    ),
                )
            )
            .where(signals.c.project_id == project_id, traces.c.trace_id.is_(None))
        ).scalar_one()
    total = sum(r.traces for r in daily_rows)

    def share(count: int, of: int) -> float:
        return count / of if of else 0.0

    counts = {name: sum(int(getattr(r, name) or 0) for r in daily_rows) for name in flag}
    return {
        "feature": feature,
        "since": since,
        "until": until,
        "traces": total,
        "with_explicit": counts["explicit"],
        "with_implicit": counts["implicit"],
        "with_outcome": counts["outcome"],
        "with_any": counts["any"],
        "explicit_share": share(counts["explicit"], total),
        "implicit_share": share(counts["implicit"], total),
        "outcome_share": share(counts["outcome"], total),
        "any_share": share(counts["any"], total),
        "signals_without_trace": unmatched,
        "by_signal": [
            {"kind": kind, "name": name, "traces": n_traces, "signals": n, "share": share(n_traces, total)}
            for kind, name, n_traces, n in by_name
        ],
        "daily": [
            {
                "date": (date(1970, 1, 1) + timedelta(days=int(r.day))).isoformat(),
                "traces": r.traces,
                **{f"{name}_share": share(int(getattr(r, name) or 0), r.traces) for name in flag},
            }
            for r in daily_rows
        ],
    }
