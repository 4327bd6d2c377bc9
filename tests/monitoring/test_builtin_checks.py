"""The built-in ``columns`` check on a store whose traces carry a routing attribute: a mix that
shifts is found with the tests' own thresholds and with learned ones, the traces with the value that
grew come first in the alert's slice, and a stable mix raises nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from prodloop.capture import TraceIn, ingest_traces
from prodloop.monitoring import list_alerts, run_monitor, save_monitor
from prodloop.server.auth import ensure_project

NOW = datetime(2026, 3, 1, tzinfo=UTC)
ROUTES = ("billing", "refund", "bug", "order")


def _store(engine: sa.Engine, pid: int, shifted: bool) -> dict[str, str]:
    """16 days of 120 traces a day; with ``shifted``, the last 2 days send 40% to a new route."""
    rng = random.Random(3)
    rows, routes = [], {}
    for day in range(16):
        for n in range(120):
            trace_id = f"{day + 1:04x}{n + 1:028x}"
            new = shifted and day >= 14 and rng.random() < 0.4
            route = "vault" if new else rng.choice(ROUTES)
            routes[trace_id] = route
            rows.append(
                TraceIn(
                    trace_id=trace_id,
                    feature="support",
                    input=f"question {n}",
                    start_time=NOW - timedelta(days=16 - day) + timedelta(minutes=11 * n),
                    attributes={"support.route": route, "support.channel": rng.choice(("web", "app"))},
                )
            )
    ingest_traces(engine, pid, rows)
    return routes


def _monitor(**extra: object) -> dict[str, object]:
    return {
        "name": "routes",
        "feature": "support",
        "reference": {"window": "14d"},
        "current": {"window": "2d"},
        "checks": [{"type": "columns", "attributes": ["support.route", "support.channel"]}],
        **extra,
    }


def test_a_shifted_mix_is_found_and_its_new_value_ranked_first(engine: sa.Engine) -> None:
    pid = ensure_project(engine, "shop")
    routes = _store(engine, pid, shifted=True)
    save_monitor(engine, pid, _monitor())
    run = run_monitor(engine, pid, "routes", as_of=NOW)
    check = run["results"]["checks"][0]
    assert check["status"] == "ok", check
    report = {c["column"]: c for c in check["results"]["report"]["columns"]}
    assert report["support.route"]["drift"] is True and report["support.channel"]["drift"] is False
    assert check["results"]["n_reference"] == 14 * 120 and check["results"]["n_current"] == 2 * 120
    shifts = check["results"]["shifts"]["support.route"]
    assert shifts[0]["value"] == "vault" and shifts[0]["reference_share"] == 0.0
    [alert] = list_alerts(engine, pid)
    assert alert["key"] == "column:support.route" and "vault 0% →" in alert["title"]
    ranked = alert["slice"]["trace_ids"]
    vault = [t for t, r in routes.items() if r == "vault"]
    assert set(ranked[: len(vault)]) == set(vault)
    assert {alert["slice"]["strata"][t] for t in ranked[: len(vault)]} == {"vault"}


def test_learned_thresholds_alert_on_the_shift_and_not_on_a_stable_mix(engine: sa.Engine) -> None:
    pid = ensure_project(engine, "shop")
    _store(engine, pid, shifted=True)
    save_monitor(engine, pid, _monitor(chunk="day"))
    run = run_monitor(engine, pid, "routes", as_of=NOW)
    learned = run["results"]["checks"][0]["results"]["learned"]
    assert learned["support.route"]["alert"] is True
    assert [c["label"] for c in learned["support.route"]["chunks"]] == ["2026-02-27", "2026-02-28"]
    assert all(c["value"] > learned["support.route"]["upper"] for c in learned["support.route"]["chunks"])
    assert learned["support.channel"]["alert"] is False
    [alert] = list_alerts(engine, pid)
    assert "left the band" in alert["title"] and alert["detail"]["learned"]["test"] == "jensenshannon"


def test_a_stable_mix_raises_nothing(engine: sa.Engine) -> None:
    pid = ensure_project(engine, "shop")
    _store(engine, pid, shifted=False)
    save_monitor(engine, pid, _monitor(chunk="day"))
    run_monitor(engine, pid, "routes", as_of=NOW)
    assert list_alerts(engine, pid) == []
