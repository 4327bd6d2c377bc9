"""Outcome monitors: what users and the business say about a feature, over time, and when it got worse.

A metric (:mod:`prodloop.monitoring.outcome_metrics`) is computed per trace and aggregated per bucket
(hour or day of the trace's start) in SQL (:mod:`prodloop.monitoring.outcome_queries`), as of a
time: only traces started and signals received by then count.

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
from typing import Any

import sqlalchemy as sa

from prodloop.capture.queries import to_ns
from prodloop.errors import ValidationFailed
from prodloop.monitoring.changepoints import (
    Counts,
    CusumResult,
    WindowTest,
    cusum,
    laney_sigma_z,
    mean_standard_errors,
    proportion_standard_errors,
    rank_segments,
    window_test,
    worse_by,
)
from prodloop.monitoring.findings import Finding
from prodloop.monitoring.outcome_metrics import BUCKETS, OutcomeCheck, OutcomeMetric
from prodloop.monitoring.outcome_metrics import CusumSettings as CusumSettings
from prodloop.monitoring.outcome_metrics import OutcomeArguments as OutcomeArguments
from prodloop.monitoring.outcome_metrics import SliceFilter as SliceFilter
from prodloop.monitoring.outcome_metrics import outcome_metric as outcome_metric
from prodloop.monitoring.outcome_metrics import outcome_names as outcome_names
from prodloop.monitoring.outcome_queries import (
    _bucket_counts,
    _iso,
    _observations,
    _quantiles,
    _resolve,
    _Scope,
)
from prodloop.monitoring.outcome_queries import outcome_series as outcome_series
from prodloop.store import read_transaction

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


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
