"""The CLI as a user runs it: set up a store, make keys, load files, list traces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from prodloop.cli import app
from prodloop.server import authenticate
from prodloop.store import create_store_engine, is_up_to_date
from prodloop.store.schema import signals, traces

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_db_upgrade_migrates(db: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--db", db])
    assert result.exit_code == 0, result.output
    assert is_up_to_date(create_store_engine(db))


def test_keys_create_prints_a_working_key_once(db: str) -> None:
    result = runner.invoke(app, ["keys", "create", "--project", "shop", "--role", "ingest", "--db", db])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    principal = authenticate(create_store_engine(db), key)
    assert (principal.project, principal.role.value) == ("shop", "ingest")


def test_bad_role_is_a_clear_error_without_traceback(db: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prodloop", "keys", "create", "--role", "owner", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "role 'owner' is not one of admin, ingest, annotator, reviewer, viewer" in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_jsonl_loads_traces_signals_and_otlp(db: str, tmp_path: Path) -> None:
    lines = [
        {"trace_id": "a" * 32, "feature": "support", "join_key": "T-1", "input": "hi", "output": "hello"},
        {"trace_id": "b" * 32, "feature": "support", "release": "v2", "input": "q", "output": "a"},
        {"join_key": "T-1", "kind": "outcome", "name": "resolved", "value": True, "id": "s1"},
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "search"}}]},
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "c" * 32,
                                    "spanId": "d" * 16,
                                    "name": "query",
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000001000000000",
                                    "attributes": [{"key": "input.value", "value": {"stringValue": "shoes"}}],
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = runner.invoke(app, ["ingest", str(path), "--db", db])
    assert result.exit_code == 0, result.output
    assert "2 traces" in result.output and "1 signals" in result.output
    engine = create_store_engine(db)
    with engine.connect() as connection:
        stored = dict(connection.execute(sa.select(traces.c.trace_id, traces.c.feature)).all())
        joined = connection.execute(sa.select(signals.c.trace_id)).scalar_one()
    assert stored == {"a" * 32: "support", "b" * 32: "support", "c" * 32: "search"}
    assert joined == "a" * 32

    listed = runner.invoke(app, ["traces", "ls", "--db", db, "--format", "json", "--release", "v2"])
    assert [t["trace_id"] for t in json.loads(listed.stdout)["traces"]] == ["b" * 32]
    table = runner.invoke(app, ["traces", "ls", "--db", db, "--feature", "search"])
    assert "cccccccc" in table.stdout and "aaaaaaaa" not in table.stdout


def test_ingest_names_the_bad_line(db: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"feature": "f", "input": "ok"}\n{"trace_id": "nope"}\n')
    result = runner.invoke(app, ["ingest", str(path), "--db", db])
    assert result.exit_code != 0
    assert "bad.jsonl:2" in str(result.exception) or "bad.jsonl:2" in result.output


def test_settings_markdown_lists_every_variable() -> None:
    result = runner.invoke(app, ["settings", "--markdown"])
    assert "PRODLOOP_DATABASE_URL" in result.stdout and "PRODLOOP_MAX_REQUEST_BYTES" in result.stdout


def test_cli_reference_page_is_current() -> None:
    from prodloop.cli.reference import cli_markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert page.read_text() == cli_markdown(app), "run `prodloop reference > docs/cli.md`"
