"""Diffs between snapshots, checkpoints, and lineage both ways, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from prodloop.datasets import (
    checkpoint_lineage,
    diff_snapshots,
    list_checkpoints,
    register_checkpoint,
    snapshot_queue,
    trace_lineage,
)
from prodloop.errors import Conflict, NotFound, ValidationFailed
from tests.datasets.support import Labelled, labelled_queue, trace_id


@pytest.fixture
def setup(engine: sa.Engine) -> Labelled:
    return labelled_queue(engine)


def test_diff_shows_added_removed_and_relabelled_rows_field_by_field(setup: Labelled) -> None:
    before = snapshot_queue(setup.engine, setup.pid, "intents", "train")
    setup.add(range(6, 8))
    for number in (6, 7):
        for who in ("alice", "bob"):
            setup.label(number, who, {"intent": "bug", "urgent": "yes"})
    setup.correct(3, "alice", {"intent": "refund", "urgent": "no"})
    after = snapshot_queue(setup.engine, setup.pid, "intents", "train")

    diff = diff_snapshots(setup.engine, setup.pid, before["id"][:8], after["id"][:8])
    assert diff["matched_by"] == "item_id"
    assert diff["counts"] == {"added": 2, "removed": 0, "relabelled": 1, "unchanged": 5}
    assert [(row["item_id"], row["trace_id"]) for row in diff["added"]] == [
        (setup.items[6], trace_id(6)),
        (setup.items[7], trace_id(7)),
    ]
    assert diff["added"][0]["label"] == {"intent": "bug", "urgent": "yes"}
    assert diff["relabelled"] == [
        {
            "item_id": setup.items[3],
            "trace_id": trace_id(3),
            "changes": [{"field": "intent", "a": "billing", "b": "refund"}],
        }
    ]

    backwards = diff_snapshots(setup.engine, setup.pid, after["id"], before["id"])
    assert backwards["counts"] == {"added": 0, "removed": 2, "relabelled": 1, "unchanged": 5}
    assert {row["item_id"] for row in backwards["removed"]} == {setup.items[6], setup.items[7]}
    assert backwards["relabelled"][0]["changes"] == [{"field": "intent", "a": "refund", "b": "billing"}]

    same = diff_snapshots(setup.engine, setup.pid, after["id"], after["id"])
    assert same["counts"] == {"added": 0, "removed": 0, "relabelled": 0, "unchanged": 8}


def test_lineage_from_a_checkpoint_to_the_exact_labels_and_from_a_trace_to_checkpoints(
    setup: Labelled,
) -> None:
    train = snapshot_queue(setup.engine, setup.pid, "intents", "train")
    superseded = setup.labels[(3, "alice")]
    correction = setup.correct(3, "alice", {"intent": "refund", "urgent": "no"})
    evaluation = snapshot_queue(setup.engine, setup.pid, "intents", "eval", "adjudicated")

    checkpoint = register_checkpoint(
        setup.engine,
        setup.pid,
        "support-ft-1",
        [(train["id"][:8], "train"), (evaluation["id"], "eval")],
        base_model="meta-llama/Llama-3.1-8B",
        adapter="s3://adapters/support-ft-1",
        metadata={"lr": 0.0002, "epochs": 3},
    )
    assert [(d["snapshot_id"], d["purpose"]) for d in checkpoint["datasets"]] == [
        (train["id"], "train"),
        (evaluation["id"], "eval"),
    ]
    assert checkpoint["metadata"] == {"lr": 0.0002, "epochs": 3}
    assert [entry["name"] for entry in list_checkpoints(setup.engine, setup.pid)] == ["support-ft-1"]

    lineage = checkpoint_lineage(setup.engine, setup.pid, "support-ft-1")
    by_id = {label["id"]: label for label in lineage["labels"]}
    # Exactly the labels each snapshot was made from, even those corrected since.
    assert set(by_id) == set(train["manifest"]["label_ids"]) | set(evaluation["manifest"]["label_ids"])
    assert by_id[superseded]["value"]["intent"] == "billing" and by_id[superseded]["purposes"] == ["train"]
    assert by_id[correction]["supersedes"] == superseded and by_id[correction]["purposes"] == ["eval"]
    shared = setup.labels[(0, "bob")]
    assert by_id[shared]["purposes"] == ["train", "eval"]
    assert sorted(by_id[shared]["snapshots"]) == sorted([train["id"], evaluation["id"]])
    assert (by_id[shared]["annotator"], by_id[shared]["kind"], by_id[shared]["trace_id"]) == (
        "bob",
        "human",
        trace_id(0),
    )
    reviews = [label for label in lineage["labels"] if label["role"] == "adjudication"]
    assert [(label["annotator"], label["value"]["intent"]) for label in reviews] == [("rita", "refund")]
    assert {p["name"]: p["labels"] for p in lineage["annotators"]} == {"alice": 7, "bob": 6, "rita": 1}
    assert lineage["counts"] == {"snapshots": 2, "labels": 14, "annotators": 3, "traces": 6}

    trace = trace_lineage(setup.engine, setup.pid, trace_id(3))
    assert [(item["item_id"], item["queue"], item["status"]) for item in trace["items"]] == [
        (setup.items[3], "intents", "done")
    ]
    versions = {label["id"]: label for label in trace["labels"]}
    assert versions[superseded]["current"] is False and versions[correction]["current"] is True
    assert {label["role"] for label in trace["labels"]} == {"annotation", "adjudication"}
    assert [(s["id"], s["label"]["intent"]) for s in trace["snapshots"]] == [
        (train["id"], "billing"),
        (evaluation["id"], "refund"),
    ]
    assert [(c["name"], c["purpose"]) for c in trace["checkpoints"]] == [
        ("support-ft-1", "train"),
        ("support-ft-1", "eval"),
    ]
    # Item 5 waits for review: it is in the training snapshot only.
    waiting = trace_lineage(setup.engine, setup.pid, trace_id(5))
    assert [s["name"] for s in waiting["snapshots"]] == ["train"]
    assert [(c["purpose"], c["snapshot_id"]) for c in waiting["checkpoints"]] == [("train", train["id"])]


def test_checkpoint_and_lineage_errors(setup: Labelled) -> None:
    snapshot = snapshot_queue(setup.engine, setup.pid, "intents", "train")
    register_checkpoint(setup.engine, setup.pid, "ft", [(snapshot["id"], "train")])
    with pytest.raises(Conflict, match="checkpoint 'ft' is already registered"):
        register_checkpoint(setup.engine, setup.pid, "ft", [(snapshot["id"], "eval")])
    with pytest.raises(NotFound, match="snapshot abcdef12 does not exist"):
        register_checkpoint(setup.engine, setup.pid, "ft-2", [("abcdef12", "train")])
    with pytest.raises(ValidationFailed, match="purpose 'test' is not one of train, eval"):
        register_checkpoint(setup.engine, setup.pid, "ft-2", [(snapshot["id"], "test")])
    with pytest.raises(ValidationFailed, match="at least one dataset snapshot"):
        register_checkpoint(setup.engine, setup.pid, "ft-2", [])
    with pytest.raises(ValidationFailed, match="canonical JSON"):
        register_checkpoint(
            setup.engine, setup.pid, "ft-2", [(snapshot["id"], "train")], metadata={"x": 2**60}
        )
    assert [entry["name"] for entry in list_checkpoints(setup.engine, setup.pid)] == ["ft"]
    with pytest.raises(NotFound, match="checkpoint 'nope' does not exist"):
        checkpoint_lineage(setup.engine, setup.pid, "nope")
    with pytest.raises(ValidationFailed, match="is not a trace id"):
        trace_lineage(setup.engine, setup.pid, "xyz")
    with pytest.raises(NotFound, match=f"trace {'f' * 32} does not exist"):
        trace_lineage(setup.engine, setup.pid, "f" * 32)
