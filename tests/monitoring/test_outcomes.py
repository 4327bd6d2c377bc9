"""Outcome metrics from the store, counted by hand, on SQLite and PostgreSQL; evaluation and findings."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from statsmodels.stats.proportion import proportions_ztest

from prodloop.capture import SignalIn, TraceIn, ingest_traces, record_signals
from prodloop.errors import ValidationFailed
from prodloop.monitoring.findings import Finding
from prodloop.monitoring.outcomes import (
    OutcomeCheck,
    SliceFilter,
    evaluate_outcome,
    outcome_metric,
    outcome_series,
)
from prodloop.server.auth import ensure_project

T0 = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday, midnight UTC
FEATURE = "support-bot"


@dataclass
class Spec:
    """One trace of the hand-made store and its signals: (name, value, hours after the trace)."""

    day: int
    hour: float
    channel: str
    release: str
    error: bool = False
    ms: float = 1000.0
    signals: list[tuple[str, Any, float]] = field(default_factory=list)
    priority: int = 1
    vip: bool = False

    @property
    def start(self) -> datetime:
        return T0 + timedelta(days=self.day, hours=self.hour)


RESOLVED_LATE = [("resolved", True, 30)]  # the outcome comes 30 hours later
REOPENED = [("resolved", False, 1), ("resolved", True, 20)]  # reopened, then resolved
SPECS = [
    Spec(0, 9, "web", "r1", ms=1000, signals=[("resolved", True, 2), ("thumbs", "up", 0.01)]),
    Spec(0, 10, "web", "r1", ms=1200,
         signals=[("resolved", False, 5), ("escalated", True, 1), ("thumbs", "down", 0.01)]),
    Spec(0, 11, "email", "r1", ms=800, signals=RESOLVED_LATE, priority=2),
    Spec(0, 15, "email", "r1", error=True, ms=3000, vip=True,
         signals=[("resolved", False, 1), ("escalated", True, 0.5), ("regenerate", None, 0.01)]),
    Spec(1, 8, "web", "r2", ms=900, signals=REOPENED),
    Spec(1, 9, "web", "r2", ms=1100, priority=2,
         signals=[("thumbs", "down", 0.01), ("thumbs", "up", 1), ("csat", 4, 3)]),
    Spec(1, 13, "email", "r2", ms=1500, vip=True,
         signals=[("resolved", True, 2), ("csat", 2, 3), ("copy", None, 0.01)]),
    Spec(1, 20, "email", "r2", ms=700),
    Spec(2, 7, "web", "r2", error=True, ms=5000, signals=[("resolved", False, 50)]),
    Spec(2, 9, "web", "r2", ms=1300,
         signals=[("resolved", True, 1), ("escalated", False, 1), ("copy", None, 0.01)]),
    Spec(2, 10, "email", "r2", ms=600, signals=[("resolved", True, 1), ("csat", 5, 2)], priority=2),
    Spec(2, 12, "web", "r2", ms=2000, signals=[("thumbs", "down", 0.01)]),
]  # fmt: skip


def store(engine: sa.Engine, specs: list[Spec]) -> tuple[int, list[str]]:
    """Write ``specs`` through the capture API; returns the project id and the trace ids in order."""
    project_id = ensure_project(engine, "default")
    traces = [
        TraceIn.model_validate(
            {
                "feature": FEATURE,
                "release": s.release,
                "join_key": f"T-{n}",
                "name": "answer",
                "status": "error" if s.error else "ok",
                "start_time": s.start,
                "end_time": s.start + timedelta(milliseconds=s.ms),
                "input": "question",
                "output": "answer",
                "attributes": {
                    "support.channel": s.channel,
                    "support.priority": s.priority,
                    "support.vip": s.vip,
                },
            }
        )
        for n, s in enumerate(specs)
    ]
    ids = []
    for start in range(0, len(traces), 500):
        ids += ingest_traces(engine, project_id, traces[start : start + 500])["trace_ids"]
    signals = []
    for n, (s, trace_id) in enumerate(zip(specs, ids, strict=True)):
        for m, (name, value, hours) in enumerate(s.signals):
            outcome = name in ("resolved", "escalated", "csat")
            signals.append(
                SignalIn(
                    id=f"s-{n}-{m}",
                    # Outcomes arrive by ticket id, like a helpdesk's; feedback names its trace.
                    trace_id=None if outcome else trace_id,
                    join_key=f"T-{n}" if outcome else None,
                    kind="outcome" if outcome else "explicit" if name == "thumbs" else "implicit",
                    name=name,
                    value=value,
                    timestamp=s.start + timedelta(hours=hours),
                )
            )
    for start in range(0, len(signals), 2000):
        record_signals(engine, project_id, signals[start : start + 2000])
    return project_id, ids


def latest(s: Spec, name: str, as_of: datetime) -> Any:
    """The value of the trace's latest signal ``name`` at ``as_of``, or None: the oracle."""
    seen = [
        (hours, value)
        for n, value, hours in s.signals
        if n == name and s.start + timedelta(hours=hours) <= as_of
    ]
    return max(seen, key=lambda item: item[0])[1] if seen else None


def day_points(result: dict[str, Any]) -> list[tuple[int, float | None]]:
    return [(p["n"], p["value"]) for p in result["points"]]


@pytest.fixture
def small(engine: sa.Engine) -> tuple[sa.Engine, int]:
    project_id, _ = store(engine, SPECS)
    return engine, project_id


def series(engine: sa.Engine, project_id: int, metric: str, as_of: datetime, **kw: Any) -> dict[str, Any]:
    return outcome_series(
        engine, project_id, FEATURE, metric, since=T0, until=T0 + timedelta(days=3), as_of=as_of, **kw
    )


def test_handled_rate_per_day_counts_the_outcomes_known_by_then(small):
    engine, project_id = small
    for as_of_hours in (24, 48, 72, 200):
        as_of = T0 + timedelta(hours=as_of_hours)
        result = series(engine, project_id, "handled_rate", as_of)
        expected = []
        for day in range(3):
            values = [latest(s, "resolved", as_of) for s in SPECS if s.day == day and s.start < as_of]
            values = [v for v in values if v is not None]
            expected.append((len(values), sum(values) / len(values) if values else None))
        assert day_points(result) == [(n, pytest.approx(v) if v is not None else None) for n, v in expected]
        assert [p["start"] for p in result["points"]] == [
            (T0 + timedelta(days=d)).isoformat() for d in range(3)
        ]


def test_the_as_of_cut_off_hides_late_and_later_outcomes(small):
    engine, project_id = small
    # End of day 0: trace 3's outcome comes 30 h late, so day 0 shows 1 resolved of 3.
    assert day_points(series(engine, project_id, "handled_rate", T0 + timedelta(days=1)))[0] == (
        3,
        pytest.approx(1 / 3),
    )
    # A day later it has arrived: 2 of 4.
    assert day_points(series(engine, project_id, "handled_rate", T0 + timedelta(days=2)))[0] == (4, 0.5)
    # The ticket reopened on day 1 counts as not resolved until its second outcome arrives, 20 h later;
    # at noon the day's other trace has not started yet.
    noon = day_points(series(engine, project_id, "handled_rate", T0 + timedelta(days=1, hours=12)))
    assert noon[1] == (1, 0.0)
    assert day_points(series(engine, project_id, "handled_rate", T0 + timedelta(days=2)))[1] == (2, 0.5)
    assert day_points(series(engine, project_id, "handled_rate", T0 + timedelta(days=3)))[1] == (2, 1.0)


def test_built_in_rates_count_what_their_names_say(small):
    engine, project_id = small
    end = T0 + timedelta(days=10)
    # Thumbs: the latest vote per trace; day 1's trace changed its down vote to up.
    assert day_points(series(engine, project_id, "thumbs_down_rate", end)) == [(2, 0.5), (1, 0.0), (1, 1.0)]
    assert day_points(series(engine, project_id, "escalation_rate", end)) == [(2, 1.0), (0, None), (1, 0.0)]
    assert day_points(series(engine, project_id, "error_rate", end)) == [(4, 0.25), (4, 0.0), (4, 0.25)]
    # A signal without a value: share of all traces that have it.
    assert day_points(series(engine, project_id, "signal_rate:copy", end)) == [(4, 0.0), (4, 0.25), (4, 0.25)]
    assert day_points(series(engine, project_id, "signal_rate:regenerate", end)) == [
        (4, 0.25),
        (4, 0.0),
        (4, 0.0),
    ]
    # A numeric signal: its mean among traces that have it.
    assert day_points(series(engine, project_id, "signal:csat", end)) == [(0, None), (2, 3.0), (1, 5.0)]
    # A signal whose values are all 0 and 1 is a rate.
    assert series(engine, project_id, "signal:escalated", end)["metric"]["kind"] == "proportion"
    assert series(engine, project_id, "signal:csat", end)["metric"]["kind"] == "mean"


def test_latency_quantiles_per_day_match_numpy(small):
    engine, project_id = small
    end = T0 + timedelta(days=10)
    for metric, q in (("latency_p50", 0.5), ("latency_p95", 0.95)):
        points = day_points(series(engine, project_id, metric, end))
        expected = [(4, float(np.quantile([s.ms for s in SPECS if s.day == d], q))) for d in range(3)]
        assert points == [(n, pytest.approx(v, abs=0.01)) for n, v in expected]


#: Slices and which specs they keep: attributes of each JSON type, a release, both, and nothing.
SLICES: list[tuple[SliceFilter, Callable[[Spec], bool]]] = [
    (SliceFilter(attributes={"support.channel": "email"}), lambda s: s.channel == "email"),
    (SliceFilter(release="r2"), lambda s: s.release == "r2"),
    (SliceFilter(release="r2", attributes={"support.channel": "web"}),
     lambda s: s.release == "r2" and s.channel == "web"),
    (SliceFilter(attributes={"support.priority": 2}), lambda s: s.priority == 2),
    (SliceFilter(attributes={"support.vip": True}), lambda s: s.vip),
    (SliceFilter(attributes={"support.channel": "fax"}), lambda s: False),
]  # fmt: skip


def test_slices_keep_only_the_traces_whose_attributes_match(small):
    engine, project_id = small
    end = T0 + timedelta(days=10)
    for slice_, keep in SLICES:
        points = day_points(series(engine, project_id, "error_rate", end, slice=slice_))
        expected = []
        for day in range(3):
            kept = [s for s in SPECS if s.day == day and keep(s)]
            expected.append((len(kept), sum(s.error for s in kept) / len(kept) if kept else None))
        assert points == expected, slice_


def test_group_by_splits_each_day_by_release_or_attribute(small):
    engine, project_id = small
    end = T0 + timedelta(days=10)
    by_release = series(engine, project_id, "handled_rate", end, group_by="release")["points"]
    assert [(p["start"][:10], p["group"], p["n"], p["value"]) for p in by_release] == [
        ("2025-01-06", "r1", 4, 0.5),
        ("2025-01-07", "r2", 2, 1.0),
        ("2025-01-08", "r2", 3, pytest.approx(2 / 3)),
    ]
    by_channel = series(engine, project_id, "error_rate", end, group_by="support.channel")["points"]
    assert {(p["start"][:10], p["group"]): (p["n"], p["value"]) for p in by_channel} == {
        ("2025-01-06", "email"): (2, 0.5),
        ("2025-01-06", "web"): (2, 0.0),
        ("2025-01-07", "email"): (2, 0.0),
        ("2025-01-07", "web"): (2, 0.0),
        ("2025-01-08", "email"): (1, 0.0),
        ("2025-01-08", "web"): (3, pytest.approx(1 / 3)),
    }


def test_hour_buckets(small):
    engine, project_id = small
    result = outcome_series(
        engine, project_id, FEATURE, "error_rate",
        since=T0, until=T0 + timedelta(hours=12), as_of=T0 + timedelta(days=5), bucket="hour",
    )  # fmt: skip
    points = result["points"]
    assert len(points) == 12 and points[9]["start"] == (T0 + timedelta(hours=9)).isoformat()
    assert [(p["n"], p["value"]) for p in points[9:12]] == [(1, 0.0), (1, 0.0), (1, 0.0)]
    assert all(p["n"] == 0 and p["value"] is None for p in points[:9])


# --------------------------------------------------------------------------------------------------
# Evaluation on a store with a known drop


def decaying_specs() -> list[Spec]:
    """17 days of 30 traces (20 web, 10 email), outcomes an hour later. Days 0-13: 70% resolved on both
    channels. Days 14-16: web stays at 70%, e-mail falls to 20% (2 of 10)."""
    specs = []
    for day in range(17):
        for i in range(30):
            channel = "web" if i < 20 else "email"
            if channel == "web":
                resolved = i < 14
            else:
                resolved = (i - 20) < (2 if day >= 14 else 7)
            specs.append(Spec(day, 8 + i * 0.25, channel, "r2", signals=[("resolved", resolved, 1)]))
    return specs


@pytest.fixture
def decaying(engine: sa.Engine) -> tuple[sa.Engine, int, list[Spec], list[str]]:
    specs = decaying_specs()
    project_id, ids = store(engine, specs)
    return engine, project_id, specs, ids


AS_OF = T0 + timedelta(days=17)


def test_evaluate_finds_the_drop_with_statsmodels_z_and_the_cusum_worked_by_hand(decaying):
    engine, project_id, specs, ids = decaying
    check = OutcomeCheck(
        feature=FEATURE, current="3d", min_samples=50, cusum={"h": 4.0}, breakdown="support.channel"
    )
    result = evaluate_outcome(engine, project_id, check, AS_OF)
    # Current window: days 14-16, 90 outcomes, 48 resolved; reference: days 0-13, 420 outcomes, 294.
    z, p = proportions_ztest([48, 294], [90, 420], alternative="smaller")
    test = result.window_test
    assert (test.n_current, test.n_reference) == (90, 420)
    assert test.current == pytest.approx(48 / 90) and test.reference == pytest.approx(0.7)
    assert test.statistic == pytest.approx(z) and test.p_value == pytest.approx(p)
    assert test.alert and test.effect == pytest.approx(0.7 - 48 / 90)
    # CUSUM over days 10-16 against days 0-9 (70% every day: no extra dispersion): four days at z = 0,
    # then three at z = (0.7 - 0.533) / sqrt(0.21 / 30) = 1.992, less k = 0.5 each.
    step = (0.7 - 16 / 30) / math.sqrt(0.21 / 30) - 0.5
    assert [s["s"] for s in result.cusum["steps"]] == pytest.approx([0, 0, 0, 0, step, 2 * step, 3 * step])
    assert result.cusum["dispersion"] == 1.0 and result.cusum["alert"]
    assert result.cusum["onset_time"] == (T0 + timedelta(days=14)).isoformat()
    assert result.status == "degraded"

    [finding] = result.findings
    assert isinstance(finding, Finding) and result.alerts == result.findings
    assert finding.key == "outcome:handled_rate"
    assert finding.title == f"handled rate fell from 70.0% to 53.3% (z = {z:.1f}, over the last 3 days)"
    assert finding.severity == "critical"  # 16.7 points is more than twice the 3-point minimum
    assert finding.slice["feature"] == FEATURE
    assert finding.slice["since"] == (T0 + timedelta(days=14)).isoformat()
    assert finding.slice["until"] == AS_OF.isoformat()
    # The breakdown says where: e-mail fell from 70% to 20%, the web did not move.
    [email, web] = result.breakdown
    assert (email["value"], email["n_current"], email["current"], email["reference"]) == (
        "email",
        30,
        pytest.approx(0.2),
        pytest.approx(0.7),
    )
    assert email["degraded"] and email["share_of_excess"] == 1.0 and email["excess"] == pytest.approx(15.0)
    assert (web["value"], web["effect"], web["degraded"]) == ("web", pytest.approx(0.0), False)
    # The telling traces: every unresolved trace of the window, e-mail first.
    failed = {
        tid: s.channel for s, tid in zip(specs, ids, strict=True) if s.day >= 14 and not s.signals[0][1]
    }
    assert set(finding.slice["trace_ids"]) == set(failed)
    emails = sum(1 for c in failed.values() if c == "email")
    assert all(failed[t] == "email" for t in finding.slice["trace_ids"][:emails])
    assert finding.slice["strata"] == {t: f"support.channel={c}" for t, c in failed.items()}
    assert finding.detail["degraded"][0]["value"] == "email"


def test_a_stable_slice_raises_nothing_and_the_key_names_the_slice(decaying):
    engine, project_id, _, _ = decaying
    web = OutcomeCheck(
        feature=FEATURE, current="3d", min_samples=50, slice={"attributes": {"support.channel": "web"}}
    )
    result = evaluate_outcome(engine, project_id, web, AS_OF)
    assert result.window_test.current == pytest.approx(0.7) and not result.findings and result.status == "ok"
    email = OutcomeCheck(
        feature=FEATURE, current="3d", min_samples=20, slice={"attributes": {"support.channel": "email"}}
    )
    [finding] = evaluate_outcome(engine, project_id, email, AS_OF).findings
    assert finding.key == "outcome:handled_rate[support.channel=email]"
    assert finding.slice["attributes"] == {"support.channel": "email"}


def test_results_are_json_ready(decaying):
    engine, project_id, _, _ = decaying
    result = evaluate_outcome(
        engine, project_id, OutcomeCheck(feature=FEATURE, current="3d", min_samples=50), AS_OF
    )
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert document["status"] == "degraded" and document["findings"][0]["key"] == "outcome:handled_rate"
    assert len(document["series"]) == 14 + 7  # the reference and the CUSUM window, in days
    assert [p["part"] for p in document["series"]][-4:] == ["reference", "current", "current", "current"]
    assert document["check"]["current"] == "P3D" and document["reference"]["kind"] == "window"


def test_too_little_data_is_reported_not_alerted(decaying):
    engine, project_id, _, _ = decaying
    result = evaluate_outcome(
        engine, project_id, OutcomeCheck(feature=FEATURE, current="3d"), T0 + timedelta(days=4)
    )
    assert result.status == "insufficient_data" and not result.findings
    assert "too few observations" in (result.window_test.skipped or "")


def test_a_release_reference_and_a_fixed_window(decaying):
    engine, project_id, _, _ = decaying
    by_release = OutcomeCheck(
        feature=FEATURE, current="3d", min_samples=50, reference={"release": "r2"}, cusum={"enabled": False}
    )
    result = evaluate_outcome(engine, project_id, by_release, AS_OF)
    # Release r2 before the current window: all of days 0-13.
    assert result.window_test.n_reference == 420 and result.findings
    assert result.reference["kind"] == "release" and result.reference["release"] == "r2"
    fixed = OutcomeCheck(
        feature=FEATURE, current="3d", min_samples=50,
        reference={"since": T0 + timedelta(days=2), "until": T0 + timedelta(days=7)},
    )  # fmt: skip
    assert evaluate_outcome(engine, project_id, fixed, AS_OF).window_test.n_reference == 150
    overlapping = OutcomeCheck(feature=FEATURE, current="3d", reference={"since": T0, "until": AS_OF})
    with pytest.raises(ValidationFailed, match="before the window"):
        evaluate_outcome(engine, project_id, overlapping, AS_OF)


def test_check_definitions_are_validated():
    with pytest.raises(ValueError, match="no outcome metric 'happiness'"):
        OutcomeCheck(feature=FEATURE, metric="happiness")
    with pytest.raises(ValueError, match="set worse to lower or higher"):
        OutcomeCheck(feature=FEATURE, metric="signal:mood")
    assert OutcomeCheck(feature=FEATURE, metric="signal:mood", worse="lower").worse == "lower"
    with pytest.raises(ValueError, match="whole number of days"):
        OutcomeCheck(feature=FEATURE, current="36h")
    assert OutcomeCheck(
        feature=FEATURE, current="36h", bucket="hour", cusum={"window": "12h"}
    ).current == timedelta(hours=36)
    with pytest.raises(ValueError, match="extra"):
        OutcomeCheck(feature=FEATURE, windw="3d")
    assert outcome_metric("handled_rate").worse == "lower"
    assert outcome_metric("escalation_rate").worse == "higher"
    assert outcome_metric("handled_rate", "higher").worse == "higher"
