"""The annotator client: a model judge with its own key labels a queue from a script, its labels count as
the judge's, the server's errors come back as prodloop errors, and a failing judge gives its item back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from prodloop.annotation import (
    AnnotatorClient,
    ItemIn,
    JudgeFailed,
    LeasedItem,
    QueueSettings,
    add_items,
    create_queue,
    current_labels,
    gold_accuracy,
    save_schema,
)
from prodloop.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from prodloop.server.auth import ensure_project
from tests.conftest import auth

SCHEMA = {
    "name": "intent",
    "guidelines": "Pick the customer's main intent.",
    "fields": [
        {"name": "intent", "type": "categorical", "options": ["billing", "bug", "refund"], "required": True},
        {"name": "note", "type": "text", "required": False},
    ],
}
BASE = "http://prodloop.test"


def keyword_judge(item: LeasedItem) -> dict[str, Any] | None:
    """A deterministic 'model': the first keyword it finds, no label when there is none."""
    for word, intent in (("invoice", "billing"), ("crash", "bug"), ("money back", "refund")):
        if word in item.input:
            return {"intent": intent}
    return None


class InProcess(httpx.BaseTransport):
    """The app in-process for a sync client: each request through httpx.ASGITransport on its own event
    loop. (Starlette's TestClient is built on httpx2, whose transport httpx.Client cannot take.)"""

    def __init__(self, app: Any) -> None:
        self.asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self.asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run(call())


@pytest.fixture
def transport(app: Any) -> httpx.BaseTransport:
    return InProcess(app)


@pytest.fixture
def http(transport: httpx.BaseTransport) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=BASE, transport=transport) as client:
        yield client


def _queue(engine: sa.Engine, items: list[ItemIn], **settings: Any) -> int:
    pid = ensure_project(engine, "default")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="support", schema="intent@1", **settings))
    add_items(engine, pid, "support", items)
    return pid


def _annotator_key(http: httpx.Client, admin_key: str, name: str, kind: str = "model") -> str:
    response = http.post("/api/v1/annotators", json={"name": name, "kind": kind}, headers=auth(admin_key))
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_a_model_judge_labels_a_queue_and_is_scored_on_gold(
    engine: sa.Engine, http: httpx.Client, transport: httpx.BaseTransport, admin_key: str
) -> None:
    items = [
        ItemIn(id="a", input="where is my invoice?"),
        ItemIn(id="b", input="the app crash again"),
        ItemIn(id="c", input="I want my money back"),
        ItemIn(id="d", input="???"),
        ItemIn(id="e", input="invoice is wrong"),
        ItemIn(id="g1", input="crash on start", gold={"intent": "bug"}),
        ItemIn(id="g2", input="invoice, and I want my money back", gold={"intent": "refund"}),
    ]
    pid = _queue(engine, items, overlap=2, gold_share=0.5)
    key = _annotator_key(http, admin_key, "gpt-judge")
    seen: list[LeasedItem] = []

    def judge(item: LeasedItem) -> dict[str, Any] | None:
        seen.append(item)
        return keyword_judge(item)

    with AnnotatorClient(BASE, key, transport=transport) as client:
        assert client.label_queue("support", judge, limit=2) == 2
        assert len(seen) == 2
        # The rest of the queue: "???" gets no label and is skipped, never offered again.
        assert client.label_queue("support", judge) == 4
        assert client.lease("support") is None

    assert len(seen) == 7 and len({item.id for item in seen}) == 7
    assert all(item.schema == "intent@1" and item.queue == "support" for item in seen)
    labels = current_labels(engine, pid, "support")
    assert {(row["annotator"], row["kind"]) for row in labels} == {("gpt-judge", "model")}
    assert len(labels) == 6
    by_input = {item.id: item.input for item in seen}
    assert {by_input[row["item_id"]]: row["value"]["intent"] for row in labels} == {
        "where is my invoice?": "billing",
        "the app crash again": "bug",
        "I want my money back": "refund",
        "invoice is wrong": "billing",
        "crash on start": "bug",
        "invoice, and I want my money back": "billing",
    }
    # The judge is scored on gold like any annotator: right on g1, wrong on g2.
    (scored,) = gold_accuracy(engine, pid, "support")["annotators"]
    assert (scored["annotator"], scored["kind"], scored["n_gold"], scored["n_correct"]) == (
        "gpt-judge",
        "model",
        2,
        1,
    )


def test_server_errors_come_back_as_prodloop_errors(
    engine: sa.Engine, http: httpx.Client, transport: httpx.BaseTransport, admin_key: str
) -> None:
    _queue(engine, [ItemIn(id="a", input="x"), ItemIn(id="b", input="y")])
    key = _annotator_key(http, admin_key, "judge")
    with AnnotatorClient(BASE, key, transport=transport) as client:
        item = client.lease("support")
        assert item is not None
        with pytest.raises(ValidationFailed) as bad:
            client.submit(item.id, {"intent": "refnud"})
        assert bad.value.status == 422
        assert "'intent'" in bad.value.message and "refund" in bad.value.message
        assert bad.value.detail[0]["field"] == "intent"

        other = item.id + 1 if item.id % 2 else item.id - 1  # the item not leased
        with pytest.raises(Conflict, match="not leased to you") as conflict:
            client.submit(other, {"intent": "bug"})
        assert conflict.value.status == 409

        with pytest.raises(NotFound, match="nope"):
            client.lease("nope")
        with pytest.raises(ValidationFailed, match="'severity'"):
            client.escalate(item.id, "unclear", field="severity")

    with AnnotatorClient(BASE, "pl_nobody", transport=transport) as stranger, pytest.raises(Unauthorized):
        stranger.lease("support")


def test_a_failing_judge_gives_its_item_back(
    engine: sa.Engine, http: httpx.Client, transport: httpx.BaseTransport, admin_key: str
) -> None:
    _queue(engine, [ItemIn(id="only", input="where is my invoice?")], overlap=1)
    judge_key = _annotator_key(http, admin_key, "flaky-judge")
    person_key = _annotator_key(http, admin_key, "ann", kind="human")

    def flaky(item: LeasedItem) -> dict[str, Any]:
        raise RuntimeError("model endpoint timed out")

    with AnnotatorClient(BASE, judge_key, transport=transport) as judge:
        with pytest.raises(JudgeFailed, match=r"flaky.*model endpoint timed out") as failed:
            judge.label_queue("support", flaky)
        assert isinstance(failed.value.__cause__, RuntimeError)
        assert failed.value.detail["queue"] == "support"

    # With overlap 1 the item would be held by the judge's lease; it was given back at once.
    with AnnotatorClient(BASE, person_key, transport=transport) as person:
        leased = person.lease("support")
        assert leased is not None and leased.id == failed.value.detail["item"]


def test_a_label_the_server_refuses_gives_the_item_back(
    engine: sa.Engine, http: httpx.Client, transport: httpx.BaseTransport, admin_key: str
) -> None:
    _queue(engine, [ItemIn(id="only", input="x")], overlap=1)
    judge_key = _annotator_key(http, admin_key, "sloppy-judge")
    person_key = _annotator_key(http, admin_key, "ann", kind="human")
    with AnnotatorClient(BASE, judge_key, transport=transport) as judge:
        with pytest.raises(ValidationFailed, match="'intent'"):
            judge.label_queue("support", lambda item: {"intent": "shipping"})
    with AnnotatorClient(BASE, person_key, transport=transport) as person:
        assert person.lease("support") is not None


def test_release_skip_escalate_correct_and_history(
    engine: sa.Engine, http: httpx.Client, transport: httpx.BaseTransport, admin_key: str
) -> None:
    _queue(engine, [ItemIn(id=name, input=name, priority=p) for name, p in (("a", 3), ("b", 2), ("c", 1))])
    key = _annotator_key(http, admin_key, "judge")
    with AnnotatorClient(BASE, key, transport=transport) as client:
        first = client.lease("support")
        assert first is not None and first.input == "a"
        assert client.release(first.id) == {"item": first.id, "released": True}
        again = client.lease("support")
        assert again is not None and again.id == first.id

        label = client.submit(first.id, {"intent": "bug"})["label"]
        fixed = client.correct(label["id"], {"intent": "billing"}, "misread the ticket")
        assert fixed["value"]["intent"] == "billing" and fixed["supersedes"] == label["id"]
        history = client.history(first.id)
        assert [(v["value"]["intent"], v["current"]) for v in history["labels"]] == [
            ("bug", False),
            ("billing", True),
        ]

        second = client.lease("support")
        assert second is not None and second.input == "b"
        client.escalate(second.id, "is a refund request billing?", field="intent")
        third = client.lease("support")
        assert third is not None and third.input == "c"
        client.skip(third.id, "not English")
        assert client.lease("support") is None
        assert [s["reason"] for s in client.history(third.id)["skips"]] == ["not English"]


def test_a_run_goes_on_when_a_slow_judge_loses_its_lease(
    engine: sa.Engine,
    http: httpx.Client,
    transport: httpx.BaseTransport,
    admin_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from prodloop.annotation import leases

    _queue(engine, [ItemIn(id=n, input=f"invoice {n}") for n in ("a", "b")], overlap=1, lease_seconds=10)
    judge_key = _annotator_key(http, admin_key, "slow-judge")
    person_key = _annotator_key(http, admin_key, "ann", kind="human")
    taken: list[int] = []

    def slow(item: LeasedItem) -> dict[str, Any]:
        if not taken:  # the judge thinks past its lease, and a person takes the item meanwhile
            later = time.time_ns() + 11 * 1_000_000_000
            monkeypatch.setattr(leases, "time", SimpleNamespace(time_ns=lambda: later))
            with AnnotatorClient(BASE, person_key, transport=transport) as person:
                leased = person.lease("support")
                assert leased is not None and leased.id == item.id
                person.submit(item.id, {"intent": "billing"})
            taken.append(item.id)
        return {"intent": "billing"}

    with AnnotatorClient(BASE, judge_key, transport=transport) as judge:
        assert judge.label_queue("support", slow) == 1  # the second item; the first went to the person
