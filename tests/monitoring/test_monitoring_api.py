"""The monitoring API through HTTP, on SQLite and PostgreSQL: monitors, runs, alerts and routing,
who may do what, and errors in the one error shape."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from prodloop.annotation import QueueSettings, create_queue, save_schema
from prodloop.capture import TraceIn, ingest_traces
from prodloop.server import create_api_key
from prodloop.server.auth import ensure_project
from prodloop.store.schema import alerts, monitors, queue_items
from tests.conftest import auth
from tests.monitoring.support import NOW, FakeCheck, finding

DEFINITION = {
    "name": "decay",
    "feature": "support",
    "schedule": "1d",
    "reference": {"window": "14d"},
    "current": {"window": "3d"},
    "checks": [{"type": "fake", "label": "x"}],
}


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    return body["error"]  # type: ignore[no-any-return]


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_monitor_lifecycle_through_the_api(
    client: TestClient, admin_key: str, engine: sa.Engine, fake: FakeCheck
) -> None:
    admin = auth(admin_key)
    made = client.post("/api/v1/monitors", json=DEFINITION, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["definition"]["current"] == {"window": "3d"}
    error_of(client.post("/api/v1/monitors", json=DEFINITION, headers=admin), 409)
    replaced = client.put("/api/v1/monitors/decay", json={**DEFINITION, "description": "v2"}, headers=admin)
    assert replaced.status_code == 200 and replaced.json()["definition"]["description"] == "v2"
    created = client.put("/api/v1/monitors/other", json={**DEFINITION, "name": "other"}, headers=admin)
    assert created.status_code == 201
    error_of(client.put("/api/v1/monitors/x", json=DEFINITION, headers=admin), 400)  # names disagree

    viewer = auth(create_api_key(engine, "default", "viewer"))
    listed = client.get("/api/v1/monitors", headers=viewer).json()["monitors"]
    assert [m["name"] for m in listed] == ["decay", "other"]
    error_of(client.post("/api/v1/monitors", json={**DEFINITION, "name": "v"}, headers=viewer), 403)

    fake.plan = [finding(since=(NOW - timedelta(days=3)).isoformat(), until=NOW.isoformat())]
    run = client.post("/api/v1/monitors/decay/runs", json={"as_of": NOW.isoformat()}, headers=admin)
    assert run.status_code == 201, run.text
    body = run.json()
    assert body["status"] == "ok" and body["as_of"].startswith("2026-03-01T00:00:00")
    assert len(body["alerts"]["opened"]) == 1
    alert_id = body["alerts"]["opened"][0]
    runs = client.get("/api/v1/monitors/decay/runs", headers=viewer).json()["runs"]
    assert [r["id"] for r in runs] == [body["id"]] and "results" not in runs[0]
    stored = client.get(f"/api/v1/monitor-runs/{body['id']}", headers=viewer).json()
    assert stored["results"]["checks"][0]["results"] == {"label": "x", "n": 1}

    listed_alerts = client.get("/api/v1/alerts?status=open", headers=viewer).json()["alerts"]
    assert [a["id"] for a in listed_alerts] == [alert_id] and listed_alerts[0]["monitor"] == "decay"
    error_of(client.get("/api/v1/alerts?status=closed", headers=viewer), 422)
    error_of(client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=viewer), 403)
    reviewer = auth(create_api_key(engine, "default", "reviewer", name="rita"))
    acked = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"note": "on it"}, headers=reviewer)
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "rita"
    resolved = client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=reviewer).json()
    assert resolved["status"] == "resolved"
    assert [e["kind"] for e in resolved["events"]] == ["opened", "acknowledged", "resolved"]
    assert resolved["events"][1]["detail"] == {"note": "on it"}
    error_of(client.post(f"/api/v1/alerts/{alert_id}/resolve", headers=reviewer), 409)
    error_of(client.get("/api/v1/alerts/999999", headers=viewer), 404)

    disabled = client.post("/api/v1/monitors/decay/disable", headers=admin).json()
    assert disabled["enabled"] is False and disabled["next_run"] is None
    assert client.post("/api/v1/monitors/decay/enable", headers=admin).json()["next_run"] is not None


def test_bad_monitor_definitions_store_nothing(client: TestClient, admin_key: str, engine: sa.Engine) -> None:
    admin = auth(admin_key)
    error = error_of(
        client.post("/api/v1/monitors", json={**DEFINITION, "checks": [{"type": "nope"}]}, headers=admin), 422
    )
    assert "no check 'nope'" in error["message"]
    error = error_of(
        client.post("/api/v1/monitors", json={**DEFINITION, "schedule": "often"}, headers=admin), 422
    )
    assert error["detail"][0]["loc"] == "schedule"
    error_of(client.post("/api/v1/monitors", content=b"{not json", headers=admin), 400)
    error_of(client.post("/api/v1/monitors", json=[1, 2], headers=admin), 422)
    error_of(client.get("/api/v1/monitors/missing", headers=admin), 404)
    assert count(engine, monitors) == 0


def test_route_an_alert_through_the_api(
    client: TestClient, admin_key: str, engine: sa.Engine, fake: FakeCheck
) -> None:
    pid = ensure_project(engine, "default")
    ingest_traces(
        engine,
        pid,
        [
            TraceIn(
                trace_id=f"{n + 1:032x}",
                feature="support",
                input=f"q{n}",
                output=f"a{n}",
                start_time=NOW - timedelta(hours=n + 1),
            )
            for n in range(20)
        ],
    )
    save_schema(
        engine,
        pid,
        {"name": "ok", "fields": [{"name": "ok", "type": "categorical", "options": ["yes", "no"]}]},
    )
    create_queue(engine, pid, QueueSettings(name="triage", schema="ok@1"))
    admin = auth(admin_key)
    client.post("/api/v1/monitors", json=DEFINITION, headers=admin)
    fake.plan = [finding(since=(NOW - timedelta(days=1)).isoformat(), until=NOW.isoformat())]
    alert_id = client.post(
        "/api/v1/monitors/decay/runs", json={"as_of": NOW.isoformat()}, headers=admin
    ).json()["alerts"]["opened"][0]
    reviewer = auth(create_api_key(engine, "default", "reviewer"))
    error_of(client.post(f"/api/v1/alerts/{alert_id}/route", json={"queue": "nope"}, headers=reviewer), 404)
    error_of(
        client.post(
            f"/api/v1/alerts/{alert_id}/route", json={"queue": "triage", "items": 0}, headers=reviewer
        ),
        422,
    )
    routed = client.post(
        f"/api/v1/alerts/{alert_id}/route", json={"queue": "triage", "items": 8}, headers=reviewer
    )
    assert routed.status_code == 200, routed.text
    assert routed.json()["added"] == 8 and routed.json()["candidates"] == 20
    with engine.connect() as connection:
        linked = connection.execute(sa.select(queue_items.c.alert_id)).scalars().all()
        assert linked == [alert_id] * 8
        assert connection.execute(sa.select(alerts.c.routed_items)).scalar_one() == 8
