"""``prodloop`` commands. Each parses its input, calls one function of a domain package, and prints
the result; errors a user can fix are printed without a traceback."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prodloop.cli.annotation import annotator_app, queue_app, schema_app
from prodloop.cli.common import DbOption, ProjectOption, console, err, open_store, settings_for
from prodloop.cli.datasets import checkpoint_app, dataset_app
from prodloop.cli.drift import drift
from prodloop.cli.monitoring import alert_app, monitor_app
from prodloop.cli.worker import jobs_app, worker_command
from prodloop.errors import ProdloopError
from prodloop.settings import Settings, settings_markdown

app = typer.Typer(
    name="prodloop",
    help="Keep production AI features from rotting silently: capture, monitor, annotate, version, gate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys and projects.", no_args_is_help=True)
traces_app = typer.Typer(help="Production traces.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(traces_app, name="traces")
app.add_typer(schema_app, name="schema")
app.add_typer(queue_app, name="queue")
app.add_typer(annotator_app, name="annotator")
app.add_typer(dataset_app, name="dataset")
app.add_typer(checkpoint_app, name="checkpoint")
app.command("drift")(drift)
app.add_typer(monitor_app, name="monitor")
app.add_typer(alert_app, name="alert")
app.add_typer(jobs_app, name="jobs")
app.command("worker")(worker_command)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Apply the store's migrations (serve also does this when it starts)."""
    from prodloop.store import create_store_engine, current_revision, upgrade

    engine = create_store_engine(settings=settings_for(db))
    upgrade(engine, revision)
    console.print(
        f"store at revision [bold]{current_revision(engine)}[/bold] ({engine.url.render_as_string()})"
    )


@keys_app.command("create")
def keys_create(
    project: ProjectOption = "default",
    role: Annotated[str, typer.Option(help="admin, ingest, annotator, reviewer or viewer.")] = "viewer",
    name: Annotated[str | None, typer.Option(help="A label to tell keys apart.")] = None,
    db: DbOption = None,
) -> None:
    """Create an API key and print it. It is shown once; only its hash is stored."""
    from prodloop.server.auth import create_api_key

    key = create_api_key(open_store(db), project, role, name=name)
    err.print(f"created a key with role {role!r} for project {project!r}; it is not shown again:")
    print(key)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    db: DbOption = None,
    demo: Annotated[bool, typer.Option(help="Load the demo data when the store has no traces.")] = False,
    workers: Annotated[
        int | None, typer.Option(help="Server processes sharing the port (default: PRODLOOP_WORKERS).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the prodloop server (API, OTLP endpoint, web UI). Migrates the store first."""
    import uvicorn

    from prodloop.server import create_app
    from prodloop.server.auth import bootstrap_admin
    from prodloop.store import create_store_engine, upgrade

    settings = settings_for(db, host=host, port=port, workers=workers)
    engine = create_store_engine(settings=settings)
    upgrade(engine)
    key = bootstrap_admin(engine, settings.home)
    if demo:
        from prodloop.demo import has_traces, load_demo

        if not has_traces(engine):
            err.print("loading the demo data (a customer-support assistant, 30 days)…")
            load_demo(engine, project="default", progress=True, annotator_keys=settings.home / "demo-keys")
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"prodloop {_version()} serving at [bold]{url}[/bold]")
    console.print(f"  web UI:   {url}/ui")
    console.print(f"  API docs: {url}/docs")
    console.print(f"  store:    {engine.url.render_as_string()}")
    admin_file = settings.home / "admin-key"
    demo_keys = settings.home / "demo-keys"
    if demo_keys.exists():
        console.print(f"  demo annotator and reviewer keys: in {demo_keys} (sign in as one to label)")
    if key:
        console.print(f"  admin key for project 'default' (also in {admin_file}):\n[bold]{key}[/bold]")
    elif admin_file.exists():
        console.print(f"  admin key: in {admin_file}")
    if settings.workers > 1:
        # Each worker process builds its app from the same settings, passed on through the environment.
        os.environ.update(settings.as_environment())
        engine.dispose()
        uvicorn.run(
            "prodloop.server.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=log_level,
        )
        return
    uvicorn.run(create_app(engine, settings), host=settings.host, port=settings.port, log_level=log_level)


def _version() -> str:
    from prodloop import __version__

    return __version__


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="JSON Lines: native traces, signals, or OTLP/JSON requests.")],
    project: ProjectOption = "default",
    db: DbOption = None,
    batch_size: Annotated[int, typer.Option(help="Lines per transaction.")] = 1000,
) -> None:
    """Bulk-load a JSONL file into the store, with a progress bar."""
    from prodloop.capture.bulk import ingest_jsonl
    from prodloop.server.auth import ensure_project

    engine = open_store(db)
    pid = ensure_project(engine, project)
    result = ingest_jsonl(engine, pid, file, batch_size=batch_size, progress=True)
    console.print(
        f"{result['traces']} traces ({result['spans']} new spans) and {result['signals']} signals "
        f"loaded into project {project!r}"
    )


@traces_app.command("ls")
def traces_ls(
    project: ProjectOption = "default",
    feature: Annotated[str | None, typer.Option(help="Only this feature.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Started at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Started before (ISO 8601).")] = None,
    release: Annotated[str | None, typer.Option(help="Only this release.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    has_signal: Annotated[
        bool | None, typer.Option("--has-signal/--no-signal", help="With / without signals.")
    ] = None,
    signal: Annotated[str | None, typer.Option(help="Only traces with a signal of this name.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    db: DbOption = None,
) -> None:
    """List traces, newest first."""
    from prodloop.capture import TraceFilter, list_traces
    from prodloop.server.auth import project_id

    engine = open_store(db)
    filters = TraceFilter(
        feature=feature,
        since=since,
        until=until,
        release=release,
        model=model,
        has_signal=has_signal,
        signal=signal,
    )
    page = list_traces(engine, project_id(engine, project), filters, limit=limit)
    if output == "json":
        print(json.dumps(page, indent=2))
        return
    table = Table("trace id", "start", "feature", "release", "model", "ms", "signals", "input")
    for t in page["traces"]:
        table.add_row(
            t["trace_id"],
            (t["start_time"] or "")[:19],
            t["feature"] or "",
            t["release"] or "",
            t["model"] or "",
            f"{t['duration_ms']:.0f}",
            " ".join(f"{k}:{v}" for k, v in t["signals"].items()),
            (t["input"] or "")[:50].replace("\n", " "),
        )
    console.print(table)
    if page["next_cursor"]:
        err.print(f"more traces follow; narrow the filters or raise --limit (cursor {page['next_cursor']})")


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 7,
    project: ProjectOption = "default",
    days: Annotated[int, typer.Option(help="Days of traffic.")] = 30,
    traces_per_day: Annotated[int, typer.Option(help="Average traces per day.")] = 700,
    end: Annotated[
        datetime | None, typer.Option(help="End of the last day (UTC, ISO 8601); default: today's midnight.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Load the demo scenario: a customer-support assistant that decays after a product launch."""
    from prodloop.demo import load_demo

    engine = open_store(db)
    keys_file = settings_for(db).home / "demo-keys"
    summary = load_demo(
        engine,
        project=project,
        seed=seed,
        days=days,
        traces_per_day=traces_per_day,
        end=end,
        progress=True,
        annotator_keys=keys_file,
    )
    console.print(
        f"loaded {summary['traces']} traces, {summary['spans']} spans and {summary['signals']} signals "
        f"into project {project!r}"
    )
    if keys_file.exists():
        console.print(f"keys of the demo's annotators and reviewer: in {keys_file}")


@app.command("settings")
def settings_cmd(
    markdown: Annotated[bool, typer.Option(help="Print the settings reference page.")] = False,
) -> None:
    """Show the settings in force (or, with --markdown, their reference page)."""
    if markdown:
        print(settings_markdown(), end="")
        return
    for name, value in Settings().model_dump().items():
        console.print(f"PRODLOOP_{name.upper()} = {value}")


@app.command("reference")
def reference_cmd() -> None:
    """Print the CLI reference page (docs/cli.md)."""
    from prodloop.cli.reference import cli_markdown

    print(cli_markdown(app), end="")


def main() -> None:
    try:
        app()
    except ProdloopError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        sys.exit(2 if exc.status < 500 else 1)
