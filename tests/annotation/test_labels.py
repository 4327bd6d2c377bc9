"""Append-only labels in the store: corrections that supersede, item history, disagreement rules,
adjudication, and the current labels of a queue by time and schema version."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from prodloop.annotation import (
    Author,
    ItemIn,
    LabelSchema,
    QueueSettings,
    add_items,
    adjudicate,
    change_queue_schema,
    correct_label,
    create_queue,
    current_labels,
    disagreeing_fields,
    escalate_item,
    get_queue,
    item_history,
    items_for_review,
    items_of_trace,
    labels_by_ids,
    lease_next_item,
    register_annotator,
    save_schema,
    submit_label,
)
from prodloop.errors import Conflict, Forbidden, NotFound, ValidationFailed
from prodloop.server.auth import ensure_project
from prodloop.store.schema import labels
from tests.annotation.test_queues import INTENT, annotators, make_queue, rows, traced


def label_next(
    engine: sa.Engine, pid: int, annotator: int, value: dict[str, Any], queue: str = "triage"
) -> dict[str, Any]:
    """Lease the annotator's next item and label it; returns the label."""
    leased = lease_next_item(engine, pid, queue, annotator)
    assert leased is not None
    return submit_label(engine, pid, leased["item"]["id"], annotator, value)["label"]  # type: ignore[no-any-return]


def stored(engine: sa.Engine, label_id: int) -> Any:
    with engine.connect() as connection:
        return connection.execute(sa.select(labels).where(labels.c.id == label_id)).one()


def label_rows(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(labels)).scalar_one()


def item_status(engine: sa.Engine, pid: int, item_id: int) -> str:
    return str(item_history(engine, pid, item_id)["status"])


@pytest.fixture
def one_label(engine: sa.Engine) -> tuple[int, list[int], dict[str, Any]]:
    """A queue of one item with overlap 2; annotator ann-0 has labelled it."""
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(1))
    people = annotators(engine, pid, 3)
    first = label_next(engine, pid, people[0], {"intent": "billing", "tags": ["vip"]})
    return pid, people, first


# --------------------------------------------------------------------------------------------------
# Corrections


def test_a_correction_appends_and_leaves_the_old_label_as_it_was(
    engine: sa.Engine, one_label: tuple[int, list[int], dict[str, Any]]
) -> None:
    pid, (a, _, _), first = one_label
    before = stored(engine, first["id"])
    fixed = correct_label(
        engine, pid, first["id"], Author(a), {"intent": "refund"}, reason="  misread the ticket "
    )
    assert fixed["supersedes"] == first["id"] and fixed["id"] != first["id"]
    assert fixed["value"] == {"intent": "refund", "tags": None, "note": None}
    assert fixed["reason"] == "misread the ticket"
    assert fixed["annotator_id"] == a and fixed["author_id"] == a
    assert fixed["schema"] == "support-intent@1"
    assert stored(engine, first["id"]) == before  # nothing of the old row changed
    assert before.value == {"intent": "billing", "tags": ["vip"], "note": None}
    assert label_rows(engine) == 2


def test_corrections_form_a_chain_and_only_its_end_can_be_corrected(
    engine: sa.Engine, one_label: tuple[int, list[int], dict[str, Any]]
) -> None:
    pid, (a, _, _), first = one_label
    second = correct_label(engine, pid, first["id"], Author(a), {"intent": "refund"}, "misread")
    third = correct_label(engine, pid, second["id"], Author(a), {"intent": "bug"}, "asked the lead")
    assert (second["supersedes"], third["supersedes"]) == (first["id"], second["id"])
    for old in (first, second):
        with pytest.raises(Conflict) as caught:
            correct_label(engine, pid, old["id"], Author(a), {"intent": "other"}, "again")
        assert caught.value.status == 409
        assert f"label {third['id']}" in caught.value.message and "correct that one" in caught.value.message
        assert caught.value.detail == {"label": old["id"], "current": third["id"]}
    assert label_rows(engine) == 3
    history = item_history(engine, pid, first["item_id"])
    assert [(v["id"], v["current"]) for v in history["labels"]] == [
        (first["id"], False),
        (second["id"], False),
        (third["id"], True),
    ]


def test_someone_elses_label_needs_a_reviewer(
    engine: sa.Engine, one_label: tuple[int, list[int], dict[str, Any]]
) -> None:
    pid, (a, b, reviewer), first = one_label
    with pytest.raises(Forbidden) as caught:
        correct_label(engine, pid, first["id"], Author(b), {"intent": "bug"}, "I think it is a bug")
    assert caught.value.status == 403 and "reviewer" in caught.value.message
    assert label_rows(engine) == 1
    fixed = correct_label(
        engine, pid, first["id"], Author(reviewer, reviewer=True), {"intent": "bug"}, "guideline 3.2"
    )
    # Still a's answer in a's chain, written by the reviewer.
    assert fixed["annotator_id"] == a and fixed["author_id"] == reviewer
    history = item_history(engine, pid, first["item_id"])
    assert [(v["annotator"], v["author"]) for v in history["labels"]] == [
        ("ann-0", "ann-0"),
        ("ann-0", "ann-2"),
    ]
    # a may correct the reviewer's version of her own answer.
    again = correct_label(engine, pid, fixed["id"], Author(a), {"intent": "refund"}, "no, a refund")
    assert again["author_id"] == a


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_correction_needs_a_reason(
    engine: sa.Engine, one_label: tuple[int, list[int], dict[str, Any]], reason: str
) -> None:
    pid, (a, _, _), first = one_label
    with pytest.raises(ValidationFailed) as caught:
        correct_label(engine, pid, first["id"], Author(a), {"intent": "refund"}, reason)
    assert "reason" in caught.value.message
    assert label_rows(engine) == 1


def test_a_correction_is_checked_against_the_schema(
    engine: sa.Engine, one_label: tuple[int, list[int], dict[str, Any]]
) -> None:
    pid, (a, _, _), first = one_label
    with pytest.raises(ValidationFailed) as caught:
        correct_label(engine, pid, first["id"], Author(a), {"intent": "maybe"}, "typo")
    assert "'maybe'" in caught.value.message and "billing, refund, bug, other" in caught.value.message
    with pytest.raises(NotFound):
        correct_label(engine, pid, first["id"] + 100, Author(a), {"intent": "bug"}, "typo")
    other = ensure_project(engine, "other")
    with pytest.raises(NotFound):
        correct_label(engine, other, first["id"], Author(a, reviewer=True), {"intent": "bug"}, "typo")
    assert label_rows(engine) == 1


# --------------------------------------------------------------------------------------------------
# History


def test_item_history_lists_every_version_and_filters_by_annotator(
    engine: sa.Engine, one_label: tuple[int, list[int], dict[str, Any]]
) -> None:
    pid, (a, b, reviewer), first = one_label
    item_id = first["item_id"]
    second = correct_label(engine, pid, first["id"], Author(a), {"intent": "refund"}, "misread")
    b_label = label_next(engine, pid, b, {"intent": "bug"})
    assert b_label["item_id"] == item_id
    assert item_status(engine, pid, item_id) == "review"  # refund against bug
    final = adjudicate(
        engine, pid, item_id, reviewer, {"intent": "refund"}, "the customer asks for money back"
    )

    history = item_history(engine, pid, item_id)
    assert history["item_id"] == item_id and history["status"] == "done"
    assert [(v["id"], v["annotator"], v["role"], v["current"]) for v in history["labels"]] == [
        (first["id"], "ann-0", "annotation", False),
        (second["id"], "ann-0", "annotation", True),
        (b_label["id"], "ann-1", "annotation", True),
        (final["id"], "ann-2", "adjudication", True),
    ]
    assert history["labels"][1]["reason"] == "misread"
    assert all(v["schema"] == "support-intent@1" and v["created_at"] for v in history["labels"])

    mine = item_history(engine, pid, item_id, only_annotator=a)
    assert [v["id"] for v in mine["labels"]] == [first["id"], second["id"]]
    assert [v["id"] for v in item_history(engine, pid, item_id, only_annotator=b)["labels"]] == [
        b_label["id"]
    ]
    with pytest.raises(NotFound):
        item_history(engine, pid, item_id + 100)
    with pytest.raises(NotFound):
        item_history(engine, ensure_project(engine, "other"), item_id)


def test_history_for_one_annotator_hides_other_peoples_notes(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(1))
    a, b = annotators(engine, pid, 2)
    leased = lease_next_item(engine, pid, "triage", a)
    assert leased is not None
    escalate_item(engine, pid, leased["item"]["id"], a, "what is 'churn'?", field="tags")
    label = label_next(engine, pid, b, {"intent": "bug"})
    hidden = item_history(engine, pid, label["item_id"], only_annotator=b)
    assert hidden["escalations"] == [] and hidden["skips"] == []
    shown = item_history(engine, pid, label["item_id"], only_annotator=a)
    assert [e["note"] for e in shown["escalations"]] == ["what is 'churn'?"] and shown["labels"] == []


# --------------------------------------------------------------------------------------------------
# Disagreement


@pytest.fixture
def schema() -> LabelSchema:
    return LabelSchema.from_document(
        {
            "name": "s",
            "fields": [
                {"name": "intent", "type": "categorical", "options": ["a", "b", "c"]},
                {"name": "tags", "type": "multi_label", "options": ["x", "y", "z"], "required": False},
                {"name": "score", "type": "numeric", "minimum": 1, "maximum": 5, "required": False},
                {"name": "note", "type": "text", "required": False},
            ],
        }
    )


def test_unanimity_flags_any_difference(schema: LabelSchema) -> None:
    same = [{"intent": "a", "note": "first"}, {"intent": "a", "note": "second, other words"}]
    assert disagreeing_fields(schema, same, "unanimity", 0.5) == []  # text is not compared
    split = [{"intent": "a"}, {"intent": "a"}, {"intent": "b"}]
    assert disagreeing_fields(schema, split, "unanimity", 0.5) == ["intent"]
    numbers = [{"intent": "a", "score": 4}, {"intent": "a", "score": 4.0}, {"intent": "a", "score": 3}]
    assert disagreeing_fields(schema, numbers, "unanimity", 0.5) == ["score"]
    assert disagreeing_fields(schema, [{"intent": "c"}], "unanimity", 1.0) == []


def test_majority_flags_a_top_share_below_the_threshold(schema: LabelSchema) -> None:
    two_to_one = [{"intent": "a"}, {"intent": "a"}, {"intent": "b"}]
    assert disagreeing_fields(schema, two_to_one, "majority", 0.5) == []
    assert disagreeing_fields(schema, two_to_one, "majority", 2 / 3) == []  # the share equals it
    assert disagreeing_fields(schema, two_to_one, "majority", 0.7) == ["intent"]
    three_ways = [{"intent": "a"}, {"intent": "b"}, {"intent": "c"}]
    assert disagreeing_fields(schema, three_ways, "majority", 0.34) == ["intent"]
    assert disagreeing_fields(schema, three_ways, "majority", 0.3) == []


def test_multi_label_answers_are_compared_as_sets(schema: LabelSchema) -> None:
    values = [{"intent": "a", "tags": ["x", "y"]}, {"intent": "a", "tags": ["y", "x"]}]
    assert disagreeing_fields(schema, values, "unanimity", 0.5) == []
    values.append({"intent": "a", "tags": ["x"]})
    assert disagreeing_fields(schema, values, "unanimity", 0.5) == ["tags"]
    assert disagreeing_fields(schema, values, "majority", 0.5) == []
    # An optional field left empty is an answer too.
    assert disagreeing_fields(
        schema, [{"intent": "a", "tags": ["x"]}, {"intent": "a"}], "unanimity", 0.5
    ) == ["tags"]


def test_the_queue_rule_decides_what_goes_to_review(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, "unanimous", overlap=3)
    create_queue(
        engine,
        pid,
        QueueSettings(
            name="majority",
            schema="support-intent@1",
            overlap=3,
            disagreement_rule="majority",
            disagreement_threshold=0.6,
        ),
    )
    people = annotators(engine, pid, 3)
    answers = [
        # item 0: 2 to 1 on intent; item 1: tags the same set; item 2: only the notes differ;
        # item 3: three ways on intent.
        [{"intent": "bug"}, {"intent": "bug"}, {"intent": "refund"}],
        [{"intent": "bug", "tags": ["vip", "angry"]}] * 3,
        [{"intent": "other", "note": text} for text in ("odd", "strange", "?")],
        [{"intent": "bug"}, {"intent": "refund"}, {"intent": "other"}],
    ]
    expected = {
        "unanimous": ["review", "done", "done", "review"],
        "majority": ["done", "done", "done", "review"],
    }
    for queue, statuses in expected.items():
        add_items(engine, pid, queue, rows(4))
        got = []
        for values in answers:
            item_id = None
            for person, value in zip(people, values, strict=True):
                item_id = label_next(engine, pid, person, value, queue)["item_id"]
            assert item_id is not None
            got.append(item_status(engine, pid, item_id))
        assert got == statuses, queue
        review = items_for_review(engine, pid, queue)
        assert review["total"] == statuses.count("review")
        assert all(item["disagreeing_fields"] == ["intent"] for item in review["items"])
    progress = get_queue(engine, pid, "majority")["progress"]
    assert (progress["done"], progress["review"], progress["complete"]) == (3, 1, False)


# --------------------------------------------------------------------------------------------------
# Adjudication


def test_adjudication_settles_the_item_and_resolves_escalations(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(1))
    a, b, c, reviewer, second_reviewer = annotators(engine, pid, 5)
    leased = lease_next_item(engine, pid, "triage", a)
    assert leased is not None
    item_id = leased["item"]["id"]
    escalate_item(engine, pid, item_id, a, "refund or billing?", field="intent")
    label_next(engine, pid, b, {"intent": "refund"})
    label_next(engine, pid, c, {"intent": "billing"})
    assert item_status(engine, pid, item_id) == "review"
    assert get_queue(engine, pid, "triage")["progress"]["open_escalations"] == 1

    with pytest.raises(ValidationFailed) as caught:
        adjudicate(engine, pid, item_id, reviewer, {"intent": "refund"}, rationale=" ")
    assert "rationale" in caught.value.message
    with pytest.raises(ValidationFailed):
        adjudicate(engine, pid, item_id, reviewer, {"intent": "maybe"}, rationale="x")
    with pytest.raises(NotFound):
        adjudicate(engine, pid, item_id + 100, reviewer, {"intent": "refund"}, rationale="x")
    assert item_status(engine, pid, item_id) == "review"

    first = adjudicate(engine, pid, item_id, reviewer, {"intent": "refund"}, "they want the money back")
    assert first["role"] == "adjudication" and first["reason"] == "they want the money back"
    assert first["supersedes"] is None
    assert item_status(engine, pid, item_id) == "done"
    progress = get_queue(engine, pid, "triage")["progress"]
    assert (progress["open_escalations"], progress["done"], progress["complete"]) == (0, 1, True)
    assert items_for_review(engine, pid, "triage")["total"] == 0
    assert [e["resolved"] for e in item_history(engine, pid, item_id)["escalations"]] == [True]

    second = adjudicate(engine, pid, item_id, second_reviewer, {"intent": "billing"}, "policy 4 says billing")
    assert second["supersedes"] == first["id"] and second["author_id"] == second_reviewer
    finals = current_labels(engine, pid, "triage", role="adjudication")
    assert [(f["id"], f["value"]["intent"]) for f in finals] == [(second["id"], "billing")]
    assert stored(engine, first["id"]).value["intent"] == "refund"  # kept as it was


def test_an_escalated_item_waits_for_review_until_adjudicated(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(2))
    a, b, reviewer = annotators(engine, pid, 3)
    leased = lease_next_item(engine, pid, "triage", a)
    assert leased is not None
    item_id = leased["item"]["id"]
    escalate_item(engine, pid, item_id, a, "no idea")
    label = label_next(engine, pid, b, {"intent": "other"})
    assert label["item_id"] == item_id
    assert [i["id"] for i in items_for_review(engine, pid, "triage")["items"]] == [item_id]
    adjudicate(engine, pid, item_id, reviewer, {"intent": "other"}, "b is right")
    assert items_for_review(engine, pid, "triage")["items"] == []


# --------------------------------------------------------------------------------------------------
# Current labels


def test_current_labels_are_the_ends_of_the_chains(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", [*rows(2), ItemIn(id="gold", input="g", gold={"intent": "bug"})])
    a, b = annotators(engine, pid, 2)
    first = label_next(engine, pid, a, {"intent": "bug"})
    fixed = correct_label(engine, pid, first["id"], Author(a), {"intent": "refund"}, "misread")
    other = label_next(engine, pid, b, {"intent": "bug"})
    current = current_labels(engine, pid, "triage")
    assert [(row["id"], row["annotator"], row["kind"], row["value"]["intent"]) for row in current] == [
        (fixed["id"], "ann-0", "human", "refund"),
        (other["id"], "ann-1", "human", "bug"),
    ]
    assert all(row["gold"] is None and row["schema"] == "support-intent@1" for row in current)


def test_current_labels_by_time(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(3))
    [a] = annotators(engine, pid, 1)
    early = label_next(engine, pid, a, {"intent": "bug"})
    time.sleep(0.002)
    middle = label_next(engine, pid, a, {"intent": "bug"})
    time.sleep(0.002)
    late = label_next(engine, pid, a, {"intent": "bug"})
    assert early["created_ns"] < middle["created_ns"] < late["created_ns"]

    def ids(**window: int) -> list[int]:
        return [row["id"] for row in current_labels(engine, pid, "triage", **window)]

    assert ids() == [early["id"], middle["id"], late["id"]]
    assert ids(since_ns=middle["created_ns"]) == [middle["id"], late["id"]]
    assert ids(until_ns=middle["created_ns"]) == [early["id"]]  # until is exclusive
    assert ids(since_ns=middle["created_ns"], until_ns=late["created_ns"]) == [middle["id"]]
    assert ids(since_ns=late["created_ns"] + 1) == []


def test_current_labels_by_schema_version(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(2))
    [a] = annotators(engine, pid, 1)
    old = label_next(engine, pid, a, {"intent": "bug"})
    save_schema(engine, pid, {**INTENT, "guidelines": "Clearer now."})
    assert change_queue_schema(engine, pid, "triage", "support-intent@2")["schema"] == "support-intent@2"
    new = label_next(engine, pid, a, {"intent": "refund"})
    assert (old["schema"], new["schema"]) == ("support-intent@1", "support-intent@2")

    def ids(ref: str | None) -> list[int]:
        return [row["id"] for row in current_labels(engine, pid, "triage", schema_ref=ref)]

    assert ids(None) == [old["id"], new["id"]]
    assert ids("support-intent@1") == [old["id"]]
    assert ids("support-intent@2") == [new["id"]]
    assert ids("support-intent") == [new["id"]]  # the latest version
    with pytest.raises(NotFound):
        ids("support-intent@3")
    # The history keeps the version each label was given under.
    assert [v["schema"] for v in item_history(engine, pid, old["item_id"])["labels"]] == ["support-intent@1"]
    with pytest.raises(NotFound):
        current_labels(engine, pid, "no-such-queue")


def test_a_correction_moves_a_complete_item_between_review_and_done(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(1))
    first, second = annotators(engine, pid, 2)
    label_next(engine, pid, first, {"intent": "bug"})
    theirs = label_next(engine, pid, second, {"intent": "refund"})
    item_id = theirs["item_id"]
    assert item_status(engine, pid, item_id) == "review"
    fixed = correct_label(engine, pid, theirs["id"], Author(second), {"intent": "bug"}, "misread the ticket")
    assert item_status(engine, pid, item_id) == "done"
    assert items_for_review(engine, pid, "triage")["total"] == 0
    correct_label(engine, pid, fixed["id"], Author(second), {"intent": "other"}, "on second thought")
    assert item_status(engine, pid, item_id) == "review"
    adjudicate(engine, pid, item_id, first, {"intent": "bug"}, "guideline 3: crashes are bugs")
    mine = current_labels(engine, pid, "triage")[0]
    correct_label(engine, pid, mine["id"], Author(first), {"intent": "refund"}, "typo")
    assert item_status(engine, pid, item_id) == "done"  # a reviewer's decision stands


def test_an_escalation_needs_a_note(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(1))
    (person,) = annotators(engine, pid, 1)
    leased = lease_next_item(engine, pid, "triage", person)
    assert leased is not None
    with pytest.raises(ValidationFailed, match="needs a note"):
        escalate_item(engine, pid, leased["item"]["id"], person, "   ")
    assert item_history(engine, pid, leased["item"]["id"])["escalations"] == []


def test_an_item_settled_by_a_reviewer_is_not_handed_out_again(engine: sa.Engine) -> None:
    pid, _ = make_queue(engine, overlap=2)
    add_items(engine, pid, "triage", rows(2))
    first, reviewer = annotators(engine, pid, 2)
    leased = lease_next_item(engine, pid, "triage", first)
    assert leased is not None
    item_id = leased["item"]["id"]
    adjudicate(engine, pid, item_id, reviewer, {"intent": "bug"}, "obvious from the title")
    again = lease_next_item(engine, pid, "triage", first)
    assert again is not None and again["item"]["id"] != item_id


# --------------------------------------------------------------------------------------------------
# Reading labels by id and items by trace (what the datasets package uses)


def test_labels_by_ids_gives_each_label_once_with_its_people_schema_and_chain(
    engine: sa.Engine, one_label: tuple[int, list[int], dict[str, Any]]
) -> None:
    pid, (_, _, reviewer), first = one_label
    judge = register_annotator(engine, pid, "judge-1", kind="model").id
    theirs = label_next(engine, pid, judge, {"intent": "bug"})
    fixed = correct_label(
        engine, pid, first["id"], Author(reviewer, reviewer=True), {"intent": "refund"}, "guideline 3.2"
    )
    final = adjudicate(engine, pid, first["item_id"], reviewer, {"intent": "refund"}, "refund asked")

    found = labels_by_ids(
        engine, pid, [final["id"], fixed["id"], first["id"], theirs["id"], first["id"], 10**9]
    )
    assert [label["id"] for label in found] == [first["id"], theirs["id"], fixed["id"], final["id"]]
    assert [(label["annotator"], label["author"], label["kind"], label["role"]) for label in found] == [
        ("ann-0", "ann-0", "human", "annotation"),
        ("judge-1", "judge-1", "model", "annotation"),
        ("ann-0", "ann-2", "human", "annotation"),
        ("ann-2", "ann-2", "human", "adjudication"),
    ]
    assert [label["supersedes"] for label in found] == [None, None, first["id"], None]
    assert {label["schema"] for label in found} == {"support-intent@1"}
    assert found[0]["value"] == {"intent": "billing", "tags": ["vip"], "note": None}
    # The same shape as the item's history, plus the annotator's kind.
    history = {label["id"]: label for label in item_history(engine, pid, first["item_id"])["labels"]}
    for label in found:
        expected = {key: value for key, value in history[label["id"]].items() if key != "current"}
        assert {key: value for key, value in label.items() if key != "kind"} == expected
    # Labels of another project are not there to read.
    other = ensure_project(engine, "elsewhere")
    assert labels_by_ids(engine, other, [label["id"] for label in found]) == []
    assert labels_by_ids(engine, pid, []) == []


def test_labels_by_ids_reads_more_ids_than_one_query_may_bind(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, _ = make_queue(engine)
    add_items(engine, pid, "triage", rows(5))
    (person,) = annotators(engine, pid, 1)
    ids = [label_next(engine, pid, person, {"intent": "bug"})["id"] for _ in range(5)]
    # 70,000 ids: more bound parameters than PostgreSQL takes in one statement (65,535).
    asked = [*reversed(ids), *range(10**9, 10**9 + 70_000)]
    found = labels_by_ids(engine, pid, asked)
    assert [label["id"] for label in found] == sorted(ids)
    monkeypatch.setattr("prodloop.annotation.labels._IN_CHUNK", 2)
    assert labels_by_ids(engine, pid, ids) == found


def test_items_of_trace_lists_every_queue_that_holds_the_trace(engine: sa.Engine) -> None:
    pid, triage = make_queue(engine)
    second = create_queue(
        engine, pid, QueueSettings(name="second-look", schema="support-intent@1", overlap=2)
    )
    shared, alone = traced(engine, pid, 2)
    add_items(engine, pid, "triage", [ItemIn(trace_id=shared)])
    add_items(engine, pid, "second-look", [ItemIn(trace_id=alone), ItemIn(trace_id=shared)])
    (person,) = annotators(engine, pid, 1)
    labelled = label_next(engine, pid, person, {"intent": "refund"})  # triage: overlap 1, so done

    found = items_of_trace(engine, pid, shared.upper())
    assert [(item["queue_id"], item["queue"], item["status"]) for item in found] == [
        (triage["id"], "triage", "done"),
        (second["id"], "second-look", "open"),
    ]
    assert found[0]["item_id"] == labelled["item_id"] < found[1]["item_id"]
    assert item_history(engine, pid, found[1]["item_id"])["trace_id"] == shared
    assert [item["queue"] for item in items_of_trace(engine, pid, alone)] == ["second-look"]
    assert items_of_trace(engine, pid, "0" * 32) == []
    assert items_of_trace(engine, ensure_project(engine, "elsewhere"), shared) == []
