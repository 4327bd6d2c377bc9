"""The pull model in the store: leasing in priority order within the overlap, re-leasing, releasing,
skipping, escalating, expiry, submitting, gold interleaving, suggestions, blind views, and many
annotators leasing and submitting at once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

import prodloop.annotation.leases as leases_module
from prodloop.annotation import (
    ItemIn,
    QueueSettings,
    add_items,
    create_queue,
    escalate_item,
    escalation_summary,
    get_queue,
    item_history,
    items_for_review,
    lease_next_item,
    register_annotator,
    release_item,
    skip_item,
    submit_label,
)
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.server.auth import ensure_project
from prodloop.store.schema import labels, queue_items
from tests.annotation.test_queues import annotators, make_queue, rows


class Clock:
    """The leases module's clock, moved forward by hand."""

    def __init__(self) -> None:
        self.offset_ns = 0

    def time_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    def advance(self, seconds: float) -> None:
        self.offset_ns += int(seconds * 1e9)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(leases_module, "time", fake)
    return fake


def lease(engine: sa.Engine, pid: int, annotator: int, queue: str = "triage") -> dict[str, Any] | None:
    leased = lease_next_item(engine, pid, queue, annotator)
    return None if leased is None else leased["item"]


def lease_id(engine: sa.Engine, pid: int, annotator: int, queue: str = "triage") -> int | None:
    item = lease(engine, pid, annotator, queue)
    return None if item is None else int(item["id"])


def item_ids(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(queue_items.c.item_key, queue_items.c.id)).all())


def status(engine: sa.Engine, item_id: int) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(sa.select(queue_items.c.status).where(queue_items.c.id == item_id)).scalar()
        )


# --------------------------------------------------------------------------------------------------
# Which item comes next


def test_highest_priority_first_then_oldest(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(
        engine,
        pid,
        "triage",
        [
            ItemIn(id="low", input="a"),
            ItemIn(id="high-1", input="b", priority=5),
            ItemIn(id="mid", input="c", priority=1),
            ItemIn(id="high-2", input="d", priority=5),
            ItemIn(id="negative", input="e", priority=-3),
        ],
    )
    ids = item_ids(engine)
    [ann] = annotators(engine, pid, 1)
    order = []
    while (item := lease(engine, pid, ann)) is not None:
        order.append(item["id"])
        submit_label(engine, pid, item["id"], ann, {"intent": "other"})
    assert order == [ids[k] for k in ("high-1", "high-2", "mid", "low", "negative")]


def test_no_more_holders_than_the_overlap(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(1))
    a, b, c = annotators(engine, pid, 3)
    first, second = lease_id(engine, pid, a), lease_id(engine, pid, b)
    assert first is not None and first == second  # two annotators label the same item
    assert lease(engine, pid, c) is None  # the two leases fill the overlap
    submit_label(engine, pid, first, a, {"intent": "bug"})
    assert lease(engine, pid, c) is None  # one label and one lease still fill it
    release_item(engine, pid, first, b)
    assert lease_id(engine, pid, c) == first
    submit_label(engine, pid, first, c, {"intent": "bug"})
    assert lease(engine, pid, b) is None  # two labels: complete
    assert status(engine, first) == "done"


def test_an_annotator_never_gets_an_item_they_labelled_or_skipped(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=3)
    add_items(engine, pid, "triage", rows(3))
    ids = item_ids(engine)
    a, b = annotators(engine, pid, 2)
    assert lease_id(engine, pid, a) == ids["item-0"]
    submit_label(engine, pid, ids["item-0"], a, {"intent": "bug"})
    assert lease_id(engine, pid, a) == ids["item-1"]
    skip_item(engine, pid, ids["item-1"], a, reason="not my language")
    assert lease_id(engine, pid, a) == ids["item-2"]
    release_item(engine, pid, ids["item-2"], a)
    assert lease_id(engine, pid, a) == ids["item-2"]  # released, not skipped: offered again
    submit_label(engine, pid, ids["item-2"], a, {"intent": "bug"})
    assert lease(engine, pid, a) is None
    # Others still get all three.
    seen = []
    while (item_id := lease_id(engine, pid, b)) is not None:
        seen.append(item_id)
        submit_label(engine, pid, item_id, b, {"intent": "bug"})
    assert seen == [ids["item-0"], ids["item-1"], ids["item-2"]]
    history = item_history(engine, pid, ids["item-1"])
    assert [(s["annotator"], s["reason"]) for s in history["skips"]] == [("ann-0", "not my language")]


def test_leasing_again_returns_the_held_item_with_a_fresh_lease(engine: sa.Engine, clock: Clock) -> None:
    pid, _ = make_queue(engine, lease_seconds=60)
    add_items(engine, pid, "triage", rows(3))
    [a] = annotators(engine, pid, 1)
    first = lease_next_item(engine, pid, "triage", a)
    assert first is not None
    clock.advance(30)
    again = lease_next_item(engine, pid, "triage", a)
    assert again is not None
    assert again["item"] == first["item"]
    assert again["lease"]["expires_ns"] - first["lease"]["expires_ns"] >= 30 * 10**9
    assert get_queue(engine, pid, "triage")["progress"]["leased_now"] == 1
    # The renewed lease holds past the first one's end.
    clock.advance(45)
    assert lease(engine, pid, a) == first["item"]


def test_release_gives_the_item_to_others(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(1))
    a, b = annotators(engine, pid, 2)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    assert lease(engine, pid, b) is None
    assert release_item(engine, pid, item_id, a) == {"item": item_id, "released": True}
    assert release_item(engine, pid, item_id, a) == {"item": item_id, "released": False}
    assert lease_id(engine, pid, b) == item_id
    with pytest.raises(Conflict):  # released: no longer a's to submit
        submit_label(engine, pid, item_id, a, {"intent": "bug"})
    with pytest.raises(NotFound):
        release_item(engine, pid, item_id + 100, a)


def test_a_skipped_item_goes_to_others(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(1))
    a, b, c = annotators(engine, pid, 3)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    assert skip_item(engine, pid, item_id, a) == {"item": item_id, "skipped": True}
    skip_item(engine, pid, item_id, a)  # skipping twice is harmless
    assert lease(engine, pid, a) is None
    assert lease_id(engine, pid, b) == item_id
    assert lease_id(engine, pid, c) == item_id  # a's skip freed its place in the overlap
    with pytest.raises(Conflict):
        submit_label(engine, pid, item_id, a, {"intent": "bug"})


def test_escalating_records_a_note_and_sends_the_item_to_review(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(2))
    ids = item_ids(engine)
    a, b, c = annotators(engine, pid, 3)
    item_id = lease_id(engine, pid, a)
    assert item_id == ids["item-0"]
    with pytest.raises(ValidationFailed) as caught:
        escalate_item(engine, pid, item_id, a, "unclear", field="intnet")
    assert "'intnet'" in caught.value.message and "intent, tags, note" in caught.value.message
    assert caught.value.detail[0]["allowed"] == ["intent", "tags", "note"]
    assert lease_id(engine, pid, a) == item_id  # the refused escalation left the lease alone

    escalated = escalate_item(engine, pid, item_id, a, "refund or billing?", field="intent")
    assert escalated["item"] == item_id and escalated["field"] == "intent"
    assert lease_id(engine, pid, a) == ids["item-1"]  # never offered the escalated item again
    assert get_queue(engine, pid, "triage")["progress"]["open_escalations"] == 1

    for annotator in (b, c):  # the others label it, and agree
        assert lease_id(engine, pid, annotator) == item_id
        submit_label(engine, pid, item_id, annotator, {"intent": "refund"})
    assert status(engine, item_id) == "review"  # agreed, but escalated
    review = items_for_review(engine, pid, "triage")
    assert review["total"] == 1
    [waiting] = review["items"]
    assert waiting["id"] == item_id and waiting["disagreeing_fields"] == []
    assert [n["note"] for n in waiting["escalations"]] == ["refund or billing?"]
    assert [(n["annotator"], n["field"]) for n in waiting["escalations"]] == [("ann-0", "intent")]
    assert sorted(label["annotator"] for label in waiting["labels"]) == ["ann-1", "ann-2"]
    assert review["schema"]["guidelines"] == "Pick the main reason."

    summary = escalation_summary(engine, pid, "triage")
    assert [(f["field"], f["count"], f["open"]) for f in summary["fields"]] == [("intent", 1, 1)]
    history = item_history(engine, pid, item_id)
    assert [e["note"] for e in history["escalations"]] == ["refund or billing?"]


def test_escalating_the_whole_item(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(1))
    [a] = annotators(engine, pid, 1)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    assert escalate_item(engine, pid, item_id, a, "this is spam")["field"] is None
    summary = escalation_summary(engine, pid, "triage")
    assert [(f["field"], f["count"]) for f in summary["fields"]] == [(None, 1)]


# --------------------------------------------------------------------------------------------------
# Expiry


def test_an_expired_lease_returns_the_item_to_others(engine: sa.Engine, clock: Clock) -> None:
    pid, _ = make_queue(engine, lease_seconds=10)
    add_items(engine, pid, "triage", rows(1))
    a, b = annotators(engine, pid, 2)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    clock.advance(5)
    assert lease(engine, pid, b) is None
    clock.advance(6)
    assert lease_id(engine, pid, b) == item_id
    # a's lease ran out and b now fills the overlap: a's late label is refused.
    with pytest.raises(Conflict) as caught:
        submit_label(engine, pid, item_id, a, {"intent": "bug"})
    assert "expired" in caught.value.message
    submit_label(engine, pid, item_id, b, {"intent": "bug"})
    assert status(engine, item_id) == "done"


def test_a_late_submit_counts_while_there_is_room(engine: sa.Engine, clock: Clock) -> None:
    pid, _ = make_queue(engine, overlap=2, lease_seconds=10)
    add_items(engine, pid, "triage", rows(1))
    a, b, c = annotators(engine, pid, 3)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    clock.advance(60)
    assert lease_id(engine, pid, b) == item_id  # one place of two taken by b
    result = submit_label(engine, pid, item_id, a, {"intent": "bug"})
    assert result["label"]["annotator_id"] == a and result["item_status"] == "open"
    assert lease(engine, pid, c) is None  # a's label and b's lease fill it
    submit_label(engine, pid, item_id, b, {"intent": "bug"})
    assert status(engine, item_id) == "done"


def test_an_expired_lease_with_nobody_else_may_still_submit(engine: sa.Engine, clock: Clock) -> None:
    pid, _ = make_queue(engine, lease_seconds=10)
    add_items(engine, pid, "triage", rows(1))
    [a] = annotators(engine, pid, 1)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    clock.advance(3600)
    result = submit_label(engine, pid, item_id, a, {"intent": "bug"})
    assert result["item_status"] == "done"
    assert result["label"]["duration_ms"] >= 3_600_000


# --------------------------------------------------------------------------------------------------
# Submitting


def test_submit_needs_a_lease(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(1))
    [a] = annotators(engine, pid, 1)
    item_id = item_ids(engine)["item-0"]
    with pytest.raises(Conflict) as caught:
        submit_label(engine, pid, item_id, a, {"intent": "bug"})
    assert caught.value.status == 409
    assert (
        "not leased to you" in caught.value.message and "/api/v1/queues/triage/lease" in caught.value.message
    )
    with pytest.raises(NotFound):
        submit_label(engine, pid, item_id + 100, a, {"intent": "bug"})


def test_nobody_labels_an_item_twice(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(1))
    [a] = annotators(engine, pid, 1)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    first = submit_label(engine, pid, item_id, a, {"intent": "bug"})
    with pytest.raises(Conflict) as caught:
        submit_label(engine, pid, item_id, a, {"intent": "refund"})
    assert f"correct label {first['label']['id']}" in caught.value.message
    with engine.connect() as connection:
        values = (
            connection.execute(sa.select(labels.c.value).where(labels.c.item_id == item_id)).scalars().all()
        )
    assert values == [{"intent": "bug", "tags": None, "note": None}]


def test_an_invalid_value_is_a_422_naming_field_value_and_options(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(1))
    [a] = annotators(engine, pid, 1)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    with pytest.raises(ValidationFailed) as caught:
        submit_label(engine, pid, item_id, a, {"intent": "maybe"})
    message = caught.value.message
    assert caught.value.status == 422
    assert "'maybe'" in message and "'intent'" in message and "billing, refund, bug, other" in message
    assert caught.value.detail[0]["allowed"] == ["billing", "refund", "bug", "other"]
    with pytest.raises(ValidationFailed) as caught:
        submit_label(engine, pid, item_id, a, {"tags": ["vip"]})
    assert "'intent' is required" in caught.value.message
    # The lease is still there: a corrected value goes through.
    assert (
        submit_label(engine, pid, item_id, a, {"intent": "refund", "tags": ["vip"]})["item_status"] == "done"
    )


def test_a_label_records_the_schema_version_and_duration(engine: sa.Engine, clock: Clock) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(1))
    [a] = annotators(engine, pid, 1)
    item_id = lease_id(engine, pid, a)
    assert item_id is not None
    clock.advance(2.5)
    label = submit_label(engine, pid, item_id, a, {"intent": "bug"})["label"]
    assert label["schema"] == "support-intent@1" and label["role"] == "annotation"
    assert 2500 <= label["duration_ms"] < 60_000
    assert label["item_id"] == item_id and label["supersedes"] is None


# --------------------------------------------------------------------------------------------------
# Gold items, suggestions and blind views


def test_gold_items_are_interleaved_at_the_queues_share(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, gold_share=0.25)
    gold = [ItemIn(id=f"gold-{i}", input=f"g{i}", gold={"intent": "refund"}) for i in range(4)]
    add_items(engine, pid, "triage", [*rows(12), *gold])
    gold_ids = {item_ids(engine)[f"gold-{i}"] for i in range(4)}
    a, b = annotators(engine, pid, 2)
    leased = []
    for _ in range(8):
        item_id = lease_id(engine, pid, a)
        assert item_id is not None
        leased.append(item_id)
        submit_label(engine, pid, item_id, a, {"intent": "refund"})
    got_gold = [i for i in leased if i in gold_ids]
    assert len(got_gold) == 2 and len(set(got_gold)) == 2
    assert leased.index(got_gold[1]) - leased.index(got_gold[0]) > 1  # spread out, not back to back

    # Gold items are not held back by the overlap of 1, and never complete.
    b_gold = set()
    for _ in range(8):
        item_id = lease_id(engine, pid, b)
        assert item_id is not None
        if item_id in gold_ids:
            b_gold.add(item_id)
        submit_label(engine, pid, item_id, b, {"intent": "bug"})
    assert b_gold & set(got_gold)
    for item_id in gold_ids:
        assert status(engine, item_id) == "open"
    progress = get_queue(engine, pid, "triage")["progress"]
    assert (progress["items"], progress["gold_items"], progress["done"]) == (12, 4, 12)
    assert progress["complete"] is True  # gold items do not hold completion back


def test_gold_runs_out_without_stopping_the_work(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, gold_share=0.9)
    add_items(engine, pid, "triage", [*rows(3), ItemIn(id="gold", input="g", gold={"intent": "bug"})])
    [a] = annotators(engine, pid, 1)
    leased = []
    while (item_id := lease_id(engine, pid, a)) is not None:
        leased.append(item_id)
        submit_label(engine, pid, item_id, a, {"intent": "bug"})
    assert len(leased) == 4 and item_ids(engine)["gold"] in leased


def test_suggestions_only_where_the_queue_shows_them(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, "hidden")
    create_queue(engine, pid, QueueSettings(name="shown", schema="support-intent@1", show_suggestions=True))
    for queue in ("hidden", "shown"):
        add_items(engine, pid, queue, [ItemIn(id="s", input="x", suggestion={"intent": "billing"})])
    [a] = annotators(engine, pid, 1)
    hidden, shown = lease(engine, pid, a, "hidden"), lease(engine, pid, a, "shown")
    assert hidden is not None and shown is not None
    assert hidden["suggestion"] is None
    assert shown["suggestion"] == {"intent": "billing"}


def test_the_annotators_view_is_blind(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2, gold_share=0.5)
    add_items(engine, pid, "triage", [ItemIn(id="g", input="x", gold={"intent": "bug"}), *rows(1)])
    a, b = annotators(engine, pid, 2)
    expected_keys = {
        "id",
        "queue",
        "trace_id",
        "priority",
        "input",
        "output",
        "context",
        "metadata",
        "suggestion",
    }
    gold_view = lease(engine, pid, a)
    assert gold_view is not None and set(gold_view) == expected_keys
    submit_label(engine, pid, gold_view["id"], a, {"intent": "bug"})
    plain = lease(engine, pid, a)
    assert plain is not None and set(plain) == expected_keys
    submit_label(engine, pid, plain["id"], a, {"intent": "refund"})
    # b is shown the same items and sees nothing of a's answers, nor which item is gold.
    for _ in range(2):
        view = lease(engine, pid, b)
        assert view is not None and set(view) == expected_keys
        assert "refund" not in repr(view) and "bug" not in repr(view)
        submit_label(engine, pid, view["id"], b, {"intent": "other"})
    history = item_history(engine, pid, plain["id"], only_annotator=b)
    assert [label["annotator_id"] for label in history["labels"]] == [b]


# --------------------------------------------------------------------------------------------------
# Contention


def test_many_annotators_at_once(engine: sa.Engine) -> None:
    """20 annotators lease and submit concurrently: no item gets more than its overlap of labels,
    nobody labels an item twice, and every item completes."""
    overlap, n_items, n_annotators = 3, 60, 20
    pid, _ = make_queue(engine, overlap=overlap)
    add_items(engine, pid, "triage", rows(n_items))
    people = annotators(engine, pid, n_annotators)
    errors: list[BaseException] = []
    start = threading.Barrier(n_annotators)

    def work(annotator: int, seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            while True:
                item = lease(engine, pid, annotator)
                if item is None:
                    return
                if rng.random() < 0.05:  # now and then someone gives an item back
                    release_item(engine, pid, item["id"], annotator)
                    continue
                submit_label(engine, pid, item["id"], annotator, {"intent": "bug"})
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(a, n)) for n, a in enumerate(people)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    with engine.connect() as connection:
        pairs = connection.execute(sa.select(labels.c.item_id, labels.c.annotator_id)).all()
        counted = dict(connection.execute(sa.select(queue_items.c.id, queue_items.c.n_labels)).all())
    per_item = Counter(item_id for item_id, _ in pairs)
    assert len(set(pairs)) == len(pairs)  # nobody labelled an item twice
    assert max(per_item.values()) <= overlap
    assert per_item == Counter(counted)  # the item's count agrees with its labels
    assert len(per_item) == n_items and set(per_item.values()) == {overlap}  # every item complete
    progress = get_queue(engine, pid, "triage")["progress"]
    assert progress["complete"] is True and progress["done"] == n_items
    assert len({annotator for _, annotator in pairs}) > 1


def test_an_annotator_of_another_project_cannot_touch_items(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(1))
    item_id = item_ids(engine)["item-0"]
    other = ensure_project(engine, "other")
    stranger = register_annotator(engine, other, "stranger").id
    with pytest.raises(NotFound):
        lease_next_item(engine, other, "triage", stranger)
    for action in (
        lambda: submit_label(engine, other, item_id, stranger, {"intent": "bug"}),
        lambda: skip_item(engine, other, item_id, stranger),
        lambda: escalate_item(engine, other, item_id, stranger, "note"),
    ):
        with pytest.raises(NotFound):
            action()
