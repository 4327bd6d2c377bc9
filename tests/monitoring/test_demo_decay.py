"""The outcome monitors on the real demo data, run as a daily monitor would have run them.

The demo (seed 7, 30 days, about 700 traces a day) launches the Acme Vault on day 20: questions about
it grow from 7% to 40% of the traffic within a week, the help center knows nothing about them, and the
handled rate falls from about 70% to about 50% while latency and errors stay flat. Outcomes arrive
hours to days late, so each run sees only what had arrived by the end of its day.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from prodloop.capture import native_span_records, record_signals, write_spans
from prodloop.demo import DemoScenario, generate_scenario, launch_day
from prodloop.demo.scenario import FEATURE
from prodloop.monitoring.outcomes import OutcomeCheck, OutcomeResult, evaluate_outcome
from prodloop.server.auth import ensure_project
from prodloop.store import create_store_engine, upgrade

END = datetime(2025, 3, 1, tzinfo=UTC)
START = END - timedelta(days=30)
LAUNCH = launch_day(30)
DAYS = range(1, 30)


def load(engine: sa.Engine, scenario: DemoScenario) -> int:
    """What ``load_demo`` stores (traces with the scenario's root span ids, then signals), without the
    labelled review queue, which outcome monitors do not read and which takes most of its time."""
    project_id = ensure_project(engine, "demo")
    now_ns = time.time_ns()
    for start in range(0, len(scenario.traces), 1000):
        records: list[dict[str, Any]] = []
        for item in scenario.traces[start : start + 1000]:
            _, trace_records = native_span_records(item.trace, now_ns)
            trace_records[0]["span_id"] = item.root_span_id
            records.extend(trace_records)
        write_spans(engine, project_id, records)
    for start in range(0, len(scenario.signals), 5000):
        record_signals(engine, project_id, scenario.signals[start : start + 5000])
    return project_id


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, int, DemoScenario]]:
    engine = create_store_engine(f"sqlite:///{tmp_path_factory.mktemp('decay') / 'prodloop.db'}")
    upgrade(engine)
    scenario = generate_scenario(seed=7, days=30, traces_per_day=700, end=END)
    yield engine, load(engine, scenario), scenario
    engine.dispose()


def end_of_day(day: int) -> datetime:
    return START + timedelta(days=day + 1)


def daily(
    demo: tuple[sa.Engine, int, DemoScenario], metric: str, days: range = DAYS
) -> dict[int, OutcomeResult]:
    """The default check of ``metric``, run at the end of each day as a daily monitor runs it."""
    engine, project_id, _ = demo
    check = OutcomeCheck(feature=FEATURE, metric=metric)
    return {day: evaluate_outcome(engine, project_id, check, end_of_day(day)) for day in days}


def alert_days(runs: dict[int, OutcomeResult]) -> list[int]:
    return [day for day, result in runs.items() if result.findings]


@pytest.fixture(scope="module")
def handled(demo) -> dict[int, OutcomeResult]:  # type: ignore[no-untyped-def]
    return daily(demo, "handled_rate")


def test_the_handled_rate_alerts_within_three_days_of_the_launch_and_not_before(handled):
    days = alert_days(handled)
    assert days and all(day >= LAUNCH for day in days), days
    assert days[0] <= LAUNCH + 2, days
    assert days == list(range(days[0], 30))  # and keeps alerting while the rate stays down
    finding = handled[days[0]].findings[0]
    assert finding.key == "outcome:handled_rate"
    assert finding.title.startswith("handled rate fell from 70")
    assert finding.slice["feature"] == FEATURE and finding.slice["until"] == end_of_day(days[0]).isoformat()
    # By the end of the month the fall is critical: from about 70% to about 50%.
    last = handled[29].findings[0]
    assert last.severity == "critical"
    assert handled[29].window_test.current == pytest.approx(0.51, abs=0.03)


def test_the_quiet_days_before_the_launch_were_tested_not_skipped(handled):
    # No alert before day 20 means the tests ran and found nothing, not that they had too little data.
    tested = [day for day in range(3, LAUNCH) if handled[day].window_test.p_value is not None]
    assert tested == list(range(3, LAUNCH))
    assert all(handled[day].window_test.n_current > 400 for day in tested)
    cusum_ran = [day for day in range(1, LAUNCH) if handled[day].cusum.get("skipped") is None]
    assert cusum_ran and cusum_ran[0] <= 14 and cusum_ran[-1] == LAUNCH - 1
    assert all(handled[day].cusum["statistic"] < 5 for day in cusum_ran)


def test_the_finding_routes_the_launch_traffic(demo):
    engine, project_id, scenario = demo
    check = OutcomeCheck(feature=FEATURE, breakdown="support.route")
    result = evaluate_outcome(engine, project_id, check, end_of_day(25))
    [finding] = result.findings
    intent = {t.trace_id: t.intent for t in scenario.tickets}
    ranked = finding.slice["trace_ids"]
    assert len(ranked) == 200 and set(finding.slice["strata"]) == set(ranked)
    # The routed traces are failures, and far more of them are about the new product than traffic is.
    window = [t for t in scenario.tickets if not t.lost and 24 <= t.day <= 25]
    traffic_share = sum(t.intent == "acme_vault" for t in window) / len(window)
    routed_share = sum(intent[t] == "acme_vault" for t in ranked[:100]) / 100
    assert routed_share > 1.5 * traffic_share
    # The router files Vault questions under bug_report and other: those are where the rate fell.
    degraded = [row["value"] for row in result.breakdown if row["degraded"]]
    assert degraded and set(degraded) <= {"bug_report", "other"}
    assert result.breakdown[0]["value"] in ("bug_report", "other")


@pytest.mark.parametrize("metric", ["error_rate", "latency_p50", "latency_p95"])
def test_errors_and_latency_stay_flat_while_outcomes_fall(demo, metric):
    runs = daily(demo, metric, range(2, 30))
    assert alert_days(runs) == []
    assert all(runs[day].window_test.p_value is not None for day in range(3, 30))
    # After the launch every change is smaller than the smallest that counts (1 point of errors; 5 and
    # 2 points more traces slower than the reference's median and 95th percentile).
    for day in range(LAUNCH, 30):
        test = runs[day].window_test
        assert test.effect is not None and abs(test.effect) < test.min_effect


def test_escalations_rise_with_the_launch_too(demo):
    # Escalations arrive within hours (median 2 h), so by the end of a day most of its are known.
    days = alert_days(daily(demo, "escalation_rate"))
    assert days and days[0] >= LAUNCH and days[0] <= LAUNCH + 2, days


def test_thumbs_are_too_few_to_say_anything(demo):
    # About 1% of answers get a thumb: some 15 in the current window, far below the 100 a test needs.
    runs = daily(demo, "thumbs_down_rate", range(LAUNCH, 30))
    assert all(result.status == "insufficient_data" for result in runs.values())
    assert max(result.window_test.n_current for result in runs.values()) < 40
