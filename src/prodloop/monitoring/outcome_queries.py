"""Outcome metrics in SQL: one value per trace, counts and quantiles per bucket, series for charts.

A metric (:mod:`prodloop.monitoring.outcome_metrics`) is computed per trace and aggregated per bucket
(hour or day of the trace's start) in SQL, on SQLite and PostgreSQL alike.

Everything is evaluated *as of* a time: a signal counts only if its ``timestamp_ns`` is at or before it,
so a backtest sees what a run on that day saw, late outcomes missing for the last days included. A
trace with several signals of one name counts once, with its latest value.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from prodloop.capture.queries import to_ns
from prodloop.monitoring.changepoints import Counts, Worse
from prodloop.monitoring.outcome_metrics import BUCKETS, OutcomeMetric, SliceFilter, outcome_metric
from prodloop.store import is_sqlite, read_transaction
from prodloop.store.schema import signals, spans, traces

#: Slice and breakdown names that mean a column of the trace; any other name is a root-span attribute.
TRACE_COLUMNS = ("release", "model", "provider")


# --------------------------------------------------------------------------------------------------
# SQL: one value per trace, counts per bucket


@dataclass(frozen=True)
class _Scope:
    project_id: int
    feature: str | None
    slice: SliceFilter
    until_ns: int
    as_of_ns: int
    since_ns: int | None = None
    group: str | None = None


def _root_span() -> sa.ColumnElement[bool]:
    return sa.and_(
        spans.c.project_id == traces.c.project_id,
        spans.c.trace_id == traces.c.trace_id,
        spans.c.span_id == traces.c.root_span_id,
    )


def _attribute_equals(name: str, value: str | bool | int | float) -> sa.ColumnElement[bool]:
    element = spans.c.attributes[name]
    if isinstance(value, bool):
        return element.as_boolean() == value
    if isinstance(value, int | float):
        return element.as_float() == float(value)
    return element.as_string() == value


def _observations(metric: OutcomeMetric, scope: _Scope) -> sa.Subquery:
    """One row per trace in scope with a value for ``metric``: ``trace_id, start_ns, grp, value``."""
    where: list[sa.ColumnElement[bool]] = [
        traces.c.project_id == scope.project_id,
        traces.c.start_ns < scope.until_ns,
    ]
    if scope.since_ns is not None:
        where.append(traces.c.start_ns >= scope.since_ns)
    if scope.feature is not None:
        where.append(traces.c.feature == scope.feature)
    for column in ("release", "model"):
        if (wanted := getattr(scope.slice, column)) is not None:
            where.append(traces.c[column] == wanted)
    where += [_attribute_equals(k, v) for k, v in scope.slice.attributes.items()]
    source: sa.FromClause = traces
    if scope.slice.attributes or (scope.group and scope.group not in TRACE_COLUMNS):
        source = traces.join(spans, _root_span())
    if scope.group is None:
        group: sa.ColumnElement[Any] = sa.null()
    elif scope.group in TRACE_COLUMNS:
        group = traces.c[scope.group]
    else:
        group = spans.c.attributes[scope.group].as_string()
    value: sa.ColumnElement[Any]
    same_trace = sa.and_(signals.c.project_id == traces.c.project_id, signals.c.trace_id == traces.c.trace_id)
    if metric.source == "signal":
        latest = sa.func.row_number().over(
            partition_by=signals.c.trace_id, order_by=(signals.c.timestamp_ns.desc(), signals.c.id.desc())
        )
        ranked = (
            sa.select(
                traces.c.trace_id, traces.c.start_ns, group.label("grp"),
                signals.c.value_num.label("v"), latest.label("rn"),
            )
            .select_from(source.join(signals, same_trace))
            .where(
                *where, signals.c.name == metric.signal, signals.c.value_num.is_not(None),
                signals.c.timestamp_ns <= scope.as_of_ns,
            )
            .subquery("ranked")
        )  # fmt: skip
        value = sa.case((ranked.c.v == 0, 1.0), else_=0.0) if metric.count_zero else ranked.c.v
        return (
            sa.select(ranked.c.trace_id, ranked.c.start_ns, ranked.c.grp, value.label("value"))
            .where(ranked.c.rn == 1)
            .subquery("obs")
        )
    if metric.source == "presence":
        has = sa.exists(
            sa.select(sa.literal(1)).where(
                same_trace, signals.c.name == metric.signal, signals.c.timestamp_ns <= scope.as_of_ns
            )
        )
        value = sa.case((has, 1.0), else_=0.0)
    elif metric.source == "errors":
        value = sa.case((traces.c.error_count > 0, 1.0), else_=0.0)
    else:
        value = sa.cast(traces.c.end_ns - traces.c.start_ns, sa.Float) / 1e6
    return (
        sa.select(traces.c.trace_id, traces.c.start_ns, group.label("grp"), value.label("value"))
        .select_from(source)
        .where(*where)
        .subquery("obs")
    )


def _bucket_counts(
    connection: sa.Connection, obs: sa.Subquery, size: int, phase: int, above: float | None = None
) -> dict[tuple[str | None, int], Counts]:
    """Counts per (group, bucket index); bucket ``i`` starts at ``phase + i * size`` ns. With
    ``above``, each observation counts as 1 when its value is above it (latency exceedance)."""
    index = ((obs.c.start_ns - sa.literal(phase, sa.BigInteger)) // sa.literal(size, sa.BigInteger)).label(
        "i"
    )
    value = obs.c.value if above is None else sa.case((obs.c.value > above, 1.0), else_=0.0)
    query = sa.select(
        obs.c.grp, index, sa.func.count(), sa.func.sum(value), sa.func.sum(value * value)
    ).group_by(obs.c.grp, index)
    return {
        (None if grp is None else str(grp), int(i)): Counts(int(n), float(total or 0), float(total_sq or 0))
        for grp, i, n, total, total_sq in connection.execute(query)
    }


def _quantiles(
    connection: sa.Connection, obs: sa.Subquery, q: float, size: int | None = None, phase: int = 0
) -> dict[tuple[str | None, int], float]:
    """The ``q`` quantile of ``obs.value`` per (group, bucket) (or per group, as bucket 0), interpolated
    linearly like PostgreSQL's ``percentile_cont`` and numpy's default."""
    index: sa.ColumnElement[Any] = sa.literal(0)
    if size is not None:
        index = (obs.c.start_ns - sa.literal(phase, sa.BigInteger)) // sa.literal(size, sa.BigInteger)
    if not is_sqlite(connection.engine):
        quantile = sa.func.percentile_cont(q).within_group(obs.c.value)
        query = sa.select(obs.c.grp, index.label("i"), quantile).group_by(obs.c.grp, sa.literal_column("i"))
        return {
            (None if g is None else str(g), int(i)): float(v)
            for g, i, v in connection.execute(query)
            if v is not None
        }
    values: dict[tuple[str | None, int], list[float]] = defaultdict(list)
    for g, i, v in connection.execute(sa.select(obs.c.grp, index.label("i"), obs.c.value)):
        values[None if g is None else str(g), int(i)].append(float(v))
    return {key: float(np.quantile(np.asarray(vs), q)) for key, vs in values.items()}


def _signal_is_binary(connection: sa.Connection, project_id: int, name: str) -> bool:
    other = connection.execute(
        sa.select(signals.c.id)
        .where(
            signals.c.project_id == project_id,
            signals.c.name == name,
            signals.c.value_num.is_not(None),
            signals.c.value_num.not_in([0.0, 1.0]),
        )
        .limit(1)
    ).first()
    return other is None


def _resolve(connection: sa.Connection, project_id: int, name: str, worse: Worse | None) -> OutcomeMetric:
    metric = outcome_metric(name, worse)
    if metric.kind == "mean" and _signal_is_binary(connection, project_id, metric.signal or ""):
        metric = replace(metric, kind="proportion", label=f"{metric.signal} rate", min_effect=0.03)
    return metric


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).isoformat()


def outcome_series(
    engine: sa.Engine,
    project_id: int,
    feature: str,
    metric: str = "handled_rate",
    *,
    since: datetime,
    until: datetime,
    as_of: datetime | None = None,
    bucket: Literal["hour", "day"] = "day",
    slice: SliceFilter | None = None,
    group_by: str | None = None,
) -> dict[str, Any]:
    """``metric`` per hour or day (UTC) of the traces started in ``[since, until)``, seen as of
    ``as_of`` (default: now): ``{"metric", "bucket", "points": [{"start", "end", "n", "value"[, "group"]}]}``.
    With ``group_by`` (a trace attribute, or release / model), one point per bucket and value."""
    size = BUCKETS[bucket]
    since_ns, until_ns = to_ns(since), to_ns(until)
    as_of_ns = to_ns(as_of) if as_of is not None else max(until_ns, to_ns(datetime.now(UTC)))
    with read_transaction(engine) as connection:
        m = _resolve(connection, project_id, metric, None)
        scope = _Scope(project_id, feature, slice or SliceFilter(), until_ns, as_of_ns, since_ns, group_by)
        obs = _observations(m, scope)
        quantiles: dict[tuple[str | None, int], float] = {}
        if m.kind == "quantile":
            assert m.quantile is not None
            quantiles = _quantiles(connection, obs, m.quantile, size)
        counts = _bucket_counts(connection, obs, size, 0)
    points = []
    first, last = since_ns // size, (until_ns - 1) // size
    keys = sorted(counts) if group_by else [(None, i) for i in range(first, last + 1)]
    for group, i in keys:
        c = counts.get((group, i), Counts())
        value = quantiles.get((group, i)) if m.kind == "quantile" else c.mean
        point: dict[str, Any] = {
            "start": _iso(i * size),
            "end": _iso((i + 1) * size),
            "n": c.n,
            "value": value,
        }
        if group_by:
            point["group"] = group
        points.append(point)
    return {"metric": m.to_dict(), "bucket": bucket, "group_by": group_by, "points": points}
