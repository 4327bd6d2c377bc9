"""``prodloop dataset …`` and ``prodloop checkpoint …``: snapshots, exports, diffs, lineage. Each command
parses its input, calls one function of ``prodloop.datasets`` and prints the result; ``--format json``
prints that result as it is. Snapshot ids may be given as a unique prefix of at least 8 hex digits."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from prodloop.cli.common import (
    DbOption,
    ProjectOption,
    console,
    err,
    open_store_for_command,
    print_json,
    project_of,
)

dataset_app = typer.Typer(help="Immutable dataset snapshots and their exports.", no_args_is_help=True)
checkpoint_app = typer.Typer(help="Model checkpoints and what they were trained on.", no_args_is_help=True)

TableOrJson = Annotated[Literal["table", "json"], typer.Option("--format", help="table or json.")]
SnapshotArgument = Annotated[
    str, typer.Argument(help="Snapshot id (or a unique prefix of 8+ hex digits).", show_default=False)
]
#: Exports of at least this many rows show a progress bar.
PROGRESS_ROWS = 1000


def _shown(value: Any, width: int = 50) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def _label(value: dict[str, Any]) -> str:
    """A label's fields and answers, shortened and escaped for Rich markup."""
    return ", ".join(f"{escape(str(field))}={_shown(answer, 30)}" for field, answer in value.items())


def _quoted(value: Any) -> str:
    """``value``'s repr, escaped for Rich markup (user text such as ``[/draft]`` is printed as it is)."""
    return escape(repr(value))


def _text(value: Any, empty: str = "") -> str:
    """User text for a table cell or a printed line, escaped for Rich markup."""
    return empty if value is None or value == "" else escape(str(value))


# --------------------------------------------------------------------------------------------------
# prodloop dataset


@dataset_app.command("snapshot")
def dataset_snapshot(
    ctx: typer.Context,
    queue: Annotated[str, typer.Option("--queue", help="Queue name (or id).", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="The dataset's name.", show_default=False)],
    aggregation: Annotated[
        Literal["majority", "dawid-skene", "adjudicated"],
        typer.Option(help="How the final label is chosen: majority, dawid-skene or adjudicated."),
    ] = "majority",
    created_by: Annotated[
        str | None, typer.Option(help="Who makes the snapshot (default: your user name).")
    ] = None,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """Snapshot a queue's final labels as an immutable dataset whose id is the hash of its content."""
    from prodloop.datasets import snapshot_queue

    engine = open_store_for_command(ctx, db)
    who = created_by or getpass.getuser()
    snapshot = snapshot_queue(engine, project_of(engine, project), queue, name, aggregation, who)
    if output == "json":
        print_json(snapshot)
        return
    counts = snapshot["counts"]
    verb = "created" if snapshot["created"] else "unchanged: the same content is already stored as"
    console.print(f"{verb} snapshot [bold]{snapshot['id']}[/bold]")
    console.print(
        f"  {_quoted(snapshot['name'])} from queue {_quoted(snapshot['queue'])} "
        f"({_text(snapshot['aggregation'])}): "
        f"{counts['rows']} rows, {counts['labels']} labels, {counts['annotators']} annotators"
    )


@dataset_app.command("ls")
def dataset_ls(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Only snapshots with this name.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only snapshots of this queue.")] = None,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """List the dataset snapshots, newest first."""
    from prodloop.datasets import list_snapshots

    engine = open_store_for_command(ctx, db)
    found = list_snapshots(engine, project_of(engine, project), name, queue)
    if output == "json":
        print_json(found)
        return
    if not found:
        err.print("no snapshots yet; make one with `prodloop dataset snapshot --queue Q --name NAME`")
        return
    table = Table(
        Column("id", no_wrap=True, min_width=12),
        "name",
        "queue",
        "aggregation",
        "rows",
        "labels",
        "created",
        "by",
    )
    for entry in found:
        table.add_row(
            _text(entry["id"][:12]),
            _text(entry["name"]),
            _text(entry["queue"]),
            _text(entry["aggregation"]),
            _text((entry["counts"] or {}).get("rows")),
            _text((entry["counts"] or {}).get("labels")),
            (entry["created_at"] or "")[:16].replace("T", " "),
            _text(entry["created_by"]),
        )
    console.print(table)


@dataset_app.command("show")
def dataset_show(
    ctx: typer.Context,
    snapshot: SnapshotArgument,
    rows: Annotated[int, typer.Option(help="How many rows to show.")] = 10,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """Show a snapshot: its manifest and its first rows."""
    from prodloop.datasets import get_snapshot, snapshot_rows

    engine = open_store_for_command(ctx, db)
    pid = project_of(engine, project)
    found = get_snapshot(engine, pid, snapshot)
    if output == "json":
        print_json(found)
        return
    manifest = found["manifest"]
    console.print(f"[bold]{_text(found['name'])}[/bold]  {found['id']}")
    console.print(f"  queue:        {_text(manifest['queue'])} ({_text(manifest['aggregation'])})")
    console.print(f"  schemas:      {escape(', '.join(manifest['schema_versions']))}")
    console.print(f"  filters:      {escape(json.dumps(manifest['filters'], ensure_ascii=False))}")
    counts = manifest["counts"]
    console.print(
        f"  counts:       {counts['rows']} rows, {counts['labels']} labels, {counts['annotators']} annotators"
    )
    people = ", ".join(
        f"{_text(p['name'])} ({_text(p['kind'])}, {p['labels']})" for p in manifest["annotators"]
    )
    console.print(f"  annotators:   {people}")
    console.print(f"  rows sha256:  {_text(manifest['rows_sha256'])}")
    console.print(f"  created:      {found['created_at']} by {_text(found['created_by'], '—')}")
    if rows > 0:
        page = snapshot_rows(engine, pid, found["id"], 0, min(rows, 1000))
        table = Table("#", "item", "trace", "input", "label", "annotators")
        for row in page["rows"]:
            table.add_row(
                str(row["position"]),
                _text(row["item_id"]),
                _text((row["trace_id"] or "—")[:12]),
                _shown(row["input"], 40),
                _label(row["label"]),
                str(len(row["annotators"])),
            )
        console.print(table)
        if page["next_offset"] is not None:
            err.print(
                f"{page['total'] - len(page['rows'])} more rows; export them with `prodloop dataset export`"
            )


@dataset_app.command("verify")
def dataset_verify(
    ctx: typer.Context,
    snapshot: SnapshotArgument,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """Re-hash a snapshot's rows and manifest; exit 1 (naming what differs) when they do not match its id."""
    from prodloop.datasets import verify_snapshot

    engine = open_store_for_command(ctx, db)
    report = verify_snapshot(engine, project_of(engine, project), snapshot)
    if output == "json":
        print_json(report)
    elif report["ok"]:
        console.print(f"ok: {report['rows_checked']} rows and the manifest hash to {report['id']}")
    else:
        err.print(f"[red]snapshot {report['id']} does not match its content:[/red]")
        for problem in report["problems"]:
            err.print(f"  {escape(problem['check'])}: {escape(problem['message'])}")
        if report["more_problems"]:
            err.print(f"  … and {report['more_problems']} more problems")
    if not report["ok"]:
        raise typer.Exit(1)


@dataset_app.command("export")
def dataset_export(
    ctx: typer.Context,
    snapshot: SnapshotArgument,
    fmt: Annotated[
        Literal["jsonl", "parquet", "hf"],
        typer.Option("--format", help="jsonl, parquet, or hf (a Hugging Face `datasets` directory)."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write (a directory for hf).", show_default=False)
    ],
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Export a snapshot's rows, with its manifest beside them."""
    from prodloop.datasets import export_snapshot, get_snapshot

    engine = open_store_for_command(ctx, db)
    pid = project_of(engine, project)
    found = get_snapshot(engine, pid, snapshot)
    total = found["counts"]["rows"]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, disable=total < PROGRESS_ROWS) as bar:
        task = bar.add_task(f"exporting {_text(found['name'])} ({fmt})", total=total)
        result = export_snapshot(engine, pid, found["id"], fmt, output, lambda n: bar.advance(task, n))
    console.print(
        f"exported {result['rows']} rows of snapshot {result['id'][:12]} to "
        f"{escape(', '.join(str(file) for file in result['files']))}"
    )


@dataset_app.command("diff")
def dataset_diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="The earlier snapshot.", show_default=False)],
    b: Annotated[str, typer.Argument(help="The later snapshot.", show_default=False)],
    limit: Annotated[int, typer.Option(help="Rows shown per kind of change.")] = 20,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """Rows added, removed and relabelled from snapshot A to snapshot B."""
    from prodloop.datasets import diff_snapshots

    engine = open_store_for_command(ctx, db)
    diff = diff_snapshots(engine, project_of(engine, project), a, b)
    if output == "json":
        print_json(diff)
        return
    counts = diff["counts"]
    console.print(
        f"{_text(diff['a']['name'])} {diff['a']['id'][:12]} → {_text(diff['b']['name'])} "
        f"{diff['b']['id'][:12]} "
        f"(rows matched by {diff['matched_by']})"
    )
    console.print(
        f"  {counts['added']} added, {counts['removed']} removed, {counts['relabelled']} relabelled, "
        f"{counts['unchanged']} unchanged"
    )
    for kind, sign in (("added", "+"), ("removed", "-")):
        for row in diff[kind][:limit]:
            console.print(
                f"  {sign} item {_text(row['item_id'])} {_text(row['trace_id'])} {_label(row['label'])}"
            )
    for row in diff["relabelled"][:limit]:
        changes = "; ".join(
            f"{_text(change['field'])}: {_shown(change['a'], 30)} → {_shown(change['b'], 30)}"
            for change in row["changes"]
        )
        console.print(f"  ~ item {_text(row['item_id'])} {_text(row['trace_id'])} {changes}")
    hidden = sum(max(0, counts[kind] - limit) for kind in ("added", "removed", "relabelled"))
    if hidden:
        err.print(f"{hidden} more changed rows not shown; raise --limit or use --format json")


@dataset_app.command("lineage")
def dataset_lineage(
    ctx: typer.Context,
    trace: Annotated[str, typer.Option("--trace", help="Trace id (32 hex digits).", show_default=False)],
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """From a production trace to its queue items, labels (every version), snapshots and checkpoints."""
    from prodloop.datasets import trace_lineage

    engine = open_store_for_command(ctx, db)
    lineage = trace_lineage(engine, project_of(engine, project), trace)
    if output == "json":
        print_json(lineage)
        return
    console.print(f"trace [bold]{_text(lineage['trace_id'])}[/bold]")
    if not lineage["items"]:
        console.print("  in no annotation queue")
    for item in lineage["items"]:
        console.print(
            f"  item {_text(item['item_id'])} in queue {_quoted(item['queue'])} ({_text(item['status'])})"
        )
        for label in item["labels"]:
            state = "current" if label["current"] else "superseded"
            replaces = f", replaces {_text(label['supersedes'])}" if label["supersedes"] else ""
            console.print(
                f"    label {_text(label['id'])} by {_text(label['annotator'])} ({_text(label['role'])}, "
                f"{state}{replaces}): "
                f"{_label(label['value'])}"
            )
    for snapshot in lineage["snapshots"]:
        console.print(
            f"  in snapshot {snapshot['id'][:12]} {_quoted(snapshot['name'])} row {snapshot['position']}: "
            f"{_label(snapshot['label'] or {})} (labels {escape(str(snapshot['label_ids']))})"
        )
    for checkpoint in lineage["checkpoints"]:
        console.print(
            f"  → checkpoint {_quoted(checkpoint['name'])} "
            f"({_text(checkpoint['purpose'])} on {checkpoint['snapshot_id'][:12]})"
        )


# --------------------------------------------------------------------------------------------------
# prodloop checkpoint


@checkpoint_app.command("register")
def checkpoint_register(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Unique checkpoint name.", show_default=False)],
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", help="Snapshot it was trained on (repeatable).")
    ] = None,
    eval_dataset: Annotated[
        list[str] | None, typer.Option("--eval-dataset", help="Snapshot it was evaluated on (repeatable).")
    ] = None,
    base_model: Annotated[str | None, typer.Option(help="The base model it was trained from.")] = None,
    adapter: Annotated[str | None, typer.Option(help="The adapter (e.g. a LoRA path or hub id).")] = None,
    metadata: Annotated[str | None, typer.Option(help="Anything else, as a JSON object.")] = None,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """Record a model checkpoint and the snapshots it was trained (and evaluated) on."""
    from prodloop.datasets import register_checkpoint
    from prodloop.errors import InvalidRequest

    extra = None
    if metadata is not None:
        try:
            extra = json.loads(metadata)
        except ValueError as error:
            raise InvalidRequest(f"--metadata is not valid JSON: {error}") from None
    links = [(ref, "train") for ref in dataset or []] + [(ref, "eval") for ref in eval_dataset or []]
    engine = open_store_for_command(ctx, db)
    checkpoint = register_checkpoint(
        engine, project_of(engine, project), name, links, base_model, adapter, extra
    )
    if output == "json":
        print_json(checkpoint)
        return
    console.print(f"registered checkpoint [bold]{_text(checkpoint['name'])}[/bold]")
    for entry in checkpoint["datasets"]:
        console.print(
            f"  {_text(entry['purpose'])}: {entry['snapshot_id']} ({_quoted(entry['name'])}, "
            f"{entry['rows']} rows)"
        )


@checkpoint_app.command("ls")
def checkpoint_ls(
    ctx: typer.Context,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """List checkpoints, newest first."""
    from prodloop.datasets import list_checkpoints

    engine = open_store_for_command(ctx, db)
    found = list_checkpoints(engine, project_of(engine, project))
    if output == "json":
        print_json(found)
        return
    if not found:
        err.print("no checkpoints yet; register one with `prodloop checkpoint register`")
        return
    table = Table("name", "base model", "adapter", "train", "eval", "created")
    for entry in found:
        by_purpose = {
            purpose: escape(
                ", ".join(d["snapshot_id"][:12] for d in entry["datasets"] if d["purpose"] == purpose)
            )
            for purpose in ("train", "eval")
        }
        table.add_row(
            _text(entry["name"]),
            _text(entry["base_model"]),
            _text(entry["adapter"]),
            by_purpose["train"],
            by_purpose["eval"],
            (entry["created_at"] or "")[:16].replace("T", " "),
        )
    console.print(table)


@checkpoint_app.command("lineage")
def checkpoint_lineage_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Checkpoint name.", show_default=False)],
    labels: Annotated[int, typer.Option(help="How many labels to list.")] = 20,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """From a checkpoint to its snapshots and the exact labels, and people, behind them."""
    from prodloop.datasets import checkpoint_lineage

    engine = open_store_for_command(ctx, db)
    lineage = checkpoint_lineage(engine, project_of(engine, project), name)
    if output == "json":
        print_json(lineage)
        return
    checkpoint = lineage["checkpoint"]
    counts = lineage["counts"]
    console.print(f"checkpoint [bold]{_text(checkpoint['name'])}[/bold]")
    if checkpoint["base_model"] or checkpoint["adapter"]:
        console.print(
            f"  base model {_text(checkpoint['base_model'], '—')}, "
            f"adapter {_text(checkpoint['adapter'], '—')}"
        )
    for entry in lineage["datasets"]:
        console.print(
            f"  {_text(entry['purpose'])}: {entry['snapshot_id']} {_quoted(entry['name'])} "
            f"(queue {_text(entry['queue'])}, {_text(entry['aggregation'])}, {entry['rows']} rows)"
        )
    console.print(
        f"  {counts['labels']} labels by {counts['annotators']} annotators over {counts['traces']} traces:"
    )
    for person in lineage["annotators"]:
        plural = "" if person["labels"] == 1 else "s"
        console.print(
            f"    {_text(person['name'])} ({_text(person['kind'])}): {person['labels']} label{plural}"
        )
    if labels > 0:
        table = Table("label", "item", "trace", "annotator", "role", "value", "used for")
        for label in lineage["labels"][:labels]:
            table.add_row(
                _text(label["id"]),
                _text(label["item_id"]),
                _text((label["trace_id"] or "—")[:12]),
                _text(label["annotator"]),
                _text(label["role"]),
                _label(label["value"]),
                escape(", ".join(label["purposes"])),
            )
        console.print(table)
        if counts["labels"] > labels:
            err.print(f"{counts['labels'] - labels} more labels; use --format json for all of them")
