"""The datasets API through HTTP, on SQLite and PostgreSQL: snapshots, rows, verify, exports, diffs,
checkpoints and lineage, and their errors in the one error shape."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from prodloop.server import create_api_key
from prodloop.store.schema import dataset_rows
from tests.conftest import auth
from tests.datasets.support import Labelled, labelled_queue, trace_id


@pytest.fixture
def setup(engine: sa.Engine) -> Labelled:
    return labelled_queue(engine, project="default")


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    return body["error"]  # type: ignore[no-any-return]


def test_snapshot_list_show_rows_verify_and_export(
    client: TestClient, admin_key: str, setup: Labelled, engine: sa.Engine
) -> None:
    admin = auth(admin_key)
    made = client.post("/api/v1/datasets", json={"queue": "intents", "name": "train"}, headers=admin)
    assert made.status_code == 201, made.text
    snapshot = made.json()
    assert snapshot["created"] and snapshot["counts"] == {"rows": 6, "labels": 12, "annotators": 2}
    assert snapshot["created_by"]  # the key's name or prefix
    again = client.post("/api/v1/datasets", json={"queue": "intents", "name": "train"}, headers=admin)
    assert again.status_code == 200 and again.json()["id"] == snapshot["id"] and not again.json()["created"]

    viewer = auth(create_api_key(engine, "default", "viewer"))
    listed = client.get("/api/v1/datasets", headers=viewer).json()["datasets"]
    assert [entry["id"] for entry in listed] == [snapshot["id"]]
    short = snapshot["id"][:8]
    shown = client.get(f"/api/v1/datasets/{short}", headers=viewer).json()
    assert shown["manifest"] == snapshot["manifest"]
    assert hashlib.sha256(_canonical(shown["manifest"])).hexdigest() == snapshot["id"]

    page = client.get(f"/api/v1/datasets/{short}/rows?offset=4&limit=10", headers=viewer).json()
    assert [row["position"] for row in page["rows"]] == [4, 5] and page["next_offset"] is None
    assert page["rows"][0]["trace_id"] == trace_id(4)
    assert client.get(f"/api/v1/datasets/{short}/verify", headers=viewer).json()["ok"] is True

    jsonl = client.get(f"/api/v1/datasets/{short}/export?format=jsonl", headers=viewer)
    assert jsonl.status_code == 200 and jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert hashlib.sha256(jsonl.content).hexdigest() == snapshot["manifest"]["rows_sha256"]
    assert jsonl.headers["x-prodloop-snapshot"] == snapshot["id"]
    assert len(jsonl.content.splitlines()) == 6

    parquet = client.get(f"/api/v1/datasets/{short}/export?format=parquet", headers=viewer)
    assert parquet.status_code == 200
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.column("item_id").to_pylist() == sorted(setup.items.values())
    assert json.loads(table.column("label").to_pylist()[0]) == {"intent": "billing", "urgent": "no"}

    # Tampering shows in verify.
    with engine.begin() as connection:
        connection.execute(
            dataset_rows.update()
            .where(dataset_rows.c.snapshot_id == snapshot["id"], dataset_rows.c.position == 1)
            .values(content=dataset_rows.c.content + " ")
        )
    report = client.get(f"/api/v1/datasets/{short}/verify", headers=viewer).json()
    assert not report["ok"]
    assert [p["position"] for p in report["problems"] if p["check"] == "row"] == [1]


def _canonical(value: Any) -> bytes:
    import rfc8785

    return rfc8785.dumps(value)


def test_diff_checkpoints_and_lineage(client: TestClient, admin_key: str, setup: Labelled) -> None:
    admin = auth(admin_key)
    train = client.post("/api/v1/datasets", json={"queue": "intents", "name": "train"}, headers=admin).json()
    body = {"queue": "intents", "name": "évaluation 1/2", "aggregation": "adjudicated"}
    evaluation = client.post("/api/v1/datasets", json=body, headers=admin).json()
    download = client.get(f"/api/v1/datasets/{evaluation['id']}/export", headers=admin)
    assert download.status_code == 200 and len(download.content.splitlines()) == 5
    assert (
        f'filename="valuation-1-2-{evaluation["id"][:12]}.jsonl"' in download.headers["content-disposition"]
    )

    diff = client.get(f"/api/v1/datasets/{train['id'][:8]}/diff/{evaluation['id'][:8]}", headers=admin).json()
    assert diff["counts"] == {"added": 0, "removed": 1, "relabelled": 1, "unchanged": 4}
    assert diff["removed"][0]["trace_id"] == trace_id(5)
    assert diff["relabelled"][0]["changes"] == [{"field": "intent", "a": "billing", "b": "refund"}]

    checkpoint = {
        "name": "ft-1",
        "datasets": [{"snapshot_id": train["id"][:8]}, {"snapshot_id": evaluation["id"], "purpose": "eval"}],
        "base_model": "qwen2.5-7b",
    }
    created = client.post("/api/v1/checkpoints", json=checkpoint, headers=admin)
    assert created.status_code == 201, created.text
    assert [d["purpose"] for d in created.json()["datasets"]] == ["train", "eval"]
    conflict = error_of(client.post("/api/v1/checkpoints", json=checkpoint, headers=admin), 409)
    assert conflict["code"] == "conflict" and "ft-1" in conflict["message"]
    listed = client.get("/api/v1/checkpoints", headers=admin).json()["checkpoints"]
    assert [entry["name"] for entry in listed] == ["ft-1"]

    lineage = client.get("/api/v1/checkpoints/ft-1/lineage", headers=admin).json()
    expected = set(train["manifest"]["label_ids"]) | set(evaluation["manifest"]["label_ids"])
    assert {label["id"] for label in lineage["labels"]} == expected
    trace = client.get(f"/api/v1/traces/{trace_id(3)}/lineage", headers=admin).json()
    assert [s["name"] for s in trace["snapshots"]] == ["train", "évaluation 1/2"]
    assert {c["purpose"] for c in trace["checkpoints"]} == {"train", "eval"}
    assert len(trace["labels"]) == 3


def test_errors_keep_the_one_shape(
    client: TestClient, admin_key: str, setup: Labelled, engine: sa.Engine
) -> None:
    admin = auth(admin_key)
    viewer = auth(create_api_key(engine, "default", "viewer"))
    denied = error_of(
        client.post("/api/v1/datasets", json={"queue": "intents", "name": "x"}, headers=viewer), 403
    )
    assert denied["code"] == "forbidden"
    bad = error_of(
        client.post(
            "/api/v1/datasets", json={"queue": "intents", "name": "x", "aggregation": "vote"}, headers=admin
        ),
        422,
    )
    assert "aggregation" in bad["message"]
    assert (
        error_of(client.post("/api/v1/datasets", content=b"{", headers=admin), 400)["code"]
        == "invalid_request"
    )
    missing = error_of(
        client.post("/api/v1/datasets", json={"queue": "nope", "name": "x"}, headers=admin), 404
    )
    assert "queue 'nope' does not exist" in missing["message"]
    assert error_of(client.get("/api/v1/datasets/abc", headers=admin), 422)["code"] == "validation_failed"
    assert (
        error_of(client.get(f"/api/v1/datasets/{'0' * 64}/rows", headers=admin), 404)["code"] == "not_found"
    )
    assert error_of(client.get("/api/v1/datasets/deadbeef/export?format=csv", headers=admin), 422)
    assert error_of(client.get("/api/v1/checkpoints/nope/lineage", headers=admin), 404)
    assert error_of(client.get(f"/api/v1/traces/{'e' * 32}/lineage", headers=admin), 404)
    unknown = {"name": "ft", "datasets": [{"snapshot_id": "deadbeef"}]}
    assert error_of(client.post("/api/v1/checkpoints", json=unknown, headers=admin), 404)
    assert error_of(client.get("/api/v1/datasets"), 401)["code"] == "unauthorized"


def test_openapi_describes_the_datasets_routes_with_standalone_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/api/v1/datasets",
        "/api/v1/datasets/{snapshot}/rows",
        "/api/v1/datasets/{a}/diff/{b}",
        "/api/v1/checkpoints/{name}/lineage",
        "/api/v1/traces/{trace_id}/lineage",
    } <= set(spec["paths"])
    body = spec["paths"]["/api/v1/checkpoints"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert "$defs" not in json.dumps(body)
    assert body["properties"]["datasets"]["items"]["properties"]["purpose"]["enum"] == ["train", "eval"]
