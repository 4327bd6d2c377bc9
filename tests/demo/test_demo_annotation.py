"""The demo's labelled queue, read back through the annotation and dataset APIs: what a new user sees
on the queue dashboard, the reviewer's page and the datasets page right after loading the demo."""

from __future__ import annotations

import stat
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from prodloop.annotation import (
    agreement_by_schema_version,
    annotator_for_key,
    current_labels,
    escalation_summary,
    get_queue,
    gold_accuracy,
    item_history,
    items_for_review,
    lease_next_item,
    queue_agreement,
    queue_schema,
    release_item,
    schema_versions,
)
from prodloop.datasets import list_snapshots, verify_snapshot
from prodloop.demo import generate_scenario, load_demo
from prodloop.demo.annotation import QUEUE, REVIEWER, SCHEMA, SNAPSHOT, _period
from prodloop.errors import NotFound
from prodloop.server.auth import authenticate, project_id
from prodloop.store import create_store_engine, upgrade
from prodloop.store.schema import labels, queue_items

END = datetime(2025, 3, 1, tzinfo=UTC)
#: A week of a smaller demo: enough traces for the full queue of 200 items and 20 gold items.
DEMO = {"seed": 7, "days": 6, "traces_per_day": 80, "end": END}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("demo-annotation")
    engine = create_store_engine(f"sqlite:///{home / 'prodloop.db'}")
    upgrade(engine)
    keys = home / "demo-keys"
    load_demo(engine, project="demo", annotator_keys=keys, monitors=False, **DEMO)
    tickets = {t.trace_id: t for t in generate_scenario(**DEMO).tickets}
    yield {"engine": engine, "pid": project_id(engine, "demo"), "tickets": tickets, "keys": keys}
    engine.dispose()


def stored_items(engine: sa.Engine) -> list[sa.Row[Any]]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(queue_items).order_by(queue_items.c.id)))


def test_the_queue_moved_from_schema_version_1_to_version_2_with_clearer_guidelines(demo):
    engine, pid = demo["engine"], demo["pid"]
    assert [v["ref"] for v in schema_versions(engine, pid, SCHEMA)] == [f"{SCHEMA}@1", f"{SCHEMA}@2"]
    queue = get_queue(engine, pid, QUEUE)
    assert queue["schema"] == f"{SCHEMA}@2" and queue["overlap"] == 3 and queue["gold_share"] == 0.1
    schema = queue_schema(engine, pid, QUEUE)
    intent = schema.field("intent")
    assert intent.type == "categorical" and "acme_vault" in intent.options and "other" in intent.options
    assert schema.field("resolved").type == "ordinal" and schema.field("resolved").options == (
        "no",
        "partly",
        "yes",
    )
    assert schema.field("note").type == "text" and not schema.field("note").required
    assert "acme_vault" in schema.guidelines and "# Support intent" in schema.guidelines
    # Labels were given under both versions, and the clearer guidelines raised agreement on intent.
    versions = agreement_by_schema_version(engine, pid, QUEUE, n_resamples=50)["versions"]
    assert [v["schema"] for v in versions] == [f"{SCHEMA}@1", f"{SCHEMA}@2"]
    alpha = {v["schema"]: {f["field"]: f["krippendorff_alpha"] for f in v["fields"]} for v in versions}
    assert alpha[f"{SCHEMA}@1"]["intent"] < alpha[f"{SCHEMA}@2"]["intent"]


def test_the_items_are_a_stratified_sample_that_includes_flagged_answers(demo):
    engine = demo["engine"]
    items = [row for row in stored_items(engine) if row.gold is None]
    assert len(items) == 200 and all(row.trace_id in demo["tickets"] for row in items)
    # The 50 answers users flagged come first; the rest are 50 from each period of the scenario.
    flagged = [row for row in items if row.priority == 1]
    assert len(flagged) == 50
    assert all("sample" not in row.payload["metadata"] for row in items)  # annotators can't tell why
    periods = Counter(
        _period(demo["tickets"][row.trace_id], DEMO["days"]) for row in items if row.priority == 0
    )
    assert periods["support-v1"] == periods["support-v2"] == periods["after-launch"] == 50
    first = items[0].payload
    assert first["input"] and first["output"] and first["context"][0]["title"]  # the retrieved articles


def test_gold_answers_are_the_scenarios_ground_truth(demo):
    engine, tickets = demo["engine"], demo["tickets"]
    gold = [row for row in stored_items(engine) if row.gold is not None]
    assert 18 <= len(gold) <= 22
    quality = {"good": "yes", "partial": "partly", "bad": "no", "error": "no"}
    for row in gold:
        ticket = tickets[row.trace_id]
        assert row.gold["intent"] == ticket.intent and row.gold["resolved"] == quality[ticket.quality]
    assert {row.gold["intent"] for row in gold} >= {"order_status", "billing", "refund", "acme_vault"}


def test_gold_accuracy_orders_careful_average_and_sloppy(demo):
    report = gold_accuracy(demo["engine"], demo["pid"], QUEUE)
    people = {a["annotator"]: a for a in report["annotators"]}
    assert set(people) == {"ana-careful", "ben-average", "cy-sloppy", "judge-gpt-4o-mini"}
    assert people["judge-gpt-4o-mini"]["kind"] == "model" and people["ana-careful"]["kind"] == "human"
    assert all(a["n_gold"] >= 8 for a in people.values())
    accuracy = {name: a["accuracy"] for name, a in people.items()}
    assert accuracy["ana-careful"] > accuracy["ben-average"] > accuracy["cy-sloppy"]
    intent = {name: a["per_field"]["intent"] for name, a in people.items()}
    assert intent["ana-careful"] > intent["cy-sloppy"]
    assert abs(intent["judge-gpt-4o-mini"] - 0.85) <= 0.1  # the judge's calibration is a number too
    assert not people["ana-careful"]["flagged"] and people["cy-sloppy"]["flagged"]


def test_agreement_is_defined_and_moderate(demo):
    report = queue_agreement(demo["engine"], demo["pid"], QUEUE, n_resamples=100)
    fields = {f["field"]: f for f in report["fields"]}
    assert set(fields) == {"intent", "resolved"}  # free-text notes are not compared
    for entry in fields.values():
        assert entry["error"] is None and entry["n_items"] >= 150
        assert 0 < entry["krippendorff_alpha"] < 1
        low, high = entry["alpha_ci"]
        assert low <= entry["krippendorff_alpha"] <= high
    assert fields["resolved"]["level"] == "ordinal"
    assert fields["intent"]["per_class"]["acme_vault"] is not None


def test_annotators_pulled_items_with_overlap_and_gold_interleaved(demo):
    engine, pid = demo["engine"], demo["pid"]
    rows = current_labels(engine, pid, QUEUE)
    per_item: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        if row["gold"] is None:
            per_item[row["item_id"]].append(row["annotator"])
    ordinary = list(per_item.values())
    assert all(len(names) == len(set(names)) <= 3 for names in ordinary)  # nobody labels an item twice
    assert Counter(len(names) for names in ordinary)[3] >= 170
    progress = get_queue(engine, pid, QUEUE)["progress"]
    assert progress["open"] >= 5 and progress["labels_needed"] > 0  # work left for whoever signs in
    assert progress["leased_now"] == 0
    for name in ("ana-careful", "ben-average", "cy-sloppy", "judge-gpt-4o-mini"):
        mine = sorted(
            (row["created_ns"], row["gold"] is not None) for row in rows if row["annotator"] == name
        )
        share = sum(gold for _, gold in mine) / len(mine)
        assert 0.05 <= share <= 0.15, (name, share)
        half = len(mine) // 2
        assert any(gold for _, gold in mine[:half]) and any(gold for _, gold in mine[half:])
    assert any(row["value"]["note"] for row in rows if row["annotator"] == "ana-careful")
    counts = Counter(row["annotator"] for row in rows)
    assert counts["judge-gpt-4o-mini"] > counts["ana-careful"]  # the faster one covers for the slower one


def test_some_items_wait_for_review_and_others_were_adjudicated_to_the_truth(demo):
    engine, pid, tickets = demo["engine"], demo["pid"], demo["tickets"]
    waiting = items_for_review(engine, pid, QUEUE)
    assert waiting["total"] >= 3
    assert all(item["disagreeing_fields"] or item["escalations"] for item in waiting["items"])
    decided = current_labels(engine, pid, QUEUE, role="adjudication")
    assert len(decided) >= 5
    for row in decided:
        assert row["annotator"] == REVIEWER
        assert row["value"]["intent"] == tickets[row["trace_id"]].intent
    history = item_history(engine, pid, decided[0]["item_id"])
    [final] = [label for label in history["labels"] if label["role"] == "adjudication"]
    assert history["status"] == "done" and final["reason"]  # the rationale


def test_escalations_are_collected_per_field(demo):
    summary = escalation_summary(demo["engine"], demo["pid"], QUEUE)
    fields = {entry["field"]: entry for entry in summary["fields"]}
    assert set(fields) == {"intent", "resolved"}
    notes = {note["note"] for note in fields["intent"]["notes"]}
    assert any("refund for a late delivery" in note for note in notes)
    assert any("Acme Vault" in note for note in notes)  # what version 1 of the guidelines missed
    assert sum(entry["count"] for entry in fields.values()) >= 5
    assert sum(entry["open"] for entry in fields.values()) >= 1  # still on the reviewer's page


def test_history_shows_corrections_with_who_and_why(demo):
    engine, pid = demo["engine"], demo["pid"]
    with engine.connect() as connection:
        corrected = connection.execute(
            sa.select(labels.c.item_id).where(
                labels.c.supersedes_id.is_not(None), labels.c.role == "annotation"
            )
        ).scalars()
        items = sorted(set(corrected))
    assert len(items) == 2
    authors = set()
    for item_id in items:
        versions = [v for v in item_history(engine, pid, item_id)["labels"] if v["role"] == "annotation"]
        [new] = [v for v in versions if v["supersedes"] is not None]
        [old] = [v for v in versions if v["id"] == new["supersedes"]]
        assert new["current"] and not old["current"] and new["annotator"] == old["annotator"]
        assert new["reason"] and new["value"]["intent"] != old["value"]["intent"]
        authors.add((new["annotator"], new["author"]))
    assert ("cy-sloppy", "cy-sloppy") in authors  # fixed their own label
    assert ("ben-average", REVIEWER) in authors  # a reviewer fixed it


def test_a_snapshot_of_the_adjudicated_labels_verifies(demo):
    engine, pid = demo["engine"], demo["pid"]
    [snapshot] = list_snapshots(engine, pid, name=SNAPSHOT)
    assert snapshot["queue"] == QUEUE and snapshot["aggregation"] == "adjudicated"
    verified = verify_snapshot(engine, pid, snapshot["id"])
    assert verified["ok"] and verified["rows_checked"] == get_queue(engine, pid, QUEUE)["progress"]["done"]


def test_a_user_can_sign_in_as_a_demo_annotator(demo):
    engine, pid, path = demo["engine"], demo["pid"], demo["keys"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [line.split() for line in path.read_text().splitlines()]
    assert [(name, role) for name, role, _ in lines] == [
        ("ana-careful", "annotator"),
        ("ben-average", "annotator"),
        ("cy-sloppy", "annotator"),
        (REVIEWER, "reviewer"),
    ]
    principal = authenticate(engine, lines[0][2])
    annotator = annotator_for_key(engine, pid, principal.key_id)
    assert (annotator.name, principal.role.value) == ("ana-careful", "annotator")
    leased = lease_next_item(engine, pid, QUEUE, annotator.id)  # there is work left for her
    assert leased is not None
    mine = [row for row in current_labels(engine, pid, QUEUE) if row["annotator"] == "ana-careful"]
    assert leased["item"]["id"] not in {row["item_id"] for row in mine}
    release_item(engine, pid, leased["item"]["id"], annotator.id)


def labelled(engine: sa.Engine, project: str) -> list[tuple[Any, ...]]:
    """Every label in the project as (annotator, trace, role, value, reason), without store ids."""
    pid = project_id(engine, project)
    found = []
    for role in ("annotation", "adjudication"):
        for row in current_labels(engine, pid, QUEUE, role=role):
            found.append((row["annotator"], row["trace_id"], role, tuple(sorted(row["value"].items()))))
    return sorted(found)


def test_the_same_seed_gives_the_same_labels_and_loading_twice_adds_nothing(engine, tmp_path, capsys):
    small = {"seed": 3, "days": 2, "traces_per_day": 25, "end": END}
    load_demo(engine, project="p", progress=True, annotator_keys=tmp_path / "keys", monitors=False, **small)
    output = capsys.readouterr()
    assert "label demo queue" in output.out + output.err
    assert "pl_" not in output.out + output.err  # the keys are in the file, never printed
    first = labelled(engine, "p")
    assert len({label[1] for label in first}) > 30
    again = load_demo(engine, project="p", monitors=False, **small)
    assert again == {"traces": 0, "spans": 0, "signals": 0}
    assert labelled(engine, "p") == first
    assert [v["ref"] for v in schema_versions(engine, project_id(engine, "p"), SCHEMA)] == [
        f"{SCHEMA}@1",
        f"{SCHEMA}@2",
    ]
    other = create_store_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    load_demo(other, project="p", monitors=False, **small)
    assert labelled(other, "p") == first
    other.dispose()


def test_a_tiny_demo_loads_without_a_queue_it_cannot_fill(sqlite_engine):
    load_demo(sqlite_engine, project="p", days=1, traces_per_day=6, end=END, monitors=False)
    with pytest.raises(NotFound):
        get_queue(sqlite_engine, project_id(sqlite_engine, "p"), QUEUE)
