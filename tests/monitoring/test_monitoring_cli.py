"""``prodloop monitor`` and ``prodloop alert`` as a user runs them, on SQLite and PostgreSQL: a YAML
monitor created, run as of a day, listed; its alert acknowledged, routed to a queue and resolved; and
the mistakes a user makes, reported without a traceback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from prodloop.annotation import QueueSettings, create_queue, save_schema
from prodloop.capture import TraceIn, ingest_traces
from prodloop.cli import app
from prodloop.errors import ProdloopError
from prodloop.server.auth import ensure_project
from prodloop.store.schema import queue_items
from tests.monitoring.support import NOW, FakeCheck, finding

runner = CliRunner()

YAML = """\
name: decay
feature: support
schedule: 1d
reference: {window: 14d}
current: {window: 2d}
checks:
  - type: fake
    label: from-yaml
"""


@pytest.fixture
def db(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def cli(db: str, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--db", db], env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def fails(db: str, *args: str) -> ProdloopError:
    result = runner.invoke(app, [*args, "--db", db])
    assert isinstance(result.exception, ProdloopError), result.output
    return result.exception


def test_create_run_list_and_handle_an_alert(
    engine: sa.Engine, db: str, fake: FakeCheck, tmp_path: Path
) -> None:
    pid = ensure_project(engine, "default")
    ingest_traces(
        engine,
        pid,
        [
            TraceIn(
                trace_id=f"{n + 1:032x}",
                feature="support",
                input=f"q{n}",
                start_time=NOW - timedelta(hours=n + 1),
            )
            for n in range(12)
        ],
    )
    save_schema(
        engine, pid, {"name": "ok", "fields": [{"name": "ok", "type": "categorical", "options": ["y", "n"]}]}
    )
    create_queue(engine, pid, QueueSettings(name="triage", schema="ok@1"))
    file = tmp_path / "decay.yaml"
    file.write_text(YAML)
    created = cli(db, "monitor", "create", str(file))
    assert "created monitor decay for support; runs every 1d" in created.output
    shown = json.loads(cli(db, "monitor", "show", "decay").output)
    assert shown["definition"]["checks"] == [{"type": "fake", "label": "from-yaml"}]
    assert "exists" in fails(db, "monitor", "create", str(file)).message
    cli(db, "monitor", "create", str(file), "--replace")

    fake.plan = [finding(since=(NOW - timedelta(days=1)).isoformat(), until=NOW.isoformat())]
    ran = cli(db, "monitor", "run", "decay", "--as-of", NOW.isoformat())
    assert "! fake: 1 finding(s)" in ran.output and "alerts: 1 opened" in ran.output
    listed = cli(db, "monitor", "ls").output
    assert "decay" in listed and "fake" in listed
    runs = json.loads(cli(db, "monitor", "runs", "decay", "--format", "json").output)
    assert len(runs) == 1 and runs[0]["as_of"].startswith(NOW.date().isoformat())

    [alert] = json.loads(cli(db, "alert", "ls", "--status", "open", "--format", "json").output)
    assert alert["title"] == "handled rate fell"
    assert "handled rate fell" in cli(db, "alert", "ls").output
    acked = cli(db, "alert", "ack", str(alert["id"]), "--by", "ana", "--note", "looking")
    assert "acknowledged by ana" in acked.output
    routed = json.loads(
        cli(
            db, "alert", "route", str(alert["id"]), "--queue", "triage", "--items", "5", "--format", "json"
        ).output
    )
    assert routed["added"] == 5
    with engine.connect() as connection:
        assert connection.execute(sa.select(queue_items.c.alert_id)).scalars().all() == [alert["id"]] * 5
    cli(db, "alert", "resolve", str(alert["id"]), "--by", "ana")
    history = json.loads(cli(db, "alert", "show", str(alert["id"])).output)
    assert [e["kind"] for e in history["events"]] == ["opened", "acknowledged", "routed", "resolved"]
    assert "resolved already" in fails(db, "alert", "resolve", str(alert["id"])).message

    assert "paused" in cli(db, "monitor", "disable", "decay").output
    assert "(paused)" in cli(db, "monitor", "ls").output
    assert "resumed" in cli(db, "monitor", "enable", "decay").output


def test_mistakes_are_reported_without_a_traceback(db: str, fake: FakeCheck, tmp_path: Path) -> None:
    assert "cannot read monitor file" in fails(db, "monitor", "create", str(tmp_path / "nope.yaml")).message
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: m\nfeature: f\nchecks:\n  - type: nope\n")
    assert "no check 'nope'" in fails(db, "monitor", "create", str(bad)).message
    bad.write_text("name: [unclosed\n")
    assert "not valid YAML" in fails(db, "monitor", "create", str(bad)).message
    assert "no monitor 'missing'" in fails(db, "monitor", "run", "missing").message
    assert "no alert 999" in fails(db, "alert", "ack", "999").message
    assert "not one of" in fails(db, "alert", "ls", "--status", "closed").message
