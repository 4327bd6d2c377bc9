"""Snapshots on SQLite and PostgreSQL: content-addressed ids, idempotent rebuilds, verification that
names what was tampered with, and nothing half-written."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import rfc8785
import sqlalchemy as sa

from prodloop.annotation import QueueSettings, create_queue
from prodloop.datasets import get_snapshot, list_snapshots, snapshot_queue, snapshot_rows, verify_snapshot
from prodloop.datasets import snapshots as snapshots_module
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.server.auth import ensure_project
from prodloop.store.schema import dataset_row_labels, dataset_rows, dataset_snapshots
from tests.datasets.support import Labelled, labelled_queue, trace_id


@pytest.fixture
def setup(engine: sa.Engine) -> Labelled:
    return labelled_queue(engine)


def stored_texts(engine: sa.Engine, snapshot: str) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(dataset_rows.c.content)
                .where(dataset_rows.c.snapshot_id == snapshot)
                .order_by(dataset_rows.c.position)
            ).scalars()
        )


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_the_id_is_the_sha256_of_the_canonical_manifest_which_hashes_every_row(setup: Labelled) -> None:
    snapshot = snapshot_queue(setup.engine, setup.pid, "intents", "intents-v1", created_by="ana")
    texts = stored_texts(setup.engine, snapshot["id"])
    manifest = snapshot["manifest"]
    # Recomputed here with hashlib and rfc8785 alone, as a user checking an export would.
    assert all(rfc8785.dumps(json.loads(text)).decode() == text for text in texts)
    assert manifest["row_hashes"] == [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    assert manifest["rows_sha256"] == hashlib.sha256("".join(t + "\n" for t in texts).encode()).hexdigest()
    assert snapshot["id"] == hashlib.sha256(rfc8785.dumps(manifest)).hexdigest()
    # When and by whom are kept beside the content, not in it.
    assert "created_by" not in manifest and snapshot["created_by"] == "ana"

    rows = [json.loads(text) for text in texts]
    assert [row["item_id"] for row in rows] == sorted(setup.items.values())
    first = rows[0]
    assert first["trace_id"] == trace_id(0)
    assert (first["input"], first["output"]) == ("question 0", "answer 0")
    assert first["label"] == {"intent": "billing", "urgent": "no"}
    assert first["annotators"] == {"alice": first["label"], "bob": first["label"]}
    assert first["label_ids"] == sorted([setup.labels[(0, "alice")], setup.labels[(0, "bob")]])
    assert manifest["counts"] == {"rows": 6, "labels": 12, "annotators": 2}
    assert manifest["schema_versions"] == ["support-intent@1"]
    assert [person["name"] for person in manifest["annotators"]] == ["alice", "bob"]
    assert manifest["label_ids"] == sorted(setup.labels.values())


def test_rebuilding_the_same_labels_gives_the_same_id_and_stores_it_once(setup: Labelled) -> None:
    ids = []
    for aggregation in ("majority", "dawid-skene", "adjudicated"):
        first = snapshot_queue(setup.engine, setup.pid, "intents", "train", aggregation)
        again = snapshot_queue(setup.engine, setup.pid, "intents", "train", aggregation, created_by="someone")
        assert first["created"] and not again["created"]
        assert again["id"] == first["id"] and again["created_by"] is None  # the stored one, as it was
        assert verify_snapshot(setup.engine, setup.pid, first["id"])["ok"]
        ids.append(first["id"])
    assert sorted(entry["id"] for entry in list_snapshots(setup.engine, setup.pid)) == sorted(ids)
    assert count(setup.engine, dataset_rows) == 6 + 6 + 5
    # The name is part of the content: the same rows under another name are another snapshot.
    renamed = snapshot_queue(setup.engine, setup.pid, "intents", "train-copy")
    assert renamed["created"] and renamed["id"] not in ids
    assert (
        renamed["manifest"]["rows_sha256"]
        == get_snapshot(setup.engine, setup.pid, ids[0])["manifest"]["rows_sha256"]
    )


def test_a_correction_makes_a_new_snapshot_and_the_old_one_still_verifies(setup: Labelled) -> None:
    before = snapshot_queue(setup.engine, setup.pid, "intents", "train")
    row3 = json.loads(stored_texts(setup.engine, before["id"])[3])
    assert row3["label"]["intent"] == "billing"  # a tie between alice and bob, broken to the first option
    old_label = setup.labels[(3, "alice")]
    new_label = setup.correct(3, "alice", {"intent": "refund", "urgent": "no"})

    after = snapshot_queue(setup.engine, setup.pid, "intents", "train")
    assert after["created"] and after["id"] != before["id"]
    changed = json.loads(stored_texts(setup.engine, after["id"])[3])
    assert changed["label"]["intent"] == "refund"
    assert new_label in changed["label_ids"] and old_label not in changed["label_ids"]
    assert old_label in before["manifest"]["label_ids"]
    for snapshot in (before, after):
        assert verify_snapshot(setup.engine, setup.pid, snapshot["id"])["ok"]


def test_adjudicated_takes_the_reviewers_value_and_leaves_out_items_waiting_for_review(
    setup: Labelled,
) -> None:
    snapshot = snapshot_queue(setup.engine, setup.pid, "intents", "gold-standard", "adjudicated")
    rows = [json.loads(text) for text in stored_texts(setup.engine, snapshot["id"])]
    by_item = {row["item_id"]: row for row in rows}
    assert set(by_item) == {setup.items[n] for n in (0, 1, 2, 3, 4)}  # item 5 is still in review
    adjudicated = by_item[setup.items[3]]
    assert adjudicated["label"] == {"intent": "refund", "urgent": "no"}
    assert adjudicated["source"] == {"intent": "adjudication", "urgent": "adjudication"}
    assert len(adjudicated["label_ids"]) == 3  # alice's, bob's and the reviewer's
    assert "rita" in [person["name"] for person in snapshot["manifest"]["annotators"]]
    assert snapshot["manifest"]["filters"]["items"] == "done"


def test_a_snapshot_is_found_by_a_unique_prefix_of_eight_hex_digits(setup: Labelled) -> None:
    snapshot = snapshot_queue(setup.engine, setup.pid, "intents", "train")
    assert get_snapshot(setup.engine, setup.pid, snapshot["id"][:8].upper())["id"] == snapshot["id"]
    with pytest.raises(ValidationFailed, match="at least the first 8"):
        get_snapshot(setup.engine, setup.pid, snapshot["id"][:7])
    with pytest.raises(NotFound, match="prodloop dataset ls"):
        get_snapshot(setup.engine, setup.pid, "0" * 8 if not snapshot["id"].startswith("0" * 8) else "f" * 8)
    # Another project cannot see it.
    other = ensure_project(setup.engine, "elsewhere")
    with pytest.raises(NotFound):
        get_snapshot(setup.engine, other, snapshot["id"])
    # Two snapshots sharing the prefix: the prefix is ambiguous.
    with setup.engine.begin() as connection:
        connection.execute(
            dataset_snapshots.insert().values(
                id=snapshot["id"][:8] + "0" * 56,
                project_id=setup.pid,
                name="look-alike",
                manifest={},
                row_count=0,
                created_ns=0,
            )
        )
    with pytest.raises(Conflict, match="matches 2 snapshots"):
        get_snapshot(setup.engine, setup.pid, snapshot["id"][:8])


def test_rows_page_in_order(setup: Labelled) -> None:
    snapshot = snapshot_queue(setup.engine, setup.pid, "intents", "train")
    first = snapshot_rows(setup.engine, setup.pid, snapshot["id"], 0, 4)
    rest = snapshot_rows(setup.engine, setup.pid, snapshot["id"], first["next_offset"], 4)
    assert [row["position"] for row in first["rows"] + rest["rows"]] == list(range(6))
    assert (first["total"], first["next_offset"], rest["next_offset"]) == (6, 4, None)


def test_what_cannot_be_snapshotted_is_refused(setup: Labelled) -> None:
    create_queue(setup.engine, setup.pid, QueueSettings(name="empty", schema="support-intent@1"))
    with pytest.raises(ValidationFailed, match="queue 'empty' has no labelled items"):
        snapshot_queue(setup.engine, setup.pid, "empty", "nothing")
    with pytest.raises(NotFound, match="queue 'nope' does not exist"):
        snapshot_queue(setup.engine, setup.pid, "nope", "nothing")
    with pytest.raises(ValidationFailed, match="'mode' is not one of majority, dawid-skene, adjudicated"):
        snapshot_queue(setup.engine, setup.pid, "intents", "x", "mode")
    with pytest.raises(ValidationFailed, match="name needs 1 to 200"):
        snapshot_queue(setup.engine, setup.pid, "intents", "  ")
    assert count(setup.engine, dataset_snapshots) == 0


def test_a_failed_write_leaves_nothing_behind(setup: Labelled, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = sa.Table(
        "no_such_table", sa.MetaData(), sa.Column("snapshot_id", sa.String), sa.Column("label_id", sa.Integer)
    )
    monkeypatch.setattr(snapshots_module, "dataset_row_labels", missing)
    with pytest.raises(sa.exc.DBAPIError):
        snapshot_queue(setup.engine, setup.pid, "intents", "train")
    assert count(setup.engine, dataset_snapshots) == count(setup.engine, dataset_rows) == 0
    monkeypatch.undo()
    assert snapshot_queue(setup.engine, setup.pid, "intents", "train")["created"]


# --------------------------------------------------------------------------------------------------
# Verification after tampering


def _tamper_row(connection: sa.Connection, snapshot: str) -> None:
    text = connection.execute(
        sa.select(dataset_rows.c.content).where(
            dataset_rows.c.snapshot_id == snapshot, dataset_rows.c.position == 2
        )
    ).scalar_one()
    row = json.loads(text)
    row["label"]["intent"] = "refund"  # still canonical JSON: only the hashes can tell
    connection.execute(
        dataset_rows.update()
        .where(dataset_rows.c.snapshot_id == snapshot, dataset_rows.c.position == 2)
        .values(content=rfc8785.dumps(row).decode())
    )


def _tamper_manifest(connection: sa.Connection, snapshot: str) -> None:
    manifest = connection.execute(
        sa.select(dataset_snapshots.c.manifest).where(dataset_snapshots.c.id == snapshot)
    ).scalar_one()
    connection.execute(
        dataset_snapshots.update()
        .where(dataset_snapshots.c.id == snapshot)
        .values(manifest={**manifest, "aggregation": "adjudicated"})
    )


def _drop_row(connection: sa.Connection, snapshot: str) -> None:
    connection.execute(
        dataset_rows.delete().where(dataset_rows.c.snapshot_id == snapshot, dataset_rows.c.position == 5)
    )


def _drop_label_link(connection: sa.Connection, snapshot: str) -> None:
    label = connection.execute(
        sa.select(sa.func.min(dataset_row_labels.c.label_id)).where(
            dataset_row_labels.c.snapshot_id == snapshot
        )
    ).scalar_one()
    connection.execute(
        dataset_row_labels.delete().where(
            dataset_row_labels.c.snapshot_id == snapshot, dataset_row_labels.c.label_id == label
        )
    )


TAMPERING: dict[str, tuple[Any, str, str]] = {
    "row": (_tamper_row, "row", "row 2 (item {item}, trace {trace}) differs from what was hashed"),
    "manifest": (_tamper_manifest, "manifest", "the manifest hashes to"),
    "missing row": (_drop_row, "rows", "5 rows are stored, the manifest lists 6"),
    "label link": (_drop_label_link, "labels", "are in the manifest but not in the label links"),
}


def test_verify_names_what_was_tampered_with(setup: Labelled) -> None:
    made = {kind: snapshot_queue(setup.engine, setup.pid, "intents", kind)["id"] for kind in TAMPERING}
    for kind, snapshot in made.items():
        assert verify_snapshot(setup.engine, setup.pid, snapshot) == {
            "id": snapshot,
            "ok": True,
            "rows_checked": 6,
            "problems": [],
            "more_problems": 0,
        }
        with setup.engine.begin() as connection:
            TAMPERING[kind][0](connection, snapshot)

    for kind, snapshot in made.items():
        _, check, message = TAMPERING[kind]
        report = verify_snapshot(setup.engine, setup.pid, snapshot)
        assert not report["ok"], kind
        expected = message.format(item=setup.items[2], trace=trace_id(2))
        assert any(p["check"] == check and expected in p["message"] for p in report["problems"]), report
    row_report = verify_snapshot(setup.engine, setup.pid, made["row"])
    named = [p for p in row_report["problems"] if p["check"] == "row"]
    assert [(p["position"], p["item_id"], p["trace_id"]) for p in named] == [(2, setup.items[2], trace_id(2))]


def test_the_same_snapshot_made_at_once_by_several_callers_is_stored_once(setup: Labelled) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda _: snapshot_queue(setup.engine, setup.pid, "intents", "train"), range(4)))
    assert len({snapshot["id"] for snapshot in made}) == 1
    assert sum(snapshot["created"] for snapshot in made) == 1
    assert count(setup.engine, dataset_snapshots) == 1 and count(setup.engine, dataset_rows) == 6
    assert verify_snapshot(setup.engine, setup.pid, made[0]["id"])["ok"]


# --------------------------------------------------------------------------------------------------
# Verification of malformed data and of the columns that mirror the content


def _set_row(connection: sa.Connection, snapshot: str, position: int, **changes: Any) -> None:
    """Rewrite row ``position``'s JSON with ``changes`` (still canonical, so only the checks can tell)."""
    where = (dataset_rows.c.snapshot_id == snapshot, dataset_rows.c.position == position)
    row = json.loads(connection.execute(sa.select(dataset_rows.c.content).where(*where)).scalar_one())
    connection.execute(
        dataset_rows.update().where(*where).values(content=rfc8785.dumps({**row, **changes}).decode())
    )


def _set_manifest(connection: sa.Connection, snapshot: str, manifest: Any) -> None:
    connection.execute(
        dataset_snapshots.update().where(dataset_snapshots.c.id == snapshot).values(manifest=manifest)
    )


def _manifest(connection: sa.Connection, snapshot: str) -> Any:
    return connection.execute(
        sa.select(dataset_snapshots.c.manifest).where(dataset_snapshots.c.id == snapshot)
    ).scalar_one()


MALFORMED: dict[str, tuple[Any, str, str]] = {
    "row label_ids of strings": (
        lambda c, s: _set_row(c, s, 2, label_ids=["x"]),
        "row",
        'row 2 (item {item}, trace {trace}) has label_ids ["x"], not a list of integers',
    ),
    "row label_ids a number": (
        lambda c, s: _set_row(c, s, 2, label_ids=5),
        "row",
        "row 2 (item {item}, trace {trace}) has label_ids 5, not a list of integers",
    ),
    "manifest label_ids of strings": (
        lambda c, s: _set_manifest(c, s, {**_manifest(c, s), "label_ids": ["1", None]}),
        "manifest",
        """the manifest's label_ids is ["1", null], not a list of integers""",
    ),
    "manifest label_ids an object": (
        lambda c, s: _set_manifest(c, s, {**_manifest(c, s), "label_ids": {"a": 1}}),
        "manifest",
        """the manifest's label_ids is {{"a": 1}}, not a list of integers""",
    ),
    "manifest a list": (lambda c, s: _set_manifest(c, s, [1, 2]), "manifest", "the manifest is a list"),
    "manifest a string": (lambda c, s: _set_manifest(c, s, "x"), "manifest", "the manifest is a string"),
    "row_hashes not a list": (
        lambda c, s: _set_manifest(c, s, {**_manifest(c, s), "row_hashes": 7, "counts": None}),
        "manifest",
        "the manifest's row_hashes is a number, not a list",
    ),
    "snapshot name column": (
        lambda c, s: c.execute(
            dataset_snapshots.update().where(dataset_snapshots.c.id == s).values(name="renamed")
        ),
        "manifest",
        "the snapshot record's name 'renamed' is not the manifest's name",
    ),
    "row item_id column": (
        lambda c, s: c.execute(
            dataset_rows.update()
            .where(dataset_rows.c.snapshot_id == s, dataset_rows.c.position == 2)
            .values(item_id=dataset_rows.c.item_id + 1)
        ),
        "row",
        "row 2 (item {item}, trace {trace}) is stored with item_id {next_item} but its content says {item}",
    ),
    "row trace_id column": (
        lambda c, s: c.execute(
            dataset_rows.update()
            .where(dataset_rows.c.snapshot_id == s, dataset_rows.c.position == 2)
            .values(trace_id=trace_id(9))
        ),
        "row",
        "row 2 (item {item}, trace {trace}) is stored with trace_id '{other}' but its content says '{trace}'",
    ),
}


def test_verify_reports_malformed_data_and_mismatched_columns_without_raising(setup: Labelled) -> None:
    made = {kind: snapshot_queue(setup.engine, setup.pid, "intents", kind)["id"] for kind in MALFORMED}
    with setup.engine.begin() as connection:
        for kind, snapshot in made.items():
            MALFORMED[kind][0](connection, snapshot)

    for kind, snapshot in made.items():
        _, check, message = MALFORMED[kind]
        report = verify_snapshot(setup.engine, setup.pid, snapshot)
        assert not report["ok"] and report["id"] == snapshot, kind
        expected = message.format(
            item=setup.items[2], trace=trace_id(2), next_item=setup.items[2] + 1, other=trace_id(9)
        )
        assert any(p["check"] == check and expected in p["message"] for p in report["problems"]), (
            kind,
            report,
        )
        if check == "row":
            named = [p for p in report["problems"] if p["check"] == "row"]
            assert {(p["position"], p["item_id"]) for p in named} == {(2, setup.items[2])}, kind
