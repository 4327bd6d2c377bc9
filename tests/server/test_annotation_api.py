"""The annotation API: schemas, queues and items, the lease loop, append-only corrections and their
history, review and adjudication, label quality, annotator keys, roles and the one error shape."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from prodloop.server import create_api_key
from prodloop.settings import Settings
from prodloop.store.schema import api_keys, escalations, labels, queue_items
from tests.conftest import auth
from tests.server.test_error_shape import assert_error_shape

SCHEMA_YAML = b"""
name: support-intent
description: Why the customer wrote in.
guidelines: |
  # Intent
  Pick the main reason the customer wrote.
fields:
  - name: intent
    type: categorical
    options: [billing, refund, bug, other]
    help: The main reason.
  - name: severity
    type: ordinal
    options: [low, medium, high]
    required: false
  - name: score
    type: numeric
    minimum: 0
    maximum: 1
    required: false
"""
YAML = {"Content-Type": "application/yaml"}


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


class Api:
    """One key's view of the API, failing loudly on an unexpected status."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client, self.headers = client, auth(key)

    def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)
        assert response.status_code == status, response.text
        if response.status_code >= 400:
            assert_error_shape(response.json(), response.json()["error"]["code"])
        return response.json() if response.content else None

    def get(self, path: str, status: int = 200, **kwargs: Any) -> Any:
        return self.call("GET", path, status, **kwargs)

    def post(self, path: str, body: Any = None, status: int = 200, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["json"] = body
        return self.call("POST", path, status, **kwargs)

    def lease(self, queue: str = "intents") -> Any:
        return self.post(f"/queues/{queue}/lease")

    def label(self, item: int, value: dict[str, Any], status: int = 201) -> Any:
        return self.post(f"/items/{item}/labels", {"value": value}, status)


@pytest.fixture
def admin(client: TestClient, admin_key: str) -> Api:
    return Api(client, admin_key)


def key(client: TestClient, engine: sa.Engine, role: str, name: str, project: str = "default") -> Api:
    return Api(client, create_api_key(engine, project, role, name=name))


def make_queue(admin: Api, items: int = 3, **settings: Any) -> list[int]:
    """Schema support-intent@1 and queue `intents` with ``items`` items; returns their ids in lease
    order (highest priority first)."""
    admin.post("/schemas", status=201, content=SCHEMA_YAML, headers=YAML)
    admin.post("/queues", {"name": "intents", "schema": "support-intent@1", **settings}, 201)
    rows = [{"id": f"t-{n}", "input": f"question {n}", "priority": items - n} for n in range(items)]
    assert admin.post("/queues/intents/items", {"items": rows}) == {"added": items, "skipped": 0}
    with admin.client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        ids = connection.execute(
            sa.select(queue_items.c.id).order_by(queue_items.c.priority.desc(), queue_items.c.id)
        )
        return [int(item_id) for item_id in ids.scalars()]


# --------------------------------------------------------------------------------------------------
# Schemas


def test_schemas_from_yaml_and_json_are_versioned(admin: Api, engine: sa.Engine) -> None:
    first = admin.post("/schemas", status=201, content=SCHEMA_YAML, headers=YAML)
    assert first["created"] is True
    assert first["schema"]["version"] == 1
    assert first["schema"]["fields"][0]["options"] == ["billing", "refund", "bug", "other"]
    assert "Pick the main reason" in first["schema"]["guidelines"]

    again = admin.post("/schemas", status=200, content=SCHEMA_YAML, headers=YAML)
    assert again["created"] is False and again["schema"]["version"] == 1

    edited = {**first["schema"], "guidelines": "Pick the reason; refunds win over billing."}
    edited.pop("version")
    second = admin.post("/schemas", edited, 201)
    assert second["schema"]["version"] == 2

    assert admin.get("/schemas/support-intent")["version"] == 2
    assert admin.get("/schemas/support-intent@1")["guidelines"].startswith("# Intent")
    [listed] = admin.get("/schemas")["schemas"]
    assert listed["latest"] == "support-intent@2" and listed["fields"] == ["intent", "severity", "score"]
    versions = admin.get("/schemas/support-intent/versions")["versions"]
    assert [v["ref"] for v in versions] == ["support-intent@1", "support-intent@2"]
    assert versions[0]["content_hash"] != versions[1]["content_hash"]
    assert versions[0]["created_by"].startswith("key pl_"), "who saved it: the admin key, by its prefix"

    missing = admin.get("/schemas/support-intent@7", 404)
    assert "support-intent@2" in missing["error"]["message"]
    assert admin.post("/schemas", {**edited, "version": 5}, 409)["error"]["detail"]["next"] == 3


@pytest.mark.parametrize(
    ("content", "headers", "status", "words"),
    [
        (b"name: [unclosed", YAML, 400, "not valid YAML"),
        (b"- a list\n- not a schema\n", YAML, 422, "not list"),
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"name": "x", "fields": [{"name": "f", "type": "categorical"}]}', {}, 422, "options"),
    ],
)
def test_a_bad_schema_is_refused_and_nothing_is_stored(
    admin: Api, engine: sa.Engine, content: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    error = admin.post("/schemas", status=status, content=content, headers=headers)["error"]
    assert words in error["message"]
    assert admin.get("/schemas") == {"schemas": []}


# --------------------------------------------------------------------------------------------------
# Queues and items


def test_queue_settings_and_items_from_rows(admin: Api, engine: sa.Engine, settings: Settings) -> None:
    make_queue(admin, items=2, overlap=2, lease_seconds=60)
    queue = admin.get("/queues/intents")
    assert queue["schema"] == "support-intent@1" and queue["overlap"] == 2
    assert queue["progress"]["items"] == 2 and queue["progress"]["labels_needed"] == 4
    assert admin.get(f"/queues/{queue['id']}")["name"] == "intents"
    assert [q["name"] for q in admin.get("/queues")["queues"]] == ["intents"]

    # The same row again is skipped; a gold row counts apart from the items to label.
    rows = [
        {"id": "t-0", "input": "question 0"},
        {"id": "g-1", "input": "I was charged twice", "gold": {"intent": "billing"}},
    ]
    assert admin.post("/queues/intents/items", {"items": rows}) == {"added": 1, "skipped": 1}
    assert admin.get("/queues/intents")["progress"]["gold_items"] == 1

    # A guideline change: the queue moves to version 2, the labels given keep version 1.
    admin.label(admin.lease()["item"]["id"], {"intent": "bug"})
    edited = admin.get("/schemas/support-intent@1") | {"guidelines": "Refunds win over billing."}
    edited.pop("version")
    admin.post("/schemas", edited, 201)
    assert admin.call("PUT", "/queues/intents/schema", json={"schema": "support-intent@2"})["schema"] == (
        "support-intent@2"
    )
    assert admin.lease()["schema"] == "support-intent@2"
    [given] = admin.get("/queues/intents/agreement/by-version?n_resamples=0")["versions"]
    assert given["schema"] == "support-intent@1"
    admin.post("/schemas", {**edited, "name": "other"}, 201)
    assert admin.call("PUT", "/queues/intents/schema", 422, json={"schema": "other@1"})
    assert admin.call("PUT", "/queues/intents/schema", 404, json={"schema": "support-intent@9"})

    assert admin.post("/queues", {"name": "intents", "schema": "support-intent@1"}, 409)
    assert admin.post("/queues", {"name": "other", "schema": "nope@1"}, 404)
    error = admin.post("/queues", {"name": "x", "schema": "support-intent", "overlap": 0}, 422)["error"]
    assert error["detail"][0]["loc"] == "overlap"


def test_bad_items_are_refused_whole(admin: Api, engine: sa.Engine, settings: Settings) -> None:
    make_queue(admin, items=1)
    before = count(engine, queue_items)
    rows = [{"id": "ok", "input": "fine"}, {"id": "bad", "input": "x", "gold": {"intent": "maybe"}}]
    error = admin.post("/queues/intents/items", {"items": rows}, 422)["error"]
    assert error["message"].startswith("item row 2: gold: label 'maybe' is not an option of field 'intent'")
    error = admin.post("/queues/intents/items", {"items": [{"input": "x", "colour": "red"}]}, 422)["error"]
    assert error["detail"][0]["loc"] == "items.0.colour"
    nan = b'{"items": [{"input": "x"}, {"input": {"temperature": NaN}}]}'
    error = admin.post("/queues/intents/items", content=nan, status=422)["error"]
    assert "items.1.input.temperature" in error["message"]
    settings.max_batch_items = 2
    many = {"items": [{"input": f"q{n}"} for n in range(3)]}
    assert "PRODLOOP_MAX_BATCH_ITEMS" in admin.post("/queues/intents/items", many, 422)["error"]["message"]
    assert admin.post("/queues/nope/items", {"items": [{"input": "x"}]}, 404)
    assert count(engine, queue_items) == before


def test_items_from_traces_with_a_sample(admin: Api, engine: sa.Engine) -> None:
    traces = [
        {"feature": "support" if n % 3 else "search", "input": f"question {n}", "output": f"answer {n}"}
        for n in range(12)
    ]
    admin.post("/traces", {"traces": traces})
    admin.post("/schemas", status=201, content=SCHEMA_YAML, headers=YAML)
    admin.post("/queues", {"name": "intents", "schema": "support-intent"}, 201)

    body = {"feature": "support", "n": 3, "sample": "random", "seed": 7, "priority": 5}
    result = admin.post("/queues/intents/items/from-traces", body)
    assert result == {"added": 3, "skipped": 0, "matched": 8}
    again = admin.post("/queues/intents/items/from-traces", body)
    assert again == {"added": 0, "skipped": 3, "matched": 8}, "the same seed picks the same traces"
    stratified = {"n": 6, "sample": "stratified", "stratify_by": "feature"}
    assert admin.post("/queues/intents/items/from-traces", stratified)["matched"] == 12

    leased = admin.lease()["item"]
    assert len(leased["trace_id"]) == 32
    assert leased["priority"] == 5 and leased["metadata"]["feature"] == "support"
    assert leased["input"].startswith("question ")
    error = admin.post("/queues/intents/items/from-traces", {"sample": "biggest"}, 422)["error"]
    assert error["detail"][0]["loc"] == "sample"


# --------------------------------------------------------------------------------------------------
# The annotator's loop


def test_lease_submit_skip_release_escalate(client: TestClient, admin: Api, engine: sa.Engine) -> None:
    first, second, third = make_queue(admin, items=3, overlap=1)
    ann = key(client, engine, "annotator", "ann")

    leased = ann.lease()
    assert leased["item"]["id"] == first and leased["schema"] == "support-intent@1"
    assert leased["lease"]["expires_at"].endswith("Z")
    assert "gold" not in leased["item"] and "labels" not in leased["item"]
    assert ann.lease()["item"]["id"] == first, "a reload gets the same item, not a second one"

    # 409 without a lease (the second item was never leased).
    error = ann.label(second, {"intent": "bug"}, 409)["error"]
    assert "lease it with POST /api/v1/queues/intents/lease" in error["message"]

    done = ann.label(first, {"intent": "refund", "severity": "high"})
    assert "item_status" not in done  # blind: the item's status would tell what others answered
    assert admin.get(f"/items/{first}/history")["status"] == "done"
    assert ann.get(f"/items/{first}/history")["status"] is None
    assert done["label"]["value"] == {"intent": "refund", "severity": "high", "score": None}
    assert ann.label(first, {"intent": "bug"}, 409)["error"]["detail"]["label"] == done["label"]["id"]

    assert ann.lease()["item"]["id"] == second
    assert ann.post(f"/items/{second}/release") == {"item": second, "released": True}
    assert ann.lease()["item"]["id"] == second, "a released item is offered again"
    assert ann.post(f"/items/{second}/skip", {"reason": "not English"})["skipped"] is True

    assert ann.lease()["item"]["id"] == third, "a skipped item is not offered again"
    error = ann.post(f"/items/{third}/escalate", {"note": "?", "field": "mood"}, 422)["error"]
    assert "intent, severity, score" in error["message"]
    assert count(engine, escalations) == 0
    escalated = ann.post(f"/items/{third}/escalate", {"note": "billing or refund?", "field": "intent"}, 201)
    assert escalated["field"] == "intent"

    assert ann.post("/queues/intents/lease", status=204) is None
    progress = admin.get("/queues/intents")["progress"]
    assert progress["done"] == 1 and progress["open"] == 2 and progress["open_escalations"] == 1
    assert admin.post("/queues/nope/lease", status=404)


def test_a_bad_label_names_field_value_and_options_and_stores_nothing(
    client: TestClient, admin: Api, engine: sa.Engine
) -> None:
    [item] = make_queue(admin, items=1)
    admin.lease()
    error = admin.label(item, {"intent": "maybe"}, 422)["error"]
    assert error["message"] == (
        "label 'maybe' is not an option of field 'intent' (schema support-intent v1 allows: "
        "billing, refund, bug, other)"
    )
    assert error["detail"][0] | {"message": ""} == {
        "field": "intent",
        "value": "maybe",
        "problem": "not an option",
        "allowed": ["billing", "refund", "bug", "other"],
        "message": "",
    }
    # NaN and infinities are not JSON, yet clients send them: still a 422 in valid JSON.
    for raw in (b'{"value": {"intent": "bug", "score": NaN}}', b'{"value": {"intent": -Infinity}}'):
        response = client.post(
            f"/api/v1/items/{item}/labels",
            content=raw,
            headers={**admin.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, response.text
        problem = json.loads(response.text)["error"]["detail"][0]
        assert problem["value"] in ("NaN", "-Infinity")
    assert (
        admin.label(item, {"intent": "bug", "colour": "red"}, 422)["error"]["detail"][0]["field"] == "colour"
    )
    assert admin.post(f"/items/{item}/labels", {"intent": "bug"}, 422)["error"]["detail"][0]["loc"] == "value"
    assert admin.label(item, {}, 422)["error"]["detail"][0]["problem"] == "missing"
    assert count(engine, labels) == 0
    assert admin.label(item, {"intent": "bug", "score": 0.5})["label"]["value"]["score"] == 0.5


def test_an_expired_lease_returns_the_item(
    client: TestClient, admin: Api, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prodloop.annotation import leases

    [item] = make_queue(admin, items=1, overlap=1, lease_seconds=10)
    slow, fast = (key(client, engine, "annotator", name) for name in ("slow", "fast"))
    assert slow.lease()["item"]["id"] == item
    assert fast.post("/queues/intents/lease", status=204) is None, "the item is held"

    later = time.time_ns() + 11 * 1_000_000_000
    monkeypatch.setattr(leases, "time", SimpleNamespace(time_ns=lambda: later))
    assert fast.lease()["item"]["id"] == item, "an expired lease returns the item by itself"
    error = slow.label(item, {"intent": "bug"}, 409)["error"]
    assert "expired" in error["message"]
    assert fast.label(item, {"intent": "bug"})["label"]["item_id"] == item


# --------------------------------------------------------------------------------------------------
# Append-only history


def test_corrections_keep_every_version_with_who_when_and_why(
    client: TestClient, admin: Api, engine: sa.Engine
) -> None:
    [item] = make_queue(admin, items=1, overlap=2)
    ann, other = (key(client, engine, "annotator", name) for name in ("ann", "other"))
    reviewer = key(client, engine, "reviewer", "rev")
    ann.lease()
    original = ann.label(item, {"intent": "billing"})["label"]
    other.lease()
    theirs = other.label(item, {"intent": "bug"})["label"]

    mine = ann.post(
        f"/labels/{original['id']}/corrections", {"value": {"intent": "refund"}, "reason": "misread"}, 201
    )
    assert mine["supersedes"] == original["id"] and mine["reason"] == "misread"
    error = ann.post(
        f"/labels/{theirs['id']}/corrections", {"value": {"intent": "refund"}, "reason": "x"}, 403
    )["error"]
    assert "reviewer" in error["message"]
    error = ann.post(
        f"/labels/{original['id']}/corrections", {"value": {"intent": "bug"}, "reason": "again"}, 409
    )["error"]
    assert error["detail"]["current"] == mine["id"]
    assert ann.post(f"/labels/{mine['id']}/corrections", {"value": {"intent": "bug"}}, 422)
    assert ann.post(f"/labels/{mine['id']}/corrections", {"value": {"intent": "?"}, "reason": "r"}, 422)
    by_reviewer = reviewer.post(
        f"/labels/{mine['id']}/corrections",
        {"value": {"intent": "billing"}, "reason": "guideline 2: double charges are billing"},
        201,
    )
    viewer = key(client, engine, "viewer", "viewer")
    assert viewer.post(f"/labels/{mine['id']}/corrections", {"value": {}, "reason": "r"}, 403)

    history = admin.get(f"/items/{item}/history")
    versions = history["labels"]
    assert [v["id"] for v in versions] == [original["id"], theirs["id"], mine["id"], by_reviewer["id"]]
    assert [v["supersedes"] for v in versions] == [None, None, original["id"], mine["id"]]
    assert [v["current"] for v in versions] == [False, True, False, True]
    assert [v["annotator"] for v in versions] == ["ann", "other", "ann", "ann"]
    assert [v["author"] for v in versions] == ["ann", "other", "ann", "rev"]
    assert [v["reason"] for v in versions] == [
        None,
        None,
        "misread",
        "guideline 2: double charges are billing",
    ]
    assert [v["value"]["intent"] for v in versions] == ["billing", "bug", "refund", "billing"]
    times = [v["created_ns"] for v in versions]
    assert times == sorted(times) and all(v["created_at"].endswith("Z") for v in versions)

    # Blind: an annotator's key sees its own labels only; a viewer or reviewer sees all.
    blind = ann.get(f"/items/{item}/history")["labels"]
    assert [v["id"] for v in blind] == [original["id"], mine["id"], by_reviewer["id"]]
    assert len(viewer.get(f"/items/{item}/history")["labels"]) == 4
    assert admin.get("/items/999999/history", 404)


# --------------------------------------------------------------------------------------------------
# Review and adjudication


def test_disagreement_goes_to_review_and_adjudication_settles_it(
    client: TestClient, admin: Api, engine: sa.Engine
) -> None:
    agreed, disputed, unclear = make_queue(admin, items=3, overlap=2)
    one, two = (key(client, engine, "annotator", name) for name in ("one", "two"))
    reviewer = key(client, engine, "reviewer", "rev")
    for ann, answers in ((one, ["bug", "billing"]), (two, ["bug", "refund"])):
        for answer in answers:
            ann.label(ann.lease()["item"]["id"], {"intent": answer})
    assert one.post(
        f"/items/{unclear}/escalate", {"note": "is a chargeback billing?", "field": "intent"}, 201
    )

    assert one.get("/queues/intents/review", 403)
    review = reviewer.get("/queues/intents/review")
    assert review["total"] == 2 and "Pick the main reason" in review["schema"]["guidelines"]
    by_id = {item["id"]: item for item in review["items"]}
    assert set(by_id) == {disputed, unclear}
    assert by_id[disputed]["disagreeing_fields"] == ["intent"]
    assert sorted(label["value"]["intent"] for label in by_id[disputed]["labels"]) == ["billing", "refund"]
    assert by_id[unclear]["escalations"][0]["note"] == "is a chargeback billing?"
    notes = reviewer.get("/queues/intents/escalations")["fields"]
    assert notes[0]["field"] == "intent" and notes[0]["open"] == 1

    assert one.post(f"/items/{disputed}/adjudication", {"value": {"intent": "refund"}, "rationale": "r"}, 403)
    assert reviewer.post(f"/items/{disputed}/adjudication", {"value": {"intent": "refund"}}, 422)
    final = reviewer.post(
        f"/items/{disputed}/adjudication",
        {"value": {"intent": "refund"}, "rationale": "asked for money back"},
        201,
    )
    assert final["role"] == "adjudication" and final["reason"] == "asked for money back"
    reviewer.post(
        f"/items/{unclear}/adjudication", {"value": {"intent": "billing"}, "rationale": "guide 3"}, 201
    )
    assert reviewer.get("/queues/intents/review")["total"] == 0
    progress = admin.get("/queues/intents")["progress"]
    assert progress["done"] == 3 and progress["complete"] is True and progress["open_escalations"] == 0
    assert admin.get(f"/items/{agreed}/history")["status"] == "done"


# --------------------------------------------------------------------------------------------------
# Label quality


def test_quality_numbers_are_served(client: TestClient, admin: Api, engine: sa.Engine) -> None:
    make_queue(admin, items=4, overlap=2, gold_share=0.2)
    gold = [{"id": "gold-1", "input": "charged twice", "gold": {"intent": "billing"}, "priority": 9}]
    admin.post("/queues/intents/items", {"items": gold})
    # Each annotator gets the gold item first (gold share 0.2), then the four items.
    answers = {
        "good": ["billing", "billing", "refund", "bug", "other"],
        "poor": ["bug", "billing", "refund", "bug", "other"],
    }
    for name, values in answers.items():
        ann = key(client, engine, "annotator", name)
        for value in values:
            ann.label(ann.lease()["item"]["id"], {"intent": value})

    agreement = admin.get("/queues/intents/agreement?n_resamples=50")
    intent = next(field for field in agreement["fields"] if field["field"] == "intent")
    assert intent["n_items"] == 4 and intent["percent_agreement"] == pytest.approx(1.0)
    assert intent["krippendorff_alpha"] == pytest.approx(1.0)
    assert admin.get("/queues/intents/agreement?since=2000-01-01T00:00:00Z&schema=support-intent@1")
    assert admin.get("/queues/intents/agreement?n_resamples=-1", 422)
    assert admin.get("/queues/intents/agreement/by-version?n_resamples=20")["versions"][0]["schema"] == (
        "support-intent@1"
    )

    flagged = {a["annotator"]: a for a in admin.get("/queues/intents/gold?threshold=0.9")["annotators"]}
    assert flagged["good"]["accuracy"] == 1.0 and flagged["good"]["flagged"] is False
    assert flagged["poor"]["accuracy"] == 0.0 and flagged["poor"]["flagged"] is True
    assert admin.get("/queues/intents/gold?threshold=2", 422)

    aggregate = admin.get("/queues/intents/aggregate?method=dawid-skene")
    assert aggregate["method"] == "dawid-skene"
    labels_by_item = {row["item_id"]: row["label"] for row in aggregate["fields"][0]["items"]}
    assert sorted(labels_by_item.values()) == ["billing", "bug", "other", "refund"]
    assert admin.get("/queues/intents/aggregate?method=vote", 422)

    stats = {a["annotator"]: a for a in admin.get("/queues/intents/annotators")["annotators"]}
    assert stats["good"]["labels"] == stats["poor"]["labels"] == 5
    buckets = admin.get("/queues/intents/throughput?bucket_seconds=60")["buckets"]
    assert sum(bucket["labels"] for bucket in buckets) == 10


# --------------------------------------------------------------------------------------------------
# Annotators and their keys


def test_a_model_judge_gets_a_key_of_its_own(client: TestClient, admin: Api, engine: sa.Engine) -> None:
    [item] = make_queue(admin, items=1)
    made = admin.post("/annotators", {"name": "gpt-judge", "kind": "model"}, 201)
    assert made["annotator"]["kind"] == "model" and made["key"].startswith("pl_")
    judge = Api(client, made["key"])
    assert judge.get("/me")["role"] == "annotator"
    judge.label(judge.lease()["item"]["id"], {"intent": "bug"})
    [version] = admin.get(f"/items/{item}/history")["labels"]
    assert version["annotator"] == "gpt-judge"
    listed = admin.get("/annotators")["annotators"]
    assert {"name": "gpt-judge", "kind": "model"} in [{k: a[k] for k in ("name", "kind")} for a in listed]

    keys = count(engine, api_keys)
    assert (
        "already exists"
        in admin.post("/annotators", {"name": "gpt-judge", "kind": "model"}, 409)["error"]["message"]
    )
    assert admin.post("/annotators", {"name": "x", "kind": "robot"}, 422)
    assert judge.post("/annotators", {"name": "y"}, 403)
    assert count(engine, api_keys) == keys, "a refused request makes no key"


# --------------------------------------------------------------------------------------------------
# Roles, projects and the error shape


ROLE_CHECKS = [
    ("annotator", "POST", "/schemas"),
    ("annotator", "POST", "/queues"),
    ("annotator", "POST", "/queues/intents/items"),
    ("annotator", "POST", "/queues/intents/items/from-traces"),
    ("annotator", "GET", "/queues/intents/review"),
    ("annotator", "POST", "/items/1/adjudication"),
    ("annotator", "GET", "/queues/intents/escalations"),
    ("annotator", "POST", "/annotators"),
    # Blind: label quality and datasets are computed from other people's labels.
    ("annotator", "GET", "/queues/intents/agreement"),
    ("annotator", "GET", "/queues/intents/agreement/by-version"),
    ("annotator", "GET", "/queues/intents/gold"),
    ("annotator", "GET", "/queues/intents/aggregate"),
    ("annotator", "GET", "/queues/intents/annotators"),
    ("annotator", "GET", "/datasets"),
    ("annotator", "GET", "/traces/0123456789abcdef0123456789abcdef/lineage"),
    ("viewer", "POST", "/queues/intents/lease"),
    ("viewer", "POST", "/items/1/labels"),
    ("viewer", "POST", "/items/1/skip"),
    ("viewer", "POST", "/items/1/release"),
    ("viewer", "POST", "/items/1/escalate"),
    ("ingest", "GET", "/queues"),
    ("ingest", "GET", "/queues/intents/agreement"),
    ("ingest", "GET", "/items/1/history"),
    ("reviewer", "POST", "/annotators"),
    ("reviewer", "PUT", "/queues/intents/schema"),
]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_roles_are_enforced(client: TestClient, engine: sa.Engine, admin: Api) -> None:
    make_queue(admin, items=1)
    callers = {role: key(client, engine, role, role) for role in {role for role, _, _ in ROLE_CHECKS}}
    for role, method, path in ROLE_CHECKS:
        error = callers[role].call(method, path, 403, json={})["error"]
        assert role in error["message"], (role, method, path)
    assert count(engine, labels) == 0


def test_another_projects_queue_and_items_are_not_found(
    client: TestClient, engine: sa.Engine, admin: Api
) -> None:
    [item] = make_queue(admin, items=1)
    admin.lease()
    label = admin.label(item, {"intent": "bug"})["label"]
    stranger = key(client, engine, "admin", "stranger", project="elsewhere")
    assert stranger.get("/queues/intents", 404)["error"]["detail"] == {"queue": "intents"}
    assert stranger.post("/queues/intents/lease", status=404)
    assert stranger.post("/queues/intents/items", {"items": [{"input": "x"}]}, 404)
    assert stranger.label(item, {"intent": "bug"}, 404)
    assert stranger.post(f"/items/{item}/skip", status=404)
    assert stranger.get(f"/items/{item}/history", 404)
    assert stranger.post(f"/labels/{label['id']}/corrections", {"value": {"intent": "x"}, "reason": "r"}, 404)
    assert stranger.post(f"/items/{item}/adjudication", {"value": {"intent": "bug"}, "rationale": "r"}, 404)
    assert stranger.get("/schemas/support-intent", 404)
    assert stranger.get("/queues") == {"queues": []}


ERRORS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/queues", {"content": b"{oops"}, 400, "invalid_request"),
    ("POST", "/queues", {"content": b""}, 400, "invalid_request"),
    (
        "POST",
        "/queues",
        {"json": {"name": "Bad Name", "schema": "support-intent"}},
        422,
        "validation_failed",
    ),
    (
        "POST",
        "/queues",
        {"json": {"name": "q2", "schema": "support-intent", "colour": 1}},
        422,
        "validation_failed",
    ),
    ("POST", "/items/abc/labels", {"json": {"value": {}}}, 422, "validation_failed"),
    ("POST", "/items/424242/labels", {"json": {"value": {"intent": "bug"}}}, 404, "not_found"),
    ("DELETE", "/queues/intents", {}, 405, "method_not_allowed"),
    ("GET", "/queues/intents/throughput?bucket_seconds=1", {}, 422, "validation_failed"),
    ("GET", "/queues/intents/agreement?since=yesterday", {}, 422, "validation_failed"),
    ("GET", "/schemas/Not A Ref", {}, 422, "validation_failed"),
    ("POST", "/items/1/escalate", {"json": {"note": ""}}, 422, "validation_failed"),
    ("POST", "/items/1/skip", {"content": b"[1, 2]"}, 422, "validation_failed"),
]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_one_error_shape_everywhere(admin: Api, engine: sa.Engine) -> None:
    make_queue(admin, items=1)
    for method, path, kwargs, status, code in ERRORS:
        assert admin.call(method, path, status, **kwargs)["error"]["code"] == code, (method, path)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_body_over_the_size_limit_is_refused(admin: Api, settings: Settings) -> None:
    make_queue(admin, items=1)
    settings.max_request_bytes = 1000
    rows = {"items": [{"input": "x" * 2000}]}
    assert admin.post("/queues/intents/items", rows, 413)["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_openapi_spec_describes_the_annotation_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/queues/{queue}/items"]["post"]["requestBody"]
    item = body["content"]["application/json"]["schema"]["properties"]["items"]["items"]
    assert {"trace_id", "input", "gold", "priority"} <= set(item["properties"])
    assert "$ref" not in json.dumps(body), "a body schema stands alone"
    assert "application/yaml" in spec["paths"]["/api/v1/schemas"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_ids_beyond_the_store_are_clear_errors_not_crashes(client: TestClient, admin: Api) -> None:
    make_queue(admin, items=1)
    huge = "9" * 23
    assert admin.get(f"/items/{huge}/history", 422)["error"]["code"] == "validation_failed"
    assert admin.post(f"/items/{huge}/labels", {"value": {"intent": "bug"}}, 422)
    assert admin.get(f"/queues/{huge}", 404)["error"]["detail"] == {"queue": huge}
    assert admin.get("/queues/%C2%B2", 404)  # a digit, but not an ASCII one: a name
    assert "version" in admin.get(f"/schemas/support-intent@{huge}", 422)["error"]["message"]
    too_high = {"items": [{"input": "x", "priority": 2**31}]}
    assert "priority" in admin.post("/queues/intents/items", too_high, 422)["error"]["message"]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_annotators_see_queues_without_progress(client: TestClient, engine: sa.Engine, admin: Api) -> None:
    make_queue(admin, items=2)
    annotator = key(client, engine, "annotator", "ann")
    assert annotator.get("/queues/intents")["progress"] is None  # it would tell gold items apart
    assert [queue["progress"] for queue in annotator.get("/queues")["queues"]] == [None]
    assert admin.get("/queues/intents")["progress"]["items"] == 2
