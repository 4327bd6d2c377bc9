"""Annotation queues in the store: creating them, adding items from JSONL rows and from traces
(filtered, sampled), deduplication, validation of gold answers and suggestions, and progress."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from prodloop.annotation import (
    ItemIn,
    QueueSettings,
    add_items,
    add_items_from_traces,
    create_queue,
    get_queue,
    lease_next_item,
    list_queues,
    parse_items,
    queue_schema,
    register_annotator,
    sample_traces,
    save_schema,
    submit_label,
)
from prodloop.capture import SignalIn, TraceFilter, TraceIn, ingest_traces, record_signals
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.server.auth import ensure_project
from prodloop.store.schema import queue_items

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

INTENT: dict[str, Any] = {
    "name": "support-intent",
    "guidelines": "Pick the main reason.",
    "fields": [
        {"name": "intent", "type": "categorical", "options": ["billing", "refund", "bug", "other"]},
        {"name": "tags", "type": "multi_label", "options": ["angry", "vip", "churn"], "required": False},
        {"name": "note", "type": "text", "required": False},
    ],
}


def make_queue(engine: sa.Engine, name: str = "triage", **settings: Any) -> tuple[int, dict[str, Any]]:
    """Project ``default`` with schema ``support-intent@1`` and a queue over it."""
    pid = ensure_project(engine, "default")
    save_schema(engine, pid, INTENT)
    queue = create_queue(engine, pid, QueueSettings(name=name, schema="support-intent@1", **settings))
    return pid, queue


def rows(n: int, start: int = 0, **extra: Any) -> list[ItemIn]:
    return [
        ItemIn(id=f"item-{i}", input=f"question {i}", output=f"answer {i}", **extra) for i in range(start, n)
    ]


def annotators(engine: sa.Engine, pid: int, n: int, prefix: str = "ann") -> list[int]:
    return [register_annotator(engine, pid, f"{prefix}-{i}").id for i in range(n)]


def item_count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(queue_items)).scalar_one()


def traced(
    engine: sa.Engine, pid: int, n: int, feature: str = "support", release: str | None = None, offset: int = 0
) -> list[str]:
    """``n`` traces of ``feature``, one a minute after T0 (+ ``offset`` minutes); returns their ids."""
    batch = [
        TraceIn(
            feature=feature,
            release=release,
            model="gpt-test",
            input=f"{feature} question {i}",
            output=f"{feature} answer {i}",
            start_time=T0 + timedelta(minutes=offset + i),
            duration_ms=100,
        )
        for i in range(n)
    ]
    return list(ingest_traces(engine, pid, batch)["trace_ids"])


# --------------------------------------------------------------------------------------------------
# Creating queues


def test_create_and_read_back(engine: sa.Engine) -> None:
    pid, queue = make_queue(
        engine, overlap=3, lease_seconds=60, gold_share=0.1, show_suggestions=True, description="first pass"
    )
    assert queue["name"] == "triage" and queue["schema"] == "support-intent@1"
    assert (queue["overlap"], queue["lease_seconds"], queue["gold_share"], queue["show_suggestions"]) == (
        3,
        60,
        0.1,
        True,
    )
    assert queue["disagreement_rule"] == "unanimity"
    shown = get_queue(engine, pid, "triage")
    assert get_queue(engine, pid, queue["id"]) == shown
    assert get_queue(engine, pid, str(queue["id"]))["name"] == "triage"
    assert shown["progress"] == {
        "items": 0,
        "open": 0,
        "review": 0,
        "done": 0,
        "gold_items": 0,
        "labels_needed": 0,
        "leased_now": 0,
        "open_escalations": 0,
        "complete": False,
    }
    assert queue_schema(engine, pid, "triage").ref == "support-intent@1"


def test_a_queue_keeps_its_schema_version_when_the_schema_changes(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    save_schema(engine, pid, {**INTENT, "guidelines": "New guidelines."})
    assert queue_schema(engine, pid, "triage").ref == "support-intent@1"
    latest = create_queue(engine, pid, QueueSettings(name="second-pass", schema="support-intent"))
    assert latest["schema"] == "support-intent@2"


def test_a_name_that_is_taken_is_a_409(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    with pytest.raises(Conflict) as caught:
        create_queue(engine, pid, QueueSettings(name="triage", schema="support-intent@1", overlap=2))
    assert caught.value.status == 409 and "'triage' already exists" in caught.value.message
    assert [q["overlap"] for q in list_queues(engine, pid)] == [1]
    # Names are per project.
    other = ensure_project(engine, "other")
    save_schema(engine, other, INTENT)
    assert (
        create_queue(engine, other, QueueSettings(name="triage", schema="support-intent@1"))["name"]
        == "triage"
    )


def test_a_digits_only_name_is_a_422(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    with pytest.raises(ValidationFailed) as caught:
        create_queue(engine, pid, QueueSettings(name="2024", schema="support-intent@1"))
    assert caught.value.status == 422 and "letter" in caught.value.message
    assert [q["name"] for q in list_queues(engine, pid)] == ["triage"]


def test_an_unknown_schema_is_a_404(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    for ref, hint in (("support-intent@9", "support-intent@1"), ("no-such-schema", "prodloop schema create")):
        with pytest.raises(NotFound) as caught:
            create_queue(engine, pid, QueueSettings(name="other", schema=ref))
        assert hint in caught.value.message
    assert len(list_queues(engine, pid)) == 1


def test_an_unknown_queue_is_a_404(engine: sa.Engine) -> None:
    pid, queue = make_queue(engine)
    for ref in ("nope", queue["id"] + 1, str(queue["id"] + 1)):
        with pytest.raises(NotFound) as caught:
            get_queue(engine, pid, ref)
        assert "prodloop queue ls" in caught.value.message
    with pytest.raises(NotFound):
        add_items(engine, pid, "nope", rows(1))
    # A queue of another project is not found from this one.
    other = ensure_project(engine, "other")
    with pytest.raises(NotFound):
        get_queue(engine, other, queue["id"])


def test_settings_out_of_bounds_are_refused() -> None:
    for bad in ({"overlap": 0}, {"lease_seconds": 5}, {"gold_share": 1.5}, {"name": "Has Space"}):
        with pytest.raises(ValueError):
            QueueSettings(**{"name": "q", "schema": "s@1", **bad})


def test_list_queues_with_progress(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, "b-queue")
    create_queue(engine, pid, QueueSettings(name="a-queue", schema="support-intent@1", overlap=2))
    add_items(engine, pid, "a-queue", rows(3))
    listed = list_queues(engine, pid)
    assert [(q["name"], q["progress"]["items"], q["progress"]["labels_needed"]) for q in listed] == [
        ("a-queue", 3, 6),
        ("b-queue", 0, 0),
    ]


# --------------------------------------------------------------------------------------------------
# Adding items


def test_the_same_item_is_added_once(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    ids = traced(engine, pid, 2)
    first = [
        ItemIn(id="a", input="one"),
        ItemIn(trace_id=ids[0]),
        ItemIn(input="no id at all", output="same content"),
    ]
    assert add_items(engine, pid, "triage", first) == {"added": 3, "skipped": 0}
    again = [
        ItemIn(id="a", input="a different text under the same id"),
        ItemIn(trace_id=ids[0], input="the same trace, other text"),
        ItemIn(input="no id at all", output="same content"),
        ItemIn(input="no id at all", output="other content"),
        ItemIn(trace_id=ids[1]),
        ItemIn(trace_id=ids[1]),  # repeated within one batch
    ]
    assert add_items(engine, pid, "triage", again) == {"added": 2, "skipped": 4}
    assert get_queue(engine, pid, "triage")["progress"]["items"] == 5
    with engine.connect() as connection:
        kept = connection.execute(
            sa.select(queue_items.c.payload).where(queue_items.c.item_key == "a")
        ).scalar()
    assert kept["input"] == "one"  # the first one stays as it was


def test_an_item_of_a_trace_takes_the_trace_text_and_metadata(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    [trace_id] = traced(engine, pid, 1, feature="checkout", release="v7")
    add_items(
        engine, pid, "triage", [ItemIn(trace_id=trace_id, metadata={"customer": "acme", "feature": "mine"})]
    )
    annotator = register_annotator(engine, pid, "ana").id
    leased = lease_next_item(engine, pid, "triage", annotator)
    assert leased is not None
    item = leased["item"]
    assert item["trace_id"] == trace_id
    assert (item["input"], item["output"]) == ("checkout question 0", "checkout answer 0")
    assert item["metadata"]["customer"] == "acme"
    assert item["metadata"]["feature"] == "mine"  # the row's own metadata wins
    assert item["metadata"]["release"] == "v7" and item["metadata"]["model"] == "gpt-test"
    assert item["metadata"]["start_time"].startswith("2025-03-01T12:00:00")


def test_an_item_of_a_trace_keeps_its_own_text(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    [trace_id] = traced(engine, pid, 1)
    add_items(engine, pid, "triage", [ItemIn(trace_id=trace_id, input="edited question")])
    leased = lease_next_item(engine, pid, "triage", register_annotator(engine, pid, "ana").id)
    assert leased is not None
    assert (leased["item"]["input"], leased["item"]["output"]) == ("edited question", "support answer 0")


def test_a_trace_that_is_not_in_the_project_adds_nothing(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    [known] = traced(engine, pid, 1)
    other = ensure_project(engine, "other")
    [elsewhere] = traced(engine, other, 1)
    batch = [ItemIn(id="fine", input="x"), ItemIn(trace_id=known), ItemIn(trace_id=elsewhere)]
    with pytest.raises(ValidationFailed) as caught:
        add_items(engine, pid, "triage", batch)
    assert caught.value.status == 422
    assert f"trace {elsewhere} is not in this project" in caught.value.message
    assert caught.value.detail == {"missing_traces": [elsewhere]}
    assert item_count(engine) == 0


def test_gold_and_suggestions_are_checked_against_the_schema(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    batch = [
        ItemIn(id="ok", input="x", gold={"intent": "refund"}),
        ItemIn(id="bad-gold", input="y", gold={"intent": "maybe"}),
    ]
    with pytest.raises(ValidationFailed) as caught:
        add_items(engine, pid, "triage", batch)
    message = caught.value.message
    assert message.startswith("item row 2: gold: ")
    assert "'maybe'" in message and "'intent'" in message and "billing, refund, bug, other" in message
    assert caught.value.detail[0]["allowed"] == ["billing", "refund", "bug", "other"]

    batch = [ItemIn(id="s", input="x", suggestion={"intent": "bug", "colour": "red"})]
    with pytest.raises(ValidationFailed) as caught:
        add_items(engine, pid, "triage", batch)
    assert caught.value.message.startswith("item row 1: suggestion: ") and "'colour'" in caught.value.message
    assert item_count(engine) == 0


def test_gold_answers_are_stored_normalised_and_counted_apart(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    batch = [
        ItemIn(id="g", input="x", gold={"intent": "refund", "tags": ["vip", "angry", "vip"]}),
        *rows(3),
    ]
    add_items(engine, pid, "triage", batch)
    with engine.connect() as connection:
        gold = connection.execute(sa.select(queue_items.c.gold).where(queue_items.c.item_key == "g")).scalar()
    assert gold == {"intent": "refund", "tags": ["angry", "vip"]}
    progress = get_queue(engine, pid, "triage")["progress"]
    assert (progress["items"], progress["gold_items"], progress["labels_needed"]) == (3, 1, 6)


def test_a_gold_answer_may_set_some_fields_but_not_none(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    assert add_items(engine, pid, "triage", [ItemIn(id="g", input="x", gold={"tags": ["vip"]})])["added"] == 1
    # Nothing set, or free text only (which is not scored): such a gold item could never be scored.
    for empty in ({}, {"note": "  ", "tags": None}, {"note": "a customer in a hurry"}):
        with pytest.raises(ValidationFailed) as caught:
            add_items(
                engine, pid, "triage", [ItemIn(id="ok", input="y"), ItemIn(id="e", input="z", gold=empty)]
            )
        assert caught.value.message.startswith("item row 2: gold sets none of the fields intent, tags;")
    assert item_count(engine) == 1


def test_parse_items_names_the_row_and_field() -> None:
    parsed = parse_items([{"id": "a", "input": "x"}, {"trace_id": "ab" * 16, "priority": 2}])
    assert [p.priority for p in parsed] == [0, 2]
    with pytest.raises(ValidationFailed) as caught:
        parse_items([{"id": "a"}, {"trace_id": "not-hex"}, {"id": "c", "colour": 1}])
    assert caught.value.message.startswith("item row 2: trace_id: ")
    assert "(and 1 more problems)" in caught.value.message
    assert [(p["row"], p["field"]) for p in caught.value.detail] == [(2, "trace_id"), (3, "colour")]


# --------------------------------------------------------------------------------------------------
# Items from traces


def test_from_traces_by_feature_and_signal(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    support = traced(engine, pid, 5, feature="support")
    traced(engine, pid, 4, feature="search", offset=10)
    record_signals(
        engine,
        pid,
        [SignalIn(trace_id=t, kind="explicit", name="thumbs", value="down") for t in support[:2]]
        + [SignalIn(trace_id=support[4], kind="implicit", name="copy")],
    )
    result = add_items_from_traces(engine, pid, "triage", TraceFilter(feature="search"))
    assert result == {"added": 4, "skipped": 0, "matched": 4}

    create_queue(engine, pid, QueueSettings(name="thumbs-down", schema="support-intent@1"))
    result = add_items_from_traces(engine, pid, "thumbs-down", TraceFilter(signal="thumbs"), priority=5)
    assert result == {"added": 2, "skipped": 0, "matched": 2}
    ann = register_annotator(engine, pid, "ana").id
    seen = set()
    while (leased := lease_next_item(engine, pid, "thumbs-down", ann)) is not None:
        assert leased["item"]["priority"] == 5
        seen.add(leased["item"]["trace_id"])
        submit_label(engine, pid, leased["item"]["id"], ann, {"intent": "bug"})
    assert seen == set(support[:2])

    # Adding the same selection again adds nothing.
    again = add_items_from_traces(engine, pid, "triage", TraceFilter(feature="search"))
    assert again == {"added": 0, "skipped": 4, "matched": 4}


def test_from_traces_with_nothing_matching_adds_nothing(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    traced(engine, pid, 2)
    assert add_items_from_traces(engine, pid, "triage", TraceFilter(feature="nope")) == {
        "added": 0,
        "skipped": 0,
        "matched": 0,
    }
    with pytest.raises(ValidationFailed):
        add_items_from_traces(engine, pid, "triage", TraceFilter(), n=0)


def items_of(engine: sa.Engine, queue_id: int) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(queue_items.c.trace_id)
                .where(queue_items.c.queue_id == queue_id)
                .order_by(queue_items.c.id)
            )
            .scalars()
            .all()
        )


def test_sample_newest(engine: sa.Engine) -> None:
    pid, queue = make_queue(engine)
    ids = traced(engine, pid, 10)
    result = add_items_from_traces(engine, pid, "triage", TraceFilter(), n=3)
    assert result["added"] == 3
    assert set(items_of(engine, queue["id"])) == set(ids[-3:])


def test_sample_random_is_seeded(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    traced(engine, pid, 30)
    samples = []
    for name, seed in (("r1", 7), ("r2", 7), ("r3", 8)):
        queue = create_queue(engine, pid, QueueSettings(name=name, schema="support-intent@1"))
        result = add_items_from_traces(engine, pid, name, TraceFilter(), n=6, sample="random", seed=seed)
        assert result == {"added": 6, "skipped": 0, "matched": 30}
        samples.append(set(items_of(engine, queue["id"])))
    assert samples[0] == samples[1]
    assert samples[0] != samples[2]


def test_sample_stratified_is_proportional_and_covers_every_feature(engine: sa.Engine) -> None:
    pid, queue = make_queue(engine)
    features = {"support": 30, "search": 15, "billing": 4, "onboarding": 1}
    by_trace: dict[str, str] = {}
    offset = 0
    for feature, count in features.items():
        for trace_id in traced(engine, pid, count, feature=feature, offset=offset):
            by_trace[trace_id] = feature
        offset += count
    result = add_items_from_traces(engine, pid, "triage", TraceFilter(), n=10, sample="stratified", seed=3)
    assert result == {"added": 10, "skipped": 0, "matched": 50}
    shares = Counter(by_trace[t] for t in items_of(engine, queue["id"]))
    # 10 of 50: support 6, search 3, and the two small features one each (every stratum shows up,
    # so the large ones give way by their remainders).
    assert set(shares) == set(features)
    assert shares["support"] + shares["search"] == 8
    assert shares["support"] in (5, 6) and shares["search"] in (2, 3)
    assert shares["billing"] == 1 and shares["onboarding"] == 1


def test_sample_traces_quota_and_seed() -> None:
    candidates = [
        {"trace_id": f"{i:032x}", "feature": "a" if i < 60 else "b" if i < 90 else "c"} for i in range(100)
    ]
    chosen = sample_traces(candidates, 20, "stratified", seed=1)
    assert Counter(c["feature"] for c in chosen) == {"a": 12, "b": 6, "c": 2}
    assert len({c["trace_id"] for c in chosen}) == 20
    assert sample_traces(candidates, 20, "stratified", seed=1) == chosen
    assert sample_traces(candidates, 20, "random", seed=5) == sample_traces(candidates, 20, "random", seed=5)
    assert sample_traces(candidates, 3) == candidates[:3]
    assert sample_traces(candidates, 500, "random") == candidates
    # More strata than the sample has room for: each chosen trace from a different stratum.
    many = [{"trace_id": str(i), "feature": f"f{i % 8}"} for i in range(40)]
    assert len({c["feature"] for c in sample_traces(many, 5, "stratified")}) == 5
    by_release = sample_traces(
        [{"trace_id": str(i), "release": "v1" if i % 4 else "v2"} for i in range(40)],
        8,
        "stratified",
        stratify_by="release",
    )
    assert Counter(c["release"] for c in by_release) == {"v1": 6, "v2": 2}


# --------------------------------------------------------------------------------------------------
# Progress


def test_progress_counts(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", [*rows(3), ItemIn(id="g", input="gold", gold={"intent": "bug"})])
    a, b = annotators(engine, pid, 2)

    def label(annotator: int, intent: str) -> None:
        leased = lease_next_item(engine, pid, "triage", annotator)
        assert leased is not None
        submit_label(engine, pid, leased["item"]["id"], annotator, {"intent": intent})

    label(a, "bug")
    label(b, "bug")  # item 0 agreed: done
    label(a, "bug")
    label(b, "refund")  # item 1 disagrees: review
    assert lease_next_item(engine, pid, "triage", a) is not None  # item 2 held
    progress = get_queue(engine, pid, "triage")["progress"]
    assert progress == {
        "items": 3,
        "open": 1,
        "review": 1,
        "done": 1,
        "gold_items": 1,
        "labels_needed": 2,
        "leased_now": 1,
        "open_escalations": 0,
        "complete": False,
    }


def test_keys_become_annotators_named_after_the_key_even_when_the_name_is_taken(engine: sa.Engine) -> None:
    from prodloop.annotation import annotator_for_key
    from prodloop.server.auth import authenticate, create_api_key

    pid = ensure_project(engine, "default")
    register_annotator(engine, pid, "alice")
    keys = [create_api_key(engine, "default", "annotator", name="alice") for _ in range(3)]
    names = []
    for key in keys:
        principal = authenticate(engine, key)
        names.append(annotator_for_key(engine, pid, principal.key_id).name)
        assert annotator_for_key(engine, pid, principal.key_id).name == names[-1]  # stable
    assert names[0] == f"alice ({keys[0][:10]})"
    assert len(set(names)) == 3 and all(name.startswith("alice (") for name in names)
