"""``prodloop schema``, ``prodloop queue`` and ``prodloop annotator`` as a user runs them, against a
store on SQLite and PostgreSQL: what they print, what they leave in the store, and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from prodloop.annotation import (
    annotator_for_key,
    escalate_item,
    get_queue,
    lease_next_item,
    register_annotator,
    submit_label,
)
from prodloop.annotation.quality import aggregate_queue, gold_accuracy, queue_agreement
from prodloop.capture import SignalIn, TraceIn, ingest_traces, record_signals
from prodloop.cli import annotation as annotation_cli
from prodloop.cli import app, main
from prodloop.errors import Conflict, InvalidRequest, NotFound, ProdloopError, ValidationFailed
from prodloop.server import authenticate
from prodloop.server.auth import project_id
from prodloop.store.schema import api_keys, queue_items

runner = CliRunner()

INTENT = {
    "name": "support-intent",
    "description": "Why the customer wrote in",
    "guidelines": "# Intent\n\nPick the **main** reason the customer wrote in.\n",
    "fields": [
        {
            "name": "intent",
            "type": "categorical",
            "options": ["billing", "refund", "bug"],
            "help": "Main one",
        },
        {"name": "tone", "type": "ordinal", "options": ["calm", "annoyed", "angry"], "required": False},
        {"name": "note", "type": "text", "required": False},
    ],
}


@pytest.fixture
def db(engine: sa.Engine) -> str:
    """The URL of a migrated, empty store (SQLite and PostgreSQL)."""
    return engine.url.render_as_string(hide_password=False)


def cli(db: str, *args: str) -> Any:
    """Run ``prodloop ARGS --db DB``; fails the test when the command fails."""
    result = runner.invoke(app, [*args, "--db", db])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def fails(db: str, *args: str) -> ProdloopError:
    """Run a command that must fail with a prodloop error; returns it."""
    result = runner.invoke(app, [*args, "--db", db])
    assert isinstance(result.exception, ProdloopError), result.output
    return result.exception


def one_line(text: str) -> str:
    """Rich wraps long lines at the terminal's width; compare text with the wrapping undone."""
    return " ".join(text.split())


def write_schema(tmp_path: Path, document: dict[str, Any], name: str = "intent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        yaml.safe_dump(document, sort_keys=False) if name.endswith(".yaml") else json.dumps(document)
    )
    return path


def write_jsonl(tmp_path: Path, rows: list[Any], name: str = "items.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def make_queue(db: str, tmp_path: Path, name: str = "triage", *options: str) -> None:
    cli(db, "schema", "create", str(write_schema(tmp_path, INTENT)))
    cli(db, "queue", "create", name, "--schema", "support-intent@1", *options)


def item_keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(sa.select(queue_items.c.item_key)).scalars())


# --------------------------------------------------------------------------------------------------
# prodloop schema


def test_schema_create_saves_versions_and_applying_a_file_twice_is_harmless(
    db: str, engine: sa.Engine, tmp_path: Path
) -> None:
    path = write_schema(tmp_path, INTENT)
    assert cli(db, "schema", "create", str(path)).stdout.strip() == "created support-intent@1"
    assert (
        cli(db, "schema", "create", str(path)).stdout.strip()
        == "unchanged: support-intent@1 already has this content"
    )
    edited = {**INTENT, "guidelines": INTENT["guidelines"] + "\nAsk a lead when unsure.\n"}
    json_file = write_schema(tmp_path, edited, "intent.json")
    assert cli(db, "schema", "create", str(json_file)).stdout.strip() == "created support-intent@2"

    listed = cli(db, "schema", "ls").stdout
    assert "support-intent" in listed and "support-intent@2" in listed
    versions = cli(db, "schema", "versions", "support-intent").stdout
    assert "support-intent@1" in versions and "support-intent@2" in versions


def test_schema_show_prints_fields_and_guidelines_or_the_document(db: str, tmp_path: Path) -> None:
    cli(db, "schema", "create", str(write_schema(tmp_path, INTENT)))
    table = cli(db, "schema", "show", "support-intent@1").stdout
    for text in (
        "support-intent@1",
        "categorical",
        "billing, refund, bug",
        "calm < annoyed < angry",
        "Main one",
    ):
        assert text in table
    assert "Pick the main reason" in one_line(table)  # the guidelines, rendered from Markdown

    document = json.loads(cli(db, "schema", "show", "support-intent", "--format", "json").stdout)
    assert document["name"] == "support-intent" and document["version"] == 1
    assert [field["name"] for field in document["fields"]] == ["intent", "tone", "note"]
    assert document["guidelines"] == INTENT["guidelines"]

    # The YAML it prints is a schema file: saving it again changes nothing.
    shown = cli(db, "schema", "show", "support-intent@1", "--format", "yaml").stdout
    assert yaml.safe_load(shown) == document
    again = tmp_path / "shown.yaml"
    again.write_text(shown)
    assert "unchanged: support-intent@1" in cli(db, "schema", "create", str(again)).stdout


def test_schema_errors_name_the_problem(db: str, tmp_path: Path) -> None:
    broken = {**INTENT, "fields": [{"name": "intent", "type": "categorical"}]}
    error = fails(db, "schema", "create", str(write_schema(tmp_path, broken)))
    assert isinstance(error, ValidationFailed)
    assert "field 'intent' is categorical and needs a non-empty list of options" in error.message

    error = fails(db, "schema", "show", "no-such-schema")
    assert isinstance(error, NotFound)
    assert "schema create" in error.message


def test_unknown_schema_version_is_a_clear_error_with_exit_code_2(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"  # how main() reports errors does not depend on the store
    cli(db, "schema", "create", str(write_schema(tmp_path, INTENT)))
    command = ["queue", "create", "triage", "--schema", "support-intent@9", "--overlap", "2", "--db", db]
    result = subprocess.run(
        [sys.executable, "-m", "prodloop", *command], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (
        "error: label schema 'support-intent@9' does not exist; its latest version is support-intent@1"
        in one_line(result.stderr)
    )
    assert "Traceback" not in result.stderr
    assert json.loads(cli(db, "queue", "ls", "--format", "json").stdout) == {"queues": []}


def test_a_bad_item_file_exits_with_code_2_naming_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    make_queue(db, tmp_path)
    path = write_jsonl(tmp_path, [{"id": "a"}, {"id": "b", "priority": "high"}])
    monkeypatch.setattr(sys, "argv", ["prodloop", "queue", "add", "triage", "--file", str(path), "--db", db])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    printed = one_line(capsys.readouterr().err)
    assert printed.startswith("error: items.jsonl:2: priority: Input should be a valid integer")
    assert "nothing was added" in printed and "Traceback" not in printed
    assert json.loads(cli(db, "queue", "show", "triage", "--format", "json").stdout)["progress"]["items"] == 0


# --------------------------------------------------------------------------------------------------
# prodloop queue create / ls / show


def test_queue_create_ls_and_show(db: str, engine: sa.Engine, tmp_path: Path) -> None:
    cli(db, "schema", "create", str(write_schema(tmp_path, INTENT)))
    created = cli(
        db,
        "queue",
        "create",
        "triage",
        "--schema",
        "support-intent@1",
        "--overlap",
        "3",
        "--lease-seconds",
        "120",
        "--gold-share",
        "0.25",
        "--suggestions",
        "--disagreement",
        "majority",
        "--threshold",
        "0.7",
    ).stdout
    assert one_line(created) == (
        "created queue triage on support-intent@1: overlap 3, leases 120 s, gold share 25%, "
        "suggestions shown, disagreement rule majority below 70%"
    )
    queue = get_queue(engine, project_id(engine, "default"), "triage")
    assert (queue["overlap"], queue["lease_seconds"], queue["gold_share"], queue["show_suggestions"]) == (
        3,
        120,
        0.25,
        True,
    )
    assert (queue["disagreement_rule"], queue["disagreement_threshold"]) == ("majority", 0.7)

    cli(db, "queue", "create", "second-pass", "--schema", "support-intent")  # the latest version
    listed = json.loads(cli(db, "queue", "ls", "--format", "json").stdout)["queues"]
    assert [(q["name"], q["schema"], q["overlap"]) for q in listed] == [
        ("second-pass", "support-intent@1", 1),
        ("triage", "support-intent@1", 3),
    ]
    table = cli(db, "queue", "ls").stdout
    assert "triage" in table and "second-pass" in table and "0/0" in table
    shown = cli(db, "queue", "show", "triage").stdout
    assert "majority below 70%" in shown and "120 s" in shown
    assert (
        json.loads(cli(db, "queue", "show", str(queue["id"]), "--format", "json").stdout)["name"] == "triage"
    )


def test_queue_create_errors(db: str, tmp_path: Path) -> None:
    make_queue(db, tmp_path)
    error = fails(db, "queue", "create", "other", "--schema", "support-intent@1", "--overlap", "0")
    assert isinstance(error, ValidationFailed) and error.message.startswith("overlap:")
    error = fails(db, "queue", "create", "triage", "--schema", "support-intent@1")
    assert isinstance(error, Conflict) and "queue 'triage' already exists" in error.message
    assert isinstance(fails(db, "queue", "show", "nope"), NotFound)


# --------------------------------------------------------------------------------------------------
# prodloop queue add


def test_queue_add_from_a_jsonl_file_skips_what_is_already_there(
    db: str, engine: sa.Engine, tmp_path: Path
) -> None:
    make_queue(db, tmp_path)
    path = write_jsonl(
        tmp_path,
        [
            {"id": "a", "input": "my card was charged twice", "output": "sorry!"},
            "",
            {"id": "b", "input": "refund please", "gold": {"intent": "refund"}},
            {"input": "app crashes", "priority": 5, "suggestion": {"intent": "bug"}},
        ],
    )
    result = cli(db, "queue", "add", "triage", "--file", str(path))
    assert result.stdout.strip() == "added 3 items to queue triage; skipped 0 already in it"
    again = cli(db, "queue", "add", "triage", "--file", str(path))
    assert again.stdout.strip() == "added 0 items to queue triage; skipped 3 already in it"
    progress = get_queue(engine, project_id(engine, "default"), "triage")["progress"]
    assert (progress["items"], progress["gold_items"]) == (2, 1)


def test_a_bad_jsonl_row_is_named_and_nothing_is_added(db: str, engine: sa.Engine, tmp_path: Path) -> None:
    make_queue(db, tmp_path)
    path = write_jsonl(
        tmp_path,
        [{"id": "a", "input": "fine"}, "", {"id": "b", "inptu": "typo"}, "{not json", {"id": "c"}],
        "bad.jsonl",
    )
    error = fails(db, "queue", "add", "triage", "--file", str(path))
    assert error.message.startswith(
        "bad.jsonl:3: inptu: Extra inputs are not permitted (and 1 more problems)"
    )
    assert "nothing was added" in error.message
    assert [(p["line"], p["field"]) for p in error.detail] == [(3, "inptu"), (4, "")]
    assert item_keys(engine) == []

    wrong_gold = write_jsonl(
        tmp_path, [{"id": "a"}, {"id": "b", "gold": {"intent": "shipping"}}], "gold.jsonl"
    )
    error = fails(db, "queue", "add", "triage", "--file", str(wrong_gold))
    assert error.message.startswith("gold.jsonl:2: gold: label 'shipping' is not an option of field 'intent'")
    assert "allows: billing, refund, bug" in error.message
    assert item_keys(engine) == []


def test_a_large_file_is_added_in_chunks_and_errors_name_the_line_of_the_file(
    db: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(annotation_cli, "ADD_CHUNK", 2)
    make_queue(db, tmp_path)
    rows: list[Any] = [{"id": f"item-{i}", "input": f"question {i}"} for i in range(5)]
    rows.insert(1, "")
    rows[5] = {"id": "item-4", "gold": {"intent": "shipping"}}  # line 6, in the third chunk
    error = fails(db, "queue", "add", "triage", "--file", str(write_jsonl(tmp_path, rows)))
    assert error.message.startswith("items.jsonl:6: gold: label 'shipping' is not an option")
    assert "the 4 items before it were added" in error.message
    assert item_keys(engine) == [f"item-{i}" for i in range(4)]

    rows[5] = {"id": "item-4", "gold": {"intent": "bug"}}
    fixed = cli(db, "queue", "add", "triage", "--file", str(write_jsonl(tmp_path, rows)))
    assert fixed.stdout.strip() == "added 1 items to queue triage; skipped 4 already in it"


def test_queue_add_from_traces_with_filters_and_samples(db: str, engine: sa.Engine, tmp_path: Path) -> None:
    make_queue(db, tmp_path)
    pid = project_id(engine, "default")
    start = datetime(2025, 3, 1, tzinfo=UTC)
    batch = [
        TraceIn(
            feature="billing" if i % 2 else "search",
            release="v1" if i < 6 else "v2",
            input=f"question {i}",
            output=f"answer {i}",
            start_time=start + timedelta(hours=i),
            duration_ms=10,
        )
        for i in range(10)
    ]
    ids = ingest_traces(engine, pid, batch)["trace_ids"]
    record_signals(
        engine, pid, [SignalIn(trace_id=ids[i], kind="outcome", name="escalated", value=True) for i in (2, 7)]
    )

    out = cli(
        db, "queue", "add", "triage", "--from-traces", "--signal", "escalated", "--priority", "3"
    ).stdout
    assert one_line(out) == "2 traces matched; added 2 items to queue triage; skipped 0 already in it"
    assert item_keys(engine) == sorted([ids[2], ids[7]])

    out = cli(
        db, "queue", "add", "triage", "--from-traces", "--feature", "billing", "--release", "v1",
        "--since", "2025-03-01T01:00:00", "--until", "2025-03-01T05:30:00",
    ).stdout  # fmt: skip
    assert one_line(out) == "3 traces matched; added 3 items to queue triage; skipped 0 already in it"
    assert set(item_keys(engine)) == {ids[1], ids[2], ids[3], ids[5], ids[7]}

    sampled = cli(
        db, "queue", "add", "triage", "--from-traces", "--sample", "stratified", "--stratify-by", "release",
        "-n", "4", "--seed", "1",
    ).stdout  # fmt: skip
    assert one_line(sampled).startswith("10 traces matched; added ")
    with engine.connect() as connection:
        n_items = connection.execute(sa.select(sa.func.count()).select_from(queue_items)).scalar_one()
        prioritised = connection.execute(
            sa.select(queue_items.c.trace_id).where(queue_items.c.priority == 3)
        ).scalars()
        assert set(prioritised) == {ids[2], ids[7]}
    added = int(one_line(sampled).split("added ")[1].split()[0])
    assert n_items == 5 + added and 0 < added <= 4

    none = runner.invoke(app, ["queue", "add", "triage", "--from-traces", "--feature", "nope", "--db", db])
    assert none.exit_code == 0 and "no trace matched the filters" in one_line(none.stderr)


def test_queue_add_needs_one_source(db: str, tmp_path: Path) -> None:
    make_queue(db, tmp_path)
    path = write_jsonl(tmp_path, [{"id": "a"}])
    assert isinstance(fails(db, "queue", "add", "triage"), InvalidRequest)
    assert isinstance(
        fails(db, "queue", "add", "triage", "--file", str(path), "--from-traces"), InvalidRequest
    )
    error = fails(db, "queue", "add", "triage", "--file", str(path), "--feature", "billing")
    assert "--feature go with --from-traces" in error.message
    error = fails(db, "queue", "add", "triage", "--file", str(tmp_path / "missing.jsonl"))
    assert "does not exist" in error.message
    assert isinstance(fails(db, "queue", "add", "nope", "--file", str(path)), NotFound)


# --------------------------------------------------------------------------------------------------
# prodloop annotator


def test_annotator_create_prints_a_working_key_tied_to_the_annotator(db: str, engine: sa.Engine) -> None:
    result = cli(db, "annotator", "create", "judge-gpt", "--kind", "model", "--project", "shop")
    key = result.stdout.strip().splitlines()[-1]
    assert "not shown again" in one_line(result.stderr)
    principal = authenticate(engine, key)
    assert (principal.project, principal.role.value) == ("shop", "annotator")
    annotator = annotator_for_key(engine, principal.project_id, principal.key_id)
    assert (annotator.name, annotator.kind) == ("judge-gpt", "model")

    cli(db, "annotator", "create", "alice", "--project", "shop")
    listed = json.loads(cli(db, "annotator", "ls", "--project", "shop", "--format", "json").stdout)
    assert [(a["name"], a["kind"]) for a in listed["annotators"]] == [
        ("alice", "human"),
        ("judge-gpt", "model"),
    ]
    assert "judge-gpt" in cli(db, "annotator", "ls", "--project", "shop").stdout


def test_annotator_create_with_a_taken_name_leaves_no_key_behind(db: str, engine: sa.Engine) -> None:
    cli(db, "annotator", "create", "alice")
    error = fails(db, "annotator", "create", "alice", "--kind", "model")
    assert isinstance(error, Conflict) and "annotator 'alice' already exists" in error.message
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(api_keys)).scalar_one() == 1


# --------------------------------------------------------------------------------------------------
# Label quality: agreement, gold, review, escalations, aggregation

TRUTH = ["billing", "refund", "bug", "billing", "refund", "bug"]
GOLD = {"gold-1": "refund", "gold-2": "bug"}


def answer(annotator: str, item: dict[str, Any]) -> dict[str, Any]:
    """alice is always right, bob misreads the second item, the model judge gets every gold item and
    the fourth item wrong."""
    truth = GOLD.get(item["metadata"].get("key"), None) or TRUTH[int(item["input"].split()[-1])]
    if annotator == "bob" and item["input"] == "question 1":
        return {"intent": "billing", "tone": "calm"}
    if annotator == "judge" and (item["metadata"].get("key") in GOLD or item["input"] == "question 3"):
        return {"intent": "bug" if truth != "bug" else "billing", "tone": "angry"}
    return {"intent": truth, "tone": "calm" if truth != "bug" else "annoyed"}


@pytest.fixture
def labelled(db: str, engine: sa.Engine, tmp_path: Path) -> int:
    """Queue ``triage`` (overlap 3, gold share 0.5) with six items and two gold items, labelled by
    alice, bob and a model judge; one escalation. Returns the project id."""
    make_queue(db, tmp_path, "triage", "--overlap", "3", "--gold-share", "0.5")
    rows = [{"id": f"item-{i}", "input": f"question {i}"} for i in range(len(TRUTH))]
    rows += [
        {"id": key, "input": f"gold {key}", "metadata": {"key": key}, "gold": {"intent": value}}
        for key, value in GOLD.items()
    ]
    cli(db, "queue", "add", "triage", "--file", str(write_jsonl(tmp_path, rows)))
    pid = project_id(engine, "default")
    for name, kind in (("alice", "human"), ("bob", "human"), ("judge", "model")):
        annotator = register_annotator(engine, pid, name, kind).id
        while (leased := lease_next_item(engine, pid, "triage", annotator)) is not None:
            item = leased["item"]
            if name == "alice" and item["input"] == "question 5":
                escalate_item(engine, pid, item["id"], annotator, "is a refund for a bug billing?", "intent")
                continue
            submit_label(engine, pid, item["id"], annotator, answer(name, item))
    return pid


def test_queue_agreement_json_is_the_stable_contract(db: str, engine: sa.Engine, labelled: int) -> None:
    report = json.loads(cli(db, "queue", "agreement", "triage", "--format", "json").stdout)
    keys = {"field", "n_items", "krippendorff_alpha", "alpha_ci", "level", "fleiss_kappa"}
    keys |= {"percent_agreement", "per_class"}
    assert [entry["field"] for entry in report["fields"]] == ["intent", "tone"]
    for entry in report["fields"]:
        assert keys <= entry.keys()
    intent = report["fields"][0]
    assert intent["level"] == "nominal" and report["fields"][1]["level"] == "ordinal"
    assert intent["n_items"] == 6
    assert set(intent["per_class"]) == {"billing", "refund", "bug"}
    assert len(intent["alpha_ci"]) == 2 and intent["alpha_ci"][0] <= intent["krippendorff_alpha"]
    assert 0 < intent["krippendorff_alpha"] < 1
    assert report["fields"] == queue_agreement(engine, labelled, "triage")["fields"]

    table = one_line(cli(db, "queue", "agreement", "triage").stdout)
    assert f"{intent['krippendorff_alpha']:.3f}" in table
    assert f"[{intent['alpha_ci'][0]:.3f}, {intent['alpha_ci'][1]:.3f}]" in table
    assert f"{intent['percent_agreement']:.0%}" in table
    assert f"{intent['per_class']['refund']:.3f}" in table


def test_queue_agreement_over_a_time_range_and_a_schema_version(db: str, labelled: int) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    empty = json.loads(cli(db, "queue", "agreement", "triage", "--since", later, "--format", "json").stdout)
    assert empty["n_labels"] == 0
    assert all(entry["krippendorff_alpha"] is None and entry["error"] for entry in empty["fields"])
    printed = runner.invoke(app, ["queue", "agreement", "triage", "--since", later, "--db", db])
    assert printed.exit_code == 0 and "no agreement for intent" in one_line(printed.stderr)

    by_schema = json.loads(
        cli(db, "queue", "agreement", "triage", "--schema", "support-intent@1", "--format", "json").stdout
    )
    assert by_schema["fields"][0]["n_items"] == 6
    versions = json.loads(cli(db, "queue", "agreement", "triage", "--by-version", "--format", "json").stdout)
    assert [entry["schema"] for entry in versions["versions"]] == ["support-intent@1"]

    error = fails(db, "queue", "agreement", "triage", "--schema", "support-intent@4")
    assert isinstance(error, NotFound) and "its latest version is support-intent@1" in error.message


def test_queue_gold_flags_the_annotator_below_threshold(db: str, engine: sa.Engine, labelled: int) -> None:
    report = json.loads(cli(db, "queue", "gold", "triage", "--format", "json").stdout)
    assert report == gold_accuracy(engine, labelled, "triage")
    by_name = {entry["annotator"]: entry for entry in report["annotators"]}
    assert (by_name["judge"]["n_gold"], by_name["judge"]["n_correct"], by_name["judge"]["flagged"]) == (
        2,
        0,
        True,
    )
    assert not by_name["alice"]["flagged"]

    table = cli(db, "queue", "gold", "triage").stdout
    flagged = [line for line in table.splitlines() if "FLAGGED" in line]
    assert len(flagged) == 1 and "judge" in flagged[0]
    assert one_line(table).count(" ok ") == 2
    lenient = cli(db, "queue", "gold", "triage", "--threshold", "0.0001").stdout
    assert "FLAGGED" in lenient  # 0 of 2 right is still below any positive threshold
    assert isinstance(fails(db, "queue", "gold", "triage", "--threshold", "2"), ValidationFailed)


def test_queue_review_shows_labels_side_by_side(db: str, labelled: int) -> None:
    waiting = json.loads(cli(db, "queue", "review", "triage", "--format", "json").stdout)
    # Item 1 (bob disagrees) and item 3 (the judge disagrees) wait; item 5 was escalated.
    inputs = sorted(item["input"] for item in waiting["items"])
    assert inputs == ["question 1", "question 3", "question 5"]
    table = cli(db, "queue", "review", "triage").stdout
    assert one_line(table).startswith("3 items of queue triage wait for adjudication")
    lines = table.splitlines()
    bob = next(line for line in lines if "bob" in line)
    assert "billing" in bob
    assert "intent ≠" in table  # the disagreeing field is marked
    assert "escalated by alice (intent): is a refund for a bug billing?" in one_line(table)


def test_queue_escalations_collects_notes_per_field(db: str, labelled: int) -> None:
    summary = json.loads(cli(db, "queue", "escalations", "triage", "--format", "json").stdout)
    assert [(entry["field"], entry["count"], entry["open"]) for entry in summary["fields"]] == [
        ("intent", 1, 1)
    ]
    table = one_line(cli(db, "queue", "escalations", "triage").stdout)
    assert "intent: 1 escalations, 1 open" in table and "is a refund for a bug billing?" in table


@pytest.mark.parametrize("method", ["majority", "dawid-skene"])
def test_queue_aggregate(db: str, engine: sa.Engine, labelled: int, method: str) -> None:
    result = json.loads(
        cli(db, "queue", "aggregate", "triage", "--method", method, "--format", "json").stdout
    )
    assert result == json.loads(json.dumps(aggregate_queue(engine, labelled, "triage", method=method)))
    intent = next(entry for entry in result["fields"] if entry["field"] == "intent")
    labels = {row["item_id"]: row["label"] for row in intent["items"]}
    assert len(labels) == 6
    table = cli(db, "queue", "aggregate", "triage", "--method", method).stdout
    assert f"intent by {method}" in table
    assert "alice" in table and "judge" in table


def test_quality_commands_on_an_unknown_queue_say_so(db: str, labelled: int) -> None:
    for command in ("agreement", "gold", "review", "escalations", "aggregate"):
        error = fails(db, "queue", command, "nope")
        assert isinstance(error, NotFound) and "queue 'nope' does not exist" in error.message


def test_text_from_users_is_printed_as_it_is(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    """Inputs, names and notes that look like Rich markup are printed literally, not interpreted."""
    db = sqlite_engine.url.render_as_string()
    make_queue(db, tmp_path, "triage", "--overlap", "2")
    cli(
        db,
        "queue",
        "add",
        "triage",
        "--file",
        str(write_jsonl(tmp_path, [{"input": "refund [/b] [bold]now"}])),
    )
    pid = project_id(sqlite_engine, "default")
    for name, intent in (("[red]eve", "refund"), ("bob", "billing")):
        annotator = register_annotator(sqlite_engine, pid, name).id
        leased = lease_next_item(sqlite_engine, pid, "triage", annotator)
        assert leased is not None
        submit_label(
            sqlite_engine, pid, leased["item"]["id"], annotator, {"intent": intent, "note": "[/] odd"}
        )
    review = one_line(cli(db, "queue", "review", "triage").stdout)
    assert "refund [/b] [bold]now" in review and "[red]eve" in review and "[/] odd" in review
    assert "[red]eve" in cli(db, "queue", "aggregate", "triage").stdout


def test_queue_set_schema_moves_to_a_new_version_of_the_same_schema(db: str, tmp_path: Path) -> None:
    make_queue(db, tmp_path)
    clearer = {**INTENT, "guidelines": INTENT["guidelines"] + "\nA refund request is never billing.\n"}
    cli(db, "schema", "create", str(write_schema(tmp_path, clearer, "v2.yaml")))
    moved = cli(db, "queue", "set-schema", "triage", "--schema", "support-intent@2")
    assert "queue triage now labels with support-intent@2" in moved.output
    shown = json.loads(cli(db, "queue", "show", "triage", "--format", "json").output)
    assert shown["schema"] == "support-intent@2"
    cli(db, "schema", "create", str(write_schema(tmp_path, {**INTENT, "name": "tone-only"}, "other.yaml")))
    error = fails(db, "queue", "set-schema", "triage", "--schema", "tone-only@1")
    assert "another version of 'support-intent'" in error.message
