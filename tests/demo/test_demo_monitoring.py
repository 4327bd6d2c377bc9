"""The demo's monitors, read back from the store: what a new user finds on the feature page.

The handled rate falls after the day-20 launch and the outcome monitor says so within 3 days, with no
outcome alert on days 1-19 and none ever for errors or latency; the router's intents drift, the new
questions' words are found, the eval set built before the launch leaves the new product uncovered,
and one call routes that cluster into a queue with the alert linked on each item."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from prodloop.demo.scenario import FEATURE, launch_day
from prodloop.monitoring import feature_health, get_alert, list_alerts, list_monitors, route_alert
from prodloop.server.auth import project_id
from prodloop.store.schema import monitor_runs, queue_items, traces
from tests.demo.conftest import END

START = END - timedelta(days=30)


def _alerts(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    """Every alert by key (the newest, if a key was raised twice), with the time of its first run."""
    pid = project_id(engine, "demo")
    found: dict[str, dict[str, Any]] = {}
    with engine.connect() as connection:
        as_of = dict(connection.execute(sa.select(monitor_runs.c.id, monitor_runs.c.as_of_ns)).all())
    for alert in sorted(list_alerts(engine, pid), key=lambda a: a["id"]):
        found[alert["key"]] = {**alert, "first_as_of_ns": as_of[alert["first_run_id"]]}
    return found


def _day_end_ns(day: int) -> int:
    """The end of scenario day ``day`` (from 0), when that day's run is made."""
    return int((START + timedelta(days=day + 1)).timestamp()) * 10**9


def test_the_demo_has_its_monitors_and_a_month_of_daily_runs(store):
    engine, _ = store
    monitors = {m["name"]: m for m in list_monitors(engine, project_id(engine, "demo"))}
    assert set(monitors) == {"support-outcomes", "support-inputs", "support-content"}
    assert all(m["last_run"]["status"] == "ok" for m in monitors.values())
    with engine.connect() as connection:
        runs = connection.execute(sa.select(sa.func.count()).select_from(monitor_runs)).scalar_one()
    assert runs >= 2 * 23 + 1


def test_the_decay_is_flagged_within_3_days_of_the_launch_and_not_before(store):
    engine, _ = store
    alerts = _alerts(engine)
    outcome = {key: a for key, a in alerts.items() if key.startswith("outcome:")}
    handled = outcome["outcome:handled_rate"]
    launch = launch_day(30)
    assert _day_end_ns(launch) <= handled["first_as_of_ns"] <= _day_end_ns(launch + 2)
    assert handled["status"] == "open" and handled["severity"] == "critical"
    assert "handled rate fell" in handled["title"]
    # Nothing about outcomes on days 1-19, and latency and errors never moved enough to alert.
    assert all(a["first_as_of_ns"] > _day_end_ns(launch - 1) for a in outcome.values())
    assert not {"outcome:error_rate", "outcome:latency_p95"} & set(outcome)


def test_the_drifted_intents_the_new_words_and_the_new_ground_are_found(store):
    engine, _ = store
    alerts = _alerts(engine)
    route = alerts["column:support.route"]
    assert route["status"] == "open"
    grown = [s for s in route["detail"]["shifts"] if s["change"] > 0]
    assert grown and grown[0]["current_share"] > grown[0]["reference_share"] + 0.05
    text = alerts["text:input"]
    assert "vault" in [t["term"] for t in text["detail"]["terms"][:3]]
    assert alerts["embedding:input"]["status"] == "open"


def test_the_eval_set_leaves_the_new_product_uncovered_and_one_call_routes_it(store):
    engine, _ = store
    pid = project_id(engine, "demo")
    coverage = [a for key, a in _alerts(engine).items() if key.startswith("coverage:input:")]
    assert coverage, "the coverage check raised no alert"
    biggest = max(coverage, key=lambda a: a["detail"].get("share", 0))
    # The new product is about a third of the last days' traffic; its largest uncovered cluster alone
    # is well over a tenth of it.
    assert "vault" in biggest["key"] and biggest["detail"]["share"] > 0.15
    routed = route_alert(engine, pid, biggest["id"], "support-review", items=20, actor="test")
    assert routed["added"] == 20
    with engine.connect() as connection:
        inputs = connection.execute(
            sa.select(traces.c.input_text)
            .join(queue_items, queue_items.c.trace_id == traces.c.trace_id)
            .where(queue_items.c.alert_id == biggest["id"])
        ).scalars()
        texts = list(inputs)
    assert len(texts) == 20
    assert sum("vault" in text.lower() for text in texts) >= 15
    assert get_alert(engine, pid, biggest["id"])["queue"] == "support-review"


def test_the_feature_page_data_shows_the_fall_and_flat_latency(store):
    engine, _ = store
    health = feature_health(engine, project_id(engine, "demo"), FEATURE, until=END - timedelta(seconds=1))
    handled = [p["value"] for p in health["outcomes"]["handled_rate"]["points"] if p["value"] is not None]
    assert sum(handled[:15]) / 15 - sum(handled[-5:]) / 5 > 0.1
    latency = [p["value"] for p in health["outcomes"]["latency_p95"]["points"] if p["value"] is not None]
    assert max(latency) / min(latency) < 1.3
    assert [r["release"] for r in health["releases"]] == ["support-v1", "support-v2"]
    assert {a["key"] for a in health["alerts"]} >= {"outcome:handled_rate", "column:support.route"}
