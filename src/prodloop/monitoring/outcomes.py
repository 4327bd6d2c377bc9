"""Outcome monitors: what users and the business say about a feature, over time, and when it got worse.

A metric is computed per trace and aggregated per bucket (hour or day of the trace's start) in SQL, on
SQLite and PostgreSQL alike:

``handled_rate``
    share of traces whose latest ``resolved`` outcome is true, among traces that have one;
``escalation_rate``
    the same for ``escalated``; ``thumbs_down_rate``: share of thumbs that are down;
``signal:NAME``
    the mean of a signal's numeric value (a share when its values are all 0 and 1), among traces
    that have it; ``signal_rate:NAME``: share of traces that have signal NAME at all (copy, regenerate);
``error_rate``, ``latency_p50``, ``latency_p95``
    from the traces themselves, so that a page can show them staying flat while outcomes fall.

Everything is evaluated *as of* a time: a signal counts only if its ``timestamp_ns`` is at or before it,
so a backtest sees what a run on that day saw, late outcomes missing for the last days included. A
trace with several signals of one name counts once, with its latest value.

:func:`evaluate_outcome` is the one entry point that monitor runs call: the current window against its
reference (:func:`prodloop.monitoring.changepoints.window_test`), a CUSUM over the last days
(:func:`prodloop.monitoring.changepoints.cusum`), optionally a breakdown by a trace attribute that says
where the change is, and :class:`~prodloop.monitoring.findings.Finding` s for alerts. Latency quantiles are
tested as the share of traces slower than the reference's quantile (a quantile moves exactly when that
share does), so every metric is tested as a proportion or a mean. Defaults and their reasons:
``docs/monitoring.md``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from prodloop.capture.queries import to_ns
from prodloop.errors import ValidationFailed
from prodloop.monitoring.changepoints import (
    Counts,
    CusumResult,
    WindowTest,
    Worse,
    cusum,
    laney_sigma_z,
    mean_standard_errors,
    proportion_standard_errors,
    rank_segments,
    window_test,
    worse_by,
)
from prodloop.monitoring.definitions import Duration, Reference
from prodloop.monitoring.findings import Finding
from prodloop.store import is_sqlite, read_transaction
from prodloop.store.schema import signals, spans, traces

BUCKETS: dict[str, int] = {"hour": 3600 * 10**9, "day": 86_400 * 10**9}
#: Slice and breakdown names that mean a column of the trace; any other name is a root-span attribute.
TRACE_COLUMNS = ("release", "model", "provider")
#: Which direction is worse for signals that prodloop and its demo know by name.
WORSE_BY_SIGNAL: dict[str, Worse] = {
    "resolved": "lower", "csat": "lower", "rating": "lower", "copy": "lower", "thumbs": "lower",
    "escalated": "higher", "regenerate": "higher", "abandon": "higher", "correction": "higher",
    "edit": "higher",
}  # fmt: skip


@dataclass(frozen=True)
class OutcomeMetric:
    """What a metric measures, how it is tested, and which direction is worse."""

    name: str
    label: str
    #: proportion: 0/1 per trace; mean: a number per trace; quantile: latency, tested as exceedance.
    kind: Literal["proportion", "mean", "quantile"]
    worse: Worse
    #: signal: the trace's latest value of ``signal``; presence: whether it has ``signal``;
    #: errors: whether the trace failed; latency: its duration in milliseconds.
    source: Literal["signal", "presence", "errors", "latency"]
    signal: str | None = None
    #: For thumbs: a down vote (value 0) is the event counted.
    count_zero: bool = False
    quantile: float | None = None
    #: Smallest change worth an alert, in the metric's units (shares for proportions and quantiles);
    #: None: 0.2 standard deviations of the reference (for means).
    min_effect: float | None = 0.03

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "kind": self.kind, "worse": self.worse}


BUILTIN_METRICS: dict[str, OutcomeMetric] = {
    m.name: m
    for m in (
        OutcomeMetric("handled_rate", "handled rate", "proportion", "lower", "signal", "resolved"),
        OutcomeMetric("escalation_rate", "escalation rate", "proportion", "higher", "signal", "escalated"),
        OutcomeMetric("thumbs_down_rate", "thumbs-down rate", "proportion", "higher", "signal", "thumbs",
                      count_zero=True),
        OutcomeMetric("error_rate", "error rate", "proportion", "higher", "errors", min_effect=0.01),
        OutcomeMetric("latency_p50", "latency p50", "quantile", "higher", "latency", quantile=0.5,
                      min_effect=0.05),
        OutcomeMetric("latency_p95", "latency p95", "quantile", "higher", "latency", quantile=0.95,
                      min_effect=0.02),
    )
}  # fmt: skip


def outcome_metric(name: str, worse: Worse | None = None) -> OutcomeMetric:
    """The metric called ``name`` (a built-in, ``signal:NAME`` or ``signal_rate:NAME``); ``worse``
    overrides its direction. A ``signal:`` metric is a mean until :func:`evaluate_outcome` finds its
    values are all 0 and 1."""
    if name in BUILTIN_METRICS:
        metric = BUILTIN_METRICS[name]
    else:
        prefix, _, signal = name.partition(":")
        if prefix not in ("signal", "signal_rate") or not signal:
            known = ", ".join([*BUILTIN_METRICS, "signal:NAME", "signal_rate:NAME"])
            raise ValidationFailed(f"no outcome metric {name!r}; the metrics are: {known}", {"metric": name})
        direction = worse or WORSE_BY_SIGNAL.get(signal)
        if direction is None:
            raise ValidationFailed(
                f"prodloop does not know whether more or less {signal!r} is worse: "
                "set worse to lower or higher",
                {"metric": name},
            )
        if prefix == "signal":
            metric = OutcomeMetric(
                name, f"mean {signal}", "mean", direction, "signal", signal, min_effect=None
            )
        else:
            metric = OutcomeMetric(name, f"{signal} rate", "proportion", direction, "presence", signal)
    return replace(metric, worse=worse) if worse else metric


# --------------------------------------------------------------------------------------------------
# What a check asks for


class SliceFilter(BaseModel):
    """Which traces: a release, a model, and root-span attributes that must equal the given values."""

    model_config = ConfigDict(extra="forbid")

    release: str | None = None
    model: str | None = None
    attributes: dict[str, str | bool | int | float] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return self.release is None and self.model is None and not self.attributes

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("release", self.release), ("model", self.model)) if v is not None]
        parts += [f"{k}={v}" for k, v in sorted(self.attributes.items())]
        return ",".join(parts)


class CusumSettings(BaseModel):
    """The CUSUM over the last ``window`` of buckets, against the reference just before that window.

    ``k`` (allowance) and ``h`` (decision interval) are in standard errors: with 0.5 and 5 a stable
    metric alarms about once in 930 buckets (one-sided, Montgomery table 9.3) and a shift of one
    standard error is caught in about 10 buckets, two in about 4."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    k: float = Field(default=0.5, ge=0)
    h: float = Field(default=5.0, gt=0)
    window: Duration = timedelta(days=7)
    #: The reference must hold at least this many buckets with data, or the CUSUM waits.
    min_reference_buckets: int = Field(default=7, ge=3)


class OutcomeArguments(BaseModel):
    """An outcome check's own arguments (a monitor supplies feature, reference and current window)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = "handled_rate"
    #: Which direction is worse, where the metric's own is not right (or not known).
    worse: Worse | None = None
    bucket: Literal["hour", "day"] = "day"
    alpha: float = Field(default=0.005, gt=0, lt=1)
    #: Smallest change that alerts; None: the metric's default (3 points for outcome rates).
    min_effect: float | None = Field(default=None, ge=0)
    #: Fewer observations than this in the current window or the reference: no test.
    min_samples: int = Field(default=100, ge=1)
    cusum: CusumSettings = Field(default_factory=CusumSettings)
    slice: SliceFilter = Field(default_factory=SliceFilter)
    #: A trace attribute (``support.route``, ``release``) to break the change down by.
    breakdown: str | None = Field(default=None, min_length=1, max_length=200)
    #: How many affected trace ids a finding carries for routing, most telling first.
    max_trace_ids: int = Field(default=200, ge=0, le=10_000)

    @model_validator(mode="after")
    def _known_metric(self) -> OutcomeArguments:
        try:
            outcome_metric(self.metric, self.worse)
        except ValidationFailed as error:
            raise ValueError(error.message) from None
        return self


class OutcomeCheck(OutcomeArguments):
    """Everything :func:`evaluate_outcome` needs: which feature, compared with what, how."""

    feature: str = Field(min_length=1, max_length=200)
    reference: Reference = Field(default_factory=lambda: Reference(window=timedelta(days=14)))
    #: The current window, ending at the run's time.
    current: Duration = timedelta(days=2)

    @model_validator(mode="after")
    def _whole_buckets(self) -> OutcomeCheck:
        size = timedelta(microseconds=BUCKETS[self.bucket] // 1000)
        spans_ = {
            "current": self.current,
            "cusum.window": self.cusum.window,
            "reference.window": self.reference.window,
        }
        for name, value in spans_.items():
            if value is not None and (value < size or value % size):
                raise ValueError(f"{name} must be a whole number of {self.bucket}s (the bucket), got {value}")
        return self


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


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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


# --------------------------------------------------------------------------------------------------
# Evaluation: the window test, the CUSUM, the breakdown, findings

#: A breakdown value needs this many observations in the current window (and its reference) for a test.
BREAKDOWN_MIN_SAMPLES = 20
#: A context of this many days is shown before the windows when the reference is not a sliding window.
_CONTEXT = timedelta(days=14)


@dataclass(frozen=True)
class OutcomeResult:
    """What one evaluation saw: the series for charts, the tests, the breakdown and the findings."""

    check: OutcomeCheck
    metric: OutcomeMetric
    as_of: datetime
    series: list[dict[str, Any]]
    current: dict[str, Any]
    reference: dict[str, Any]
    window_test: WindowTest
    cusum: dict[str, Any]
    breakdown: list[dict[str, Any]] | None
    findings: list[Finding]

    @property
    def alerts(self) -> list[Finding]:
        """The findings (the name the monitor contracts use)."""
        return self.findings

    @property
    def status(self) -> str:
        """``degraded`` (a finding), ``ok``, or ``insufficient_data`` (no test could be made)."""
        if self.findings:
            return "degraded"
        if self.window_test.skipped and self.cusum.get("skipped"):
            return "insufficient_data"
        return "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "metric": self.metric.to_dict(),
            "check": self.check.model_dump(mode="json"),
            "as_of": self.as_of.isoformat(),
            "series": self.series,
            "current": self.current,
            "reference": self.reference,
            "window_test": self.window_test.to_dict(),
            "cusum": self.cusum,
            "breakdown": self.breakdown,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class _Plan:
    """Bucket indices of one evaluation: bucket ``i`` is ``[phase + i size, phase + (i + 1) size)``."""

    size: int
    phase: int
    end: int  # the first bucket after as_of
    current: int  # buckets in the current window
    cusum: int  # buckets in the CUSUM window (0: no CUSUM)
    shown: int  # buckets in the series

    def start(self, index: int) -> int:
        return self.phase + index * self.size

    def index_at(self, ns: int) -> int:
        """The first bucket starting at or after ``ns``."""
        return -((self.phase - ns) // self.size)


def _buckets(value: timedelta, size: int) -> int:
    return round(value.total_seconds() * 10**9) // size


def _total(
    counts: dict[tuple[str | None, int], Counts], lo: int, hi: int, group: str | None = None
) -> Counts:
    return Counts.sum([c for (g, i), c in counts.items() if g == group and lo <= i < hi])


def _groups(counts: dict[tuple[str | None, int], Counts]) -> set[str | None]:
    return {g for g, _ in counts}


def _span(value: timedelta) -> str:
    """``day``, ``2 days``, ``hour``, ``6 hours``."""
    hours = round(value.total_seconds() / 3600)
    count, unit = (hours // 24, "day") if hours % 24 == 0 else (hours, "hour")
    return unit if count == 1 else f"{count} {unit}s"


def _fmt(metric: OutcomeMetric, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if metric.kind != "mean" else f"{value:.3g}"


def evaluate_outcome(
    engine: sa.Engine, project_id: int, check: OutcomeCheck, as_of: datetime
) -> OutcomeResult:
    """Evaluate ``check`` as a run at ``as_of`` would: only traces started and signals received by
    then count. Returns the series, the window test, the CUSUM, the breakdown and the findings."""
    as_of = _aware(as_of)
    as_of_ns = to_ns(as_of)
    size = BUCKETS[check.bucket]
    phase = as_of_ns % size
    end = (as_of_ns - phase) // size
    current = _buckets(check.current, size)
    window = _buckets(check.cusum.window, size) if check.cusum.enabled else 0
    ref = check.reference
    context = _buckets(ref.window if ref.window is not None else _CONTEXT, size)
    plan = _Plan(size, phase, end, current, window, max(current, window) + context)
    scope = _Scope(project_id, check.feature, check.slice, as_of_ns, as_of_ns, plan.start(end - plan.shown))
    current_start = plan.start(end - current)
    if ref.window is not None:
        ref_scope = None
    elif ref.release is not None:
        release_slice = check.slice.model_copy(update={"release": ref.release})
        last = end - min(current, window) if window else end - current
        ref_scope = replace(scope, slice=release_slice, since_ns=None, until_ns=plan.start(last))
    else:
        assert ref.since is not None and ref.until is not None
        if to_ns(ref.until) > current_start:
            raise ValidationFailed(
                f"the reference ends at {_aware(ref.until).isoformat()}, after the current window starts "
                f"({_iso(current_start)}): choose a reference that ends before the window",
                {"reference": ref.model_dump(mode="json")},
            )
        ref_scope = replace(scope, since_ns=to_ns(ref.since), until_ns=to_ns(ref.until))
    with read_transaction(engine) as connection:
        metric = _resolve(connection, project_id, check.metric, check.worse)
        evaluation = _Evaluation(connection, check, metric, plan, scope, ref_scope, as_of_ns)
        return evaluation.run(as_of)


class _Evaluation:
    """The queries and tests of one :func:`evaluate_outcome` call, on one read transaction."""

    def __init__(
        self,
        connection: sa.Connection,
        check: OutcomeCheck,
        metric: OutcomeMetric,
        plan: _Plan,
        scope: _Scope,
        ref_scope: _Scope | None,
        as_of_ns: int,
    ) -> None:
        self.connection, self.check, self.metric, self.plan = connection, check, metric, plan
        self.scope, self.ref_scope, self.as_of_ns = scope, ref_scope, as_of_ns
        self.threshold: float | None = None
        if metric.kind == "quantile":
            assert metric.quantile is not None
            obs = _observations(metric, self._window_ref_scope())
            self.threshold = _quantiles(connection, obs, metric.quantile).get((None, 0))
        self.main = self._counts(scope)
        self.ref = self.main if ref_scope is None else self._counts(ref_scope)

    # ------------------------------------------------------------------ windows

    def _window_ref_scope(self) -> _Scope:
        """The reference of the window test alone (a release's traces stop where the window starts)."""
        p = self.plan
        if self.ref_scope is not None:
            return replace(self.ref_scope, until_ns=min(self.ref_scope.until_ns, p.start(p.end - p.current)))
        lo, hi = self._ref_range()
        return replace(self.scope, since_ns=p.start(lo), until_ns=p.start(hi))

    def _ref_range(self, first: int | None = None) -> tuple[int, int]:
        """Bucket range of the reference for a window whose first bucket is ``first``."""
        p = self.plan
        first = p.end - p.current if first is None else first
        ref = self.check.reference
        if ref.window is not None:
            return first - _buckets(ref.window, p.size), first
        if ref.release is not None:
            return -(2**62), first
        return -(2**62), 2**62  # a fixed reference: all of it

    def _counts(self, scope: _Scope) -> dict[tuple[str | None, int], Counts]:
        above = None
        if self.metric.kind == "quantile":
            above = self.threshold if self.threshold is not None else 1e300
        obs = _observations(self.metric, scope)
        return _bucket_counts(self.connection, obs, self.plan.size, self.plan.phase, above)

    @property
    def min_effect(self) -> float:
        if self.check.min_effect is not None:
            return self.check.min_effect
        if self.metric.min_effect is not None:
            return self.metric.min_effect
        sd = _total(self.ref, *self._ref_range()).sd  # means: 0.2 standard deviations of the reference
        return 0.2 * sd if sd is not None else 0.0

    # ------------------------------------------------------------------ tests

    def _window_test(self, current: Counts, reference: Counts, min_samples: int) -> WindowTest:
        return window_test(
            current,
            reference,
            kind="mean" if self.metric.kind == "mean" else "proportion",
            worse=self.metric.worse,
            alpha=self.check.alpha,
            min_effect=self.min_effect,
            min_samples=min_samples,
        )

    def _cusum(self) -> tuple[dict[str, Any], CusumResult | None, int]:
        p, settings = self.plan, self.check.cusum
        if not p.cusum:
            return {"skipped": "the CUSUM is off"}, None, p.end
        first = p.end - p.cusum
        if self.ref_scope is not None and self.check.reference.until is not None:
            first = max(first, p.index_at(self.ref_scope.until_ns))
        lo, hi = self._ref_range(first)
        ref_buckets = sorted((i, c) for (g, i), c in self.ref.items() if g is None and lo <= i < hi and c.n)
        total = Counts.sum([c for _, c in ref_buckets])
        target = total.mean
        skipped = None
        if len(ref_buckets) < settings.min_reference_buckets or total.n < self.check.min_samples:
            skipped = (
                f"the reference holds {total.n} observations in {len(ref_buckets)} {self.check.bucket}s; the "
                f"CUSUM needs {self.check.min_samples} in at least {settings.min_reference_buckets}"
            )
        elif target is None or (self.metric.kind != "mean" and target in (0.0, 1.0)) or not total.sd:
            skipped = "the reference does not vary, so there is no standard error to measure change in"
        if skipped:
            return {"skipped": skipped, "n_reference": total.n}, None, first
        assert target is not None and total.sd is not None
        sd0, p0 = total.sd, target
        period = [_total(self.main, i, i + 1) for i in range(first, p.end)]

        def errors(ns: list[int], dispersion: float) -> list[float | None]:
            if self.metric.kind == "mean":
                return mean_standard_errors(ns, sd0, dispersion)
            return proportion_standard_errors(ns, p0, dispersion)

        ref_values = [c.mean for _, c in ref_buckets]
        dispersion = laney_sigma_z(ref_values, errors([c.n for _, c in ref_buckets], 1.0))
        result = cusum(
            [c.mean for c in period],
            errors([c.n for c in period], dispersion),
            float(target),
            worse=self.metric.worse,
            k=settings.k,
            h=settings.h,
            min_effect=self.min_effect,
        )
        run = Counts.sum(period[result.onset :]) if result.onset is not None else Counts()
        summary = result.to_dict()
        for step, c, i in zip(summary["steps"], period, range(first, p.end), strict=True):
            step.update(start=_iso(p.start(i)), n=c.n)
        summary.update(
            skipped=None,
            dispersion=dispersion,
            n_reference=total.n,
            reference_since=_iso(p.start(ref_buckets[0][0])),
            reference_until=_iso(p.start(ref_buckets[-1][0] + 1)),
            onset_time=_iso(p.start(first + result.onset)) if result.onset is not None else None,
            run_value=run.mean,
            run_effect=worse_by(run.mean, target, self.metric.worse) if run.mean is not None else None,
        )
        return summary, result, first

    def _breakdown(self, lo: int, hi: int) -> list[dict[str, Any]]:
        """The current window against the reference per value of the breakdown attribute (a value new in
        the window is compared with the whole reference): :func:`~prodloop.monitoring.changepoints.
        rank_segments`."""
        attribute = self.check.breakdown
        assert attribute is not None
        main = self._counts(replace(self.scope, group=attribute))
        ref = main if self.ref_scope is None else self._counts(replace(self.ref_scope, group=attribute))
        overall = _total(self.ref, lo, hi)
        p = self.plan
        segments = []
        for group in sorted(_groups(main) | _groups(ref), key=str):
            cur = _total(main, p.end - p.current, p.end, group)
            own = _total(ref, lo, hi, group)
            if cur.n:
                segments.append((group, cur, own if own.n else overall, not own.n))
        rows = rank_segments(
            segments,
            kind="mean" if self.metric.kind == "mean" else "proportion",
            worse=self.metric.worse,
            alpha=self.check.alpha,
            min_effect=self.min_effect,
            min_samples=BREAKDOWN_MIN_SAMPLES,
        )
        return [{"attribute": attribute, **row} for row in rows]

    # ------------------------------------------------------------------ the run

    def run(self, as_of: datetime) -> OutcomeResult:
        p, check, metric = self.plan, self.check, self.metric
        lo, hi = self._ref_range()
        cur, ref = _total(self.main, p.end - p.current, p.end), _total(self.ref, lo, hi)
        test = self._window_test(cur, ref, check.min_samples)
        cusum_summary, cusum_result, cusum_first = self._cusum()
        breakdown = self._breakdown(lo, hi) if check.breakdown else None
        current = {
            "since": _iso(p.start(p.end - p.current)),
            "until": _iso(self.as_of_ns),
            "n": cur.n,
            "value": cur.mean,
        }
        reference = self._reference_summary(ref, lo, hi)
        findings = []
        if test.alert or (cusum_result is not None and cusum_result.alert):
            findings.append(self._finding(test, cusum_summary, cusum_result, cusum_first, breakdown))
        return OutcomeResult(
            check, metric, as_of, self._series(), current, reference, test, cusum_summary, breakdown, findings
        )

    def _reference_summary(self, ref: Counts, lo: int, hi: int) -> dict[str, Any]:
        spec = self.check.reference
        used = sorted(i for (g, i), c in self.ref.items() if g is None and lo <= i < hi and c.n)
        summary: dict[str, Any] = {
            "kind": "window"
            if spec.window is not None
            else "release"
            if spec.release is not None
            else "fixed",
            "release": spec.release,
            "since": _iso(self.plan.start(used[0])) if used else None,
            "until": _iso(self.plan.start(used[-1] + 1)) if used else None,
            "n": ref.n,
            "value": ref.mean,
        }
        if self.metric.kind == "quantile":
            summary["threshold_ms"] = self.threshold
        return summary

    def _series(self) -> list[dict[str, Any]]:
        p = self.plan
        quantiles: dict[tuple[str | None, int], float] = {}
        if self.metric.kind == "quantile":
            assert self.metric.quantile is not None
            quantiles = _quantiles(
                self.connection, _observations(self.metric, self.scope), self.metric.quantile, p.size, p.phase
            )
        points = []
        ref_lo, ref_hi = self._ref_range() if self.ref_scope is None else (0, 0)
        for i in range(p.end - p.shown, p.end):
            c = _total(self.main, i, i + 1)
            part = "current" if i >= p.end - p.current else "reference" if ref_lo <= i < ref_hi else None
            point: dict[str, Any] = {
                "start": _iso(p.start(i)),
                "end": _iso(p.start(i + 1)),
                "n": c.n,
                "part": part,
            }
            if self.metric.kind == "quantile":
                point.update(value=quantiles.get((None, i)), share_above=c.mean)
            else:
                point["value"] = c.mean
            points.append(point)
        return points

    def _finding(
        self,
        test: WindowTest,
        cusum_summary: dict[str, Any],
        cusum_result: CusumResult | None,
        cusum_first: int,
        breakdown: list[dict[str, Any]] | None,
    ) -> Finding:
        p, check, metric = self.plan, self.check, self.metric
        starts, effects = [], []
        if test.alert:
            starts.append(p.start(p.end - p.current))
            effects.append(test.effect or 0.0)
        if cusum_result is not None and cusum_result.alert and cusum_result.onset is not None:
            starts.append(p.start(cusum_first + cusum_result.onset))
            effects.append(cusum_summary["run_effect"] or 0.0)
        since_ns = min(starts)
        severity = "critical" if self.min_effect > 0 and max(effects) >= 2 * self.min_effect else "warning"
        slice_: dict[str, Any] = {
            "feature": check.feature,
            "since": _iso(since_ns),
            "until": _iso(self.as_of_ns),
        }
        if check.slice.release is not None:
            slice_["release"] = check.slice.release
        if check.slice.model is not None:
            slice_["model"] = check.slice.model
        if check.slice.attributes:
            slice_["attributes"] = dict(check.slice.attributes)
        degraded = [row for row in breakdown or [] if row["degraded"]]
        trace_ids, strata = self._telling_traces(since_ns, test, degraded)
        slice_["trace_ids"] = trace_ids
        if check.breakdown:
            slice_["strata"] = strata
        key = f"outcome:{metric.name}" + (f"[{check.slice.describe()}]" if not check.slice.is_empty() else "")
        detail = {
            "metric": metric.to_dict(),
            "min_effect": self.min_effect,
            "window_test": test.to_dict(),
            "cusum": {k: v for k, v in cusum_summary.items() if k != "steps"},
            "degraded": [{k: v for k, v in row.items()} for row in degraded[:20]],
        }
        if metric.kind == "quantile":
            detail["threshold_ms"] = self.threshold
        return Finding(
            key=key,
            title=self._title(test, cusum_summary, cusum_result),
            severity=severity,
            detail=detail,
            slice=slice_,
        )

    def _title(
        self, test: WindowTest, cusum_summary: dict[str, Any], cusum_result: CusumResult | None
    ) -> str:
        metric = self.metric
        if test.alert:
            before, after = test.reference, test.current
            letter = "z" if test.test == "two_proportion_z" else "t"
            how = f"{letter} = {test.statistic:.1f}, over the last {_span(self.check.current)}"
        else:
            assert cusum_result is not None
            before, after = cusum_result.target, cusum_summary["run_value"]
            since = cusum_summary["onset_time"][:10]
            how = f"CUSUM {cusum_result.statistic:.1f} > {cusum_result.h:g}, since {since}"
        verb = "fell" if (after or 0) < (before or 0) else "rose"
        if metric.kind == "quantile":
            return (
                f"{metric.label} {verb}: {_fmt(metric, after)} of traces took longer than the reference's "
                f"{metric.label} of {self.threshold:.0f} ms, against {_fmt(metric, before)} before ({how})"
            )
        return f"{metric.label} {verb} from {_fmt(metric, before)} to {_fmt(metric, after)} ({how})"

    def _telling_traces(
        self, since_ns: int, test: WindowTest, degraded: list[dict[str, Any]]
    ) -> tuple[list[str], dict[str, str]]:
        """The traces with the bad outcome in the degraded window, interleaved so that any prefix holds
        the degraded slice values in proportion to their excess (or the days in proportion)."""
        check, metric = self.check, self.metric
        limit = check.max_trace_ids
        if not limit:
            return [], {}
        obs = _observations(metric, replace(self.scope, since_ns=since_ns, group=check.breakdown))
        if metric.kind == "proportion":
            bad = obs.c.value == (1.0 if metric.worse == "higher" else 0.0)
        elif metric.kind == "quantile":
            bad = obs.c.value > (self.threshold if self.threshold is not None else 1e300)
        else:
            reference = test.reference if test.reference is not None else 0.0
            bad = obs.c.value < reference if metric.worse == "lower" else obs.c.value > reference
        rows = self.connection.execute(
            sa.select(obs.c.trace_id, obs.c.start_ns, obs.c.grp)
            .where(bad)
            .order_by(obs.c.start_ns.desc(), obs.c.trace_id)
            .limit(min(limit * 10, 20_000))
        ).all()
        weights: dict[str, float] = {}
        if check.breakdown:
            weights = {
                f"{check.breakdown}={row['value']}": max(row["excess"] or 0.0, 1e-9) for row in degraded
            }
        by_stratum: dict[str, list[str]] = defaultdict(list)
        strata = {}
        for trace_id, start_ns, group in rows:
            stratum = f"{check.breakdown}={group}" if check.breakdown else _iso(start_ns)[:10]
            by_stratum[stratum].append(trace_id)
            strata[trace_id] = stratum
        keyed = []
        for stratum, ids in by_stratum.items():
            tier, weight = (0, weights[stratum]) if stratum in weights else (1, float(len(ids)))
            keyed += [((tier, (n + 0.5) / weight), trace_id) for n, trace_id in enumerate(ids)]
        chosen = [trace_id for _, trace_id in sorted(keyed)[:limit]]
        return chosen, {trace_id: strata[trace_id] for trace_id in chosen}


def outcome_names() -> list[str]:
    """The built-in outcome metrics (``signal:NAME`` and ``signal_rate:NAME`` work for any signal)."""
    return sorted(BUILTIN_METRICS)
