"""``prodloop dataset`` and ``prodloop checkpoint`` as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import datasets as hf
from prodloop.cli import app
from prodloop.cli import datasets as datasets_cli
from prodloop.errors import NotFound, ProdloopError
from prodloop.server.auth import ensure_project
from prodloop.store.schema import dataset_rows
from tests.datasets.support import Labelled, labelled_queue, trace_id

runner = CliRunner()


@pytest.fixture
def db(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def setup(engine: sa.Engine) -> Labelled:
    return labelled_queue(engine, project="default")


def cli(db: str, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--db", db])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, result.output
    return result


def fails(db: str, *args: str) -> ProdloopError:
    result = runner.invoke(app, [*args, "--db", db])
    assert isinstance(result.exception, ProdloopError), result.output
    return result.exception


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_snapshot_ls_show_verify_and_tamper(db: str, setup: Labelled, engine: sa.Engine) -> None:
    made = cli(db, "dataset", "snapshot", "--queue", "intents", "--name", "train", "--created-by", "ana")
    snapshot_id = made.stdout.split("created snapshot ")[1].split()[0]
    assert len(snapshot_id) == 64
    assert "6 rows, 12 labels, 2 annotators" in one_line(made.stdout)
    again = cli(db, "dataset", "snapshot", "--queue", "intents", "--name", "train")
    assert f"unchanged: the same content is already stored as snapshot {snapshot_id}" in one_line(
        again.stdout
    )

    listed = cli(db, "dataset", "ls").stdout
    assert snapshot_id[:12] in listed and "ana" in listed
    as_json = json.loads(cli(db, "dataset", "ls", "--format", "json").stdout)
    assert [entry["id"] for entry in as_json] == [snapshot_id]

    shown = one_line(cli(db, "dataset", "show", snapshot_id[:8]).stdout)
    for text in ("train", "intents (majority)", "support-intent@1", "alice (human, 6)", "question 0"):
        assert text in shown
    full = json.loads(cli(db, "dataset", "show", snapshot_id[:8], "--format", "json").stdout)
    assert full["id"] == snapshot_id and len(full["manifest"]["row_hashes"]) == 6

    assert f"ok: 6 rows and the manifest hash to {snapshot_id}" in one_line(
        cli(db, "dataset", "verify", snapshot_id[:8]).stdout
    )
    with engine.begin() as connection:
        connection.execute(
            dataset_rows.update()
            .where(dataset_rows.c.snapshot_id == snapshot_id, dataset_rows.c.position == 4)
            .values(content=dataset_rows.c.content.op("||")(" "))
        )
    broken = cli(db, "dataset", "verify", snapshot_id[:8], code=1)
    assert f"row 4 (item {setup.items[4]}, trace {trace_id(4)}) differs from what was hashed" in one_line(
        broken.stderr
    )


def test_export_in_every_format_with_a_progress_bar(
    db: str, setup: Labelled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = cli(db, "dataset", "snapshot", "--queue", "intents", "--name", "train", "--format", "json")
    snapshot = json.loads(made.stdout)
    monkeypatch.setattr(datasets_cli, "PROGRESS_ROWS", 1)  # a bar from the first row

    jsonl = cli(
        db,
        "dataset",
        "export",
        snapshot["id"][:8],
        "--format",
        "jsonl",
        "--output",
        str(tmp_path / "t.jsonl"),
    )
    assert "exported 6 rows" in jsonl.stdout
    assert "exporting train (jsonl)" in jsonl.stderr and "6/6" in jsonl.stderr
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert [json.loads(line)["trace_id"] for line in lines] == [trace_id(n) for n in range(6)]
    assert json.loads((tmp_path / "t.manifest.json").read_text())["id"] == snapshot["id"]

    cli(db, "dataset", "export", snapshot["id"], "--format", "parquet", "-o", str(tmp_path / "t.parquet"))
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 6
    cli(db, "dataset", "export", snapshot["id"], "--format", "hf", "-o", str(tmp_path / "hf"))
    loaded = hf.load_from_disk(str(tmp_path / "hf"))
    assert loaded["trace_id"] == [trace_id(n) for n in range(6)]


def test_diff_checkpoints_and_lineage(db: str, setup: Labelled) -> None:
    train = json.loads(
        cli(db, "dataset", "snapshot", "--queue", "intents", "--name", "train", "--format", "json").stdout
    )
    evaluation = json.loads(
        cli(
            db,
            "dataset",
            "snapshot",
            "--queue",
            "intents",
            "--name",
            "eval",
            "--aggregation",
            "adjudicated",
            "--format",
            "json",
        ).stdout
    )
    diff = one_line(cli(db, "dataset", "diff", train["id"][:8], evaluation["id"][:8]).stdout)
    assert "0 added, 1 removed, 1 relabelled, 4 unchanged" in diff
    assert f"- item {setup.items[5]} {trace_id(5)}" in diff
    assert f"~ item {setup.items[3]} {trace_id(3)} intent: billing → refund" in diff

    registered = cli(
        db,
        "checkpoint",
        "register",
        "--name",
        "ft-1",
        "--dataset",
        train["id"][:8],
        "--eval-dataset",
        evaluation["id"][:8],
        "--base-model",
        "qwen2.5-7b",
        "--metadata",
        '{"lr": 0.0002}',
    )
    assert f"train: {train['id']}" in registered.stdout and f"eval: {evaluation['id']}" in registered.stdout
    assert "ft-1" in cli(db, "checkpoint", "ls").stdout and "qwen2.5-7b" in cli(db, "checkpoint", "ls").stdout

    lineage = one_line(cli(db, "checkpoint", "lineage", "ft-1").stdout)
    assert "13 labels by 3 annotators over 6 traces" in lineage
    assert "alice (human): 6 labels" in lineage and "rita (human): 1 label " in lineage + " "
    as_json = json.loads(cli(db, "checkpoint", "lineage", "ft-1", "--format", "json").stdout)
    assert {label["id"] for label in as_json["labels"]} == set(train["manifest"]["label_ids"]) | set(
        evaluation["manifest"]["label_ids"]
    )

    trace = one_line(cli(db, "dataset", "lineage", "--trace", trace_id(3)).stdout)
    assert f"item {setup.items[3]} in queue 'intents' (done)" in trace
    assert "by rita (adjudication, current)" in trace
    assert f"in snapshot {train['id'][:12]} 'train' row 3" in trace
    assert "→ checkpoint 'ft-1' (eval on" in trace and "→ checkpoint 'ft-1' (train on" in trace


def test_errors_a_user_can_fix(db: str, setup: Labelled) -> None:
    assert isinstance(fails(db, "dataset", "show", "deadbeef"), NotFound)
    assert (
        "name needs 1 to 200 characters"
        in fails(db, "dataset", "snapshot", "--queue", "intents", "--name", " ").message
    )
    assert (
        "--metadata is not valid JSON"
        in fails(
            db, "checkpoint", "register", "--name", "x", "--dataset", "deadbeef", "--metadata", "{"
        ).message
    )
    assert "at least one dataset" in fails(db, "checkpoint", "register", "--name", "x").message


def test_an_unknown_snapshot_is_an_error_without_a_traceback(sqlite_engine: sa.Engine) -> None:
    ensure_project(sqlite_engine, "default")
    db = sqlite_engine.url.render_as_string()
    result = subprocess.run(
        [sys.executable, "-m", "prodloop", "dataset", "verify", "deadbeef", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "snapshot deadbeef does not exist in this project" in one_line(result.stderr)
    assert "Traceback" not in result.stderr


def test_text_that_looks_like_rich_markup_is_printed_as_it_is(
    db: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets_cli.console, "_width", 300)  # table cells unwrapped
    from prodloop.annotation import (
        ItemIn,
        QueueSettings,
        add_items,
        create_queue,
        register_annotator,
        save_schema,
    )
    from prodloop.capture import TraceIn, ingest_traces
    from tests.datasets.support import SCHEMA

    pid = ensure_project(engine, "default")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="intents", schema="support-intent@1", overlap=1))
    prompt = "[INST] hi [/INST] [citation needed]"
    ingest_traces(engine, pid, [TraceIn(trace_id=trace_id(0), feature="support", input=prompt)])
    add_items(engine, pid, "intents", [ItemIn(trace_id=trace_id(0))])
    setup = Labelled(
        engine, pid, "intents", {"[red]ana[/red]": register_annotator(engine, pid, "[red]ana[/red]")}
    )
    with engine.connect() as connection:
        from prodloop.store.schema import queue_items

        setup.items[0] = connection.execute(sa.select(queue_items.c.id)).scalar_one()
    setup.label(0, "[red]ana[/red]", {"intent": "billing"})

    name = "v1 [/draft] [citation needed]"
    made = cli(db, "dataset", "snapshot", "--queue", "intents", "--name", name, "--created-by", "[/who]")
    snapshot_id = made.stdout.split("created snapshot ")[1].split()[0]
    assert f"{name!r} from queue 'intents'" in one_line(made.stdout)

    listed = cli(db, "dataset", "ls").stdout
    assert "[/draft]" in listed and "[citation" in listed and "[/who]" in listed

    shown = one_line(cli(db, "dataset", "show", snapshot_id[:8]).stdout)
    assert f"{name} {snapshot_id}" in shown
    assert "queue: intents (majority)" in shown and "by [/who]" in shown
    assert "[red]ana[/red] (human, 1)" in shown
    assert prompt in shown

    lineage = one_line(cli(db, "dataset", "lineage", "--trace", trace_id(0)).stdout)
    assert "in queue 'intents'" in lineage and "by [red]ana[/red]" in lineage and repr(name) in lineage
    cli(db, "checkpoint", "register", "--name", "ft [/x]", "--dataset", snapshot_id[:8], "--adapter", "[i]")
    assert "ft [/x]" in cli(db, "checkpoint", "ls").stdout
    assert "[red]ana[/red]" in cli(db, "checkpoint", "lineage", "ft [/x]").stdout
