"""Monitors, runs and alerts on both databases, with a check whose findings each test decides:
deduplication, the lifecycle, auto-resolve, a failing check, webhooks to a real HTTP server, and
routing an alert's slice into an annotation queue."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from prodloop.annotation import QueueSettings, create_queue, save_schema
from prodloop.capture import TraceIn, ingest_traces
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.monitoring.alerts import acknowledge_alert, get_alert, list_alerts, resolve_alert
from prodloop.monitoring.monitors import get_monitor, list_monitors, save_monitor, set_monitor_enabled
from prodloop.monitoring.routing import route_alert
from prodloop.monitoring.runs import list_runs, run_monitor
from prodloop.server.auth import ensure_project
from prodloop.store.schema import queue_items
from tests.monitoring.support import NOW, FakeCheck, finding


def monitor(**extra: Any) -> dict[str, Any]:
    return {"name": "decay", "feature": "support", "checks": [{"type": "fake", "label": "x"}], **extra}


def test_definition_is_validated_and_stored_normalised(engine: sa.Engine, fake: FakeCheck) -> None:
    pid = ensure_project(engine, "shop")
    stored, created = save_monitor(
        engine, pid, monitor(schedule="1d", reference={"window": "336h"}, current={"window": 259200})
    )
    assert created
    assert stored["definition"]["reference"] == {"window": "2w"}
    assert stored["definition"]["current"] == {"window": "3d"}
    assert stored["definition"]["checks"] == [{"type": "fake", "label": "x"}]
    assert stored["schedule_seconds"] == 86400 and stored["next_run"] is not None
    with pytest.raises(Conflict, match="exists"):
        save_monitor(engine, pid, monitor())
    replaced, created = save_monitor(engine, pid, monitor(description="v2"), replace=True)
    assert not created and replaced["id"] == stored["id"] and replaced["next_run"] is None
    assert [m["name"] for m in list_monitors(engine, pid)] == ["decay"]
    paused = set_monitor_enabled(engine, pid, "decay", False)
    assert paused["enabled"] is False and paused["definition"]["enabled"] is False


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"name": "m", "feature": "f", "checks": [{"type": "nope"}]}, "checks.0: no check 'nope'"),
        ({"name": "m", "feature": "f", "checks": [{"type": "fake", "label": 3}]}, "checks.0 (fake): label"),
        ({"name": "m", "feature": "f", "checks": []}, "checks"),
        ({"name": "m", "feature": "f", "checks": [{"type": "fake"}], "schedule": "soon"}, "not a duration"),
        (
            {
                "name": "m",
                "feature": "f",
                "checks": [{"type": "fake"}],
                "reference": {"window": "1d", "release": "v1"},
            },
            "exactly one of window, release",
        ),
        ({"name": "bad name!", "feature": "f", "checks": [{"type": "fake"}]}, "name"),
    ],
)
def test_bad_definitions_name_the_problem(
    engine: sa.Engine, fake: FakeCheck, document: dict, message: str
) -> None:
    pid = ensure_project(engine, "shop")
    with pytest.raises(ValidationFailed, match=re.escape(message)):
        save_monitor(engine, pid, document)
    assert list_monitors(engine, pid) == []


def test_windows_slide_with_the_run(engine: sa.Engine, fake: FakeCheck) -> None:
    pid = ensure_project(engine, "shop")
    save_monitor(engine, pid, monitor(reference={"window": "14d"}, current={"window": "3d"}))
    run_monitor(engine, pid, "decay", as_of=NOW)
    context = fake.contexts[-1]
    assert context.current == (NOW - timedelta(days=3), NOW)
    assert context.reference == (NOW - timedelta(days=17), NOW - timedelta(days=3))
    save_monitor(engine, pid, monitor(reference={"release": "v1"}), replace=True)
    run_monitor(engine, pid, "decay", as_of=NOW)
    assert fake.contexts[-1].reference is None and fake.contexts[-1].reference_release == "v1"


def test_findings_become_deduplicated_alerts_with_a_lifecycle(engine: sa.Engine, fake: FakeCheck) -> None:
    pid = ensure_project(engine, "shop")
    save_monitor(engine, pid, monitor())
    fake.plan = [finding(), finding("column:route", "route drifted")]
    first = run_monitor(engine, pid, "decay", as_of=NOW)
    assert first["status"] == "ok" and len(first["alerts"]["opened"]) == 2
    assert first["results"]["checks"][0]["results"] == {"label": "x", "n": 2}
    second = run_monitor(engine, pid, "decay", as_of=NOW + timedelta(days=1))
    assert second["alerts"]["opened"] == [] and sorted(second["alerts"]["seen"]) == sorted(
        first["alerts"]["opened"]
    )
    alerts = {a["key"]: a for a in list_alerts(engine, pid)}
    assert len(alerts) == 2 and alerts["outcome:handled_rate"]["occurrences"] == 2
    alert_id = alerts["outcome:handled_rate"]["id"]

    acked = acknowledge_alert(engine, pid, alert_id, "ana", note="looking")
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "ana"
    run_monitor(engine, pid, "decay", as_of=NOW + timedelta(days=2))  # still found: stays acknowledged
    assert get_alert(engine, pid, alert_id)["status"] == "acknowledged"
    assert get_alert(engine, pid, alert_id)["occurrences"] == 3

    fake.plan = [finding("column:route", "route drifted")]  # the outcome recovered
    run = run_monitor(engine, pid, "decay", as_of=NOW + timedelta(days=3))
    assert run["alerts"]["resolved"] == [alert_id]
    resolved = get_alert(engine, pid, alert_id)
    assert resolved["status"] == "resolved" and resolved["resolved_by"] == "monitor"
    assert [e["kind"] for e in resolved["events"]] == ["opened", "seen", "acknowledged", "seen", "resolved"]
    with pytest.raises(Conflict, match="resolved already"):
        resolve_alert(engine, pid, alert_id, "ana")

    fake.plan = [finding()]  # it comes back: a new alert, the old one stays resolved
    again = run_monitor(engine, pid, "decay", as_of=NOW + timedelta(days=4))
    assert len(again["alerts"]["opened"]) == 1 and again["alerts"]["opened"][0] != alert_id
    assert [a["status"] for a in list_alerts(engine, pid, status="unresolved")] == ["open"]
    assert get_monitor(engine, pid, "decay")["open_alerts"] == 1
    assert len(list_runs(engine, pid, "decay")) == 5
    with pytest.raises(NotFound):
        get_alert(engine, ensure_project(engine, "other"), alert_id)


def test_a_failing_check_is_reported_as_its_own_and_resolves_nothing(
    engine: sa.Engine, fake: FakeCheck
) -> None:
    pid = ensure_project(engine, "shop")
    save_monitor(engine, pid, monitor())
    fake.plan = [finding()]
    run_monitor(engine, pid, "decay", as_of=NOW)
    fake.plan = RuntimeError("the metric store is down")
    run = run_monitor(engine, pid, "decay", as_of=NOW + timedelta(days=1))
    assert run["status"] == "failed"
    assert run["error"] == "checks.0 (fake) failed: RuntimeError: the metric store is down"
    assert run["results"]["checks"][0]["status"] == "failed"
    assert [a["status"] for a in list_alerts(engine, pid)] == ["open"]  # not auto-resolved


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_gets_opened_and_resolved_alerts(engine: sa.Engine, fake: FakeCheck) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    try:
        pid = ensure_project(engine, "shop")
        save_monitor(engine, pid, monitor(webhook=f"http://127.0.0.1:{server.server_port}/hook"))
        fake.plan = [finding()]
        run_monitor(engine, pid, "decay", as_of=NOW)
        fake.plan = []
        run_monitor(engine, pid, "decay", as_of=NOW + timedelta(days=1))
    finally:
        server.shutdown()
        server.server_close()
    assert [(r["event"], r["alert"]["status"]) for r in _Hook.received] == [
        ("alert.opened", "open"),
        ("alert.resolved", "resolved"),
    ]
    assert _Hook.received[0]["alert"]["title"] == "handled rate fell"
    events = get_alert(engine, pid, _Hook.received[0]["alert"]["id"])["events"]
    assert {"event": "alert.opened", "status": 204} in [e["detail"] for e in events if e["kind"] == "webhook"]


def test_an_unreachable_webhook_is_recorded_and_loses_nothing(engine: sa.Engine, fake: FakeCheck) -> None:
    pid = ensure_project(engine, "shop")
    with socket_port() as port:  # a port nobody listens on
        save_monitor(engine, pid, monitor(webhook=f"http://127.0.0.1:{port}/hook"))
    fake.plan = [finding()]
    run = run_monitor(engine, pid, "decay", as_of=NOW)
    alert = get_alert(engine, pid, run["alerts"]["opened"][0])
    webhook = [e for e in alert["events"] if e["kind"] == "webhook"]
    assert len(webhook) == 1 and "ConnectError" in webhook[0]["detail"]["error"]


class socket_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *args: Any) -> None:
        self.sock.close()


def _traces(engine: sa.Engine, pid: int) -> list[str]:
    """30 traces over three days, channel web or email, for routing."""
    rows = []
    for n in range(30):
        rows.append(
            TraceIn(
                trace_id=f"{n + 1:032x}",
                feature="support",
                input=f"question {n}",
                output=f"answer {n}",
                start_time=NOW - timedelta(days=3) + timedelta(hours=2 * n),
                attributes={"support.channel": "email" if n % 3 == 0 else "web"},
            )
        )
    ingest_traces(engine, pid, rows)
    return [r.trace_id for r in rows]


def _queue(engine: sa.Engine, pid: int) -> None:
    save_schema(
        engine,
        pid,
        {"name": "quality", "fields": [{"name": "ok", "type": "categorical", "options": ["yes", "no"]}]},
    )
    create_queue(engine, pid, QueueSettings(name="triage", schema="quality@1"))


def test_routing_sends_a_stratified_ranked_slice_with_the_alert_linked(
    engine: sa.Engine, fake: FakeCheck
) -> None:
    pid = ensure_project(engine, "shop")
    ids = _traces(engine, pid)
    _queue(engine, pid)
    save_monitor(engine, pid, monitor(route={"queue": "triage", "items": 6}))
    ranked = ids[::-1]
    strata = {tid: ("new-cluster" if n % 2 else "old-cluster") for n, tid in enumerate(ranked)}
    fake.plan = [finding(trace_ids=ranked, strata=strata)]
    run = run_monitor(engine, pid, "decay", as_of=NOW)
    alert_id = run["alerts"]["opened"][0]
    assert run["routed"][0]["added"] == 6 and run["routed"][0]["strata"] == ["new-cluster", "old-cluster"]
    with engine.connect() as connection:
        items = connection.execute(
            sa.select(queue_items.c.trace_id, queue_items.c.alert_id, queue_items.c.source)
        ).all()
    assert len(items) == 6
    assert {(i.alert_id, i.source) for i in items} == {(alert_id, "alert")}
    # Only the most telling candidates (3 per item asked) are offered, split evenly between strata.
    assert {i.trace_id for i in items} <= set(ranked[:18])
    assert sum(strata[i.trace_id] == "new-cluster" for i in items) == 3
    alert = get_alert(engine, pid, alert_id)
    assert alert["queue"] == "triage" and alert["routed_items"] == 6
    # Routing again adds only what is not in the queue yet.
    again = route_alert(engine, pid, alert_id, "triage", items=6, actor="ana")
    assert again["added"] + again["skipped"] == 6 and again["skipped"] == 6


def test_routing_a_filter_slice_by_attribute(engine: sa.Engine, fake: FakeCheck) -> None:
    pid = ensure_project(engine, "shop")
    ids = _traces(engine, pid)
    _queue(engine, pid)
    save_monitor(engine, pid, monitor())
    since, until = NOW - timedelta(days=3), NOW - timedelta(days=1)
    fake.plan = [
        finding(since=since.isoformat(), until=until.isoformat(), attributes={"support.channel": "email"})
    ]
    alert_id = run_monitor(engine, pid, "decay", as_of=NOW)["alerts"]["opened"][0]
    routed = route_alert(engine, pid, alert_id, "triage", items=100)
    expected = {ids[n] for n in range(30) if n % 3 == 0 and n * 2 < 48}
    with engine.connect() as connection:
        got = set(connection.execute(sa.select(queue_items.c.trace_id)).scalars())
    assert got == expected and routed["added"] == len(expected)
    with pytest.raises(NotFound, match="queue"):
        route_alert(engine, pid, alert_id, "nope")
