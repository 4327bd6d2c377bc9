"""``prodloop schema …``, ``prodloop queue …`` and ``prodloop annotator …``: label schemas, queues and
their items, label quality, and the annotators. Each command parses its input, calls one function of
``prodloop.annotation`` and prints the result; ``--format json`` prints that result as it is."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markdown import Markdown
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

schema_app = typer.Typer(help="Versioned label schemas.", no_args_is_help=True)
queue_app = typer.Typer(help="Annotation queues: items, progress, agreement.", no_args_is_help=True)
annotator_app = typer.Typer(help="Annotators: people and model judges.", no_args_is_help=True)

TableOrJson = Annotated[Literal["table", "json"], typer.Option("--format", help="table or json.")]
QueueArgument = Annotated[str, typer.Argument(help="Queue name (or id).", show_default=False)]

#: Items per transaction when adding a JSONL file to a queue.
ADD_CHUNK = 1000


# --------------------------------------------------------------------------------------------------
# Printing helpers


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.0%}"


def _interval(ci: Any, digits: int = 3) -> str:
    if not ci or any(bound is None or not math.isfinite(bound) for bound in ci):
        return "—"
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _shown(value: Any, width: int = 60) -> str:
    """A value in one line of at most ``width`` characters, safe to print (no Rich markup)."""
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return escape(text if len(text) <= width else text[: width - 1] + "…")


def _when(ns: int | None) -> str:
    from prodloop.capture.queries import iso

    return (iso(ns) or "")[:19].replace("T", " ")


def _progress(description: str, total: int) -> tuple[Progress, Any]:
    """A progress bar on stderr, drawn only on a terminal and gone when it is done."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err, transient=True, disable=not err.is_terminal)
    return bar, bar.add_task(description, total=total)


# --------------------------------------------------------------------------------------------------
# prodloop schema


@schema_app.command("create")
def schema_create(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A YAML or JSON file: name, fields, guidelines.")],
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Save a schema file as the next version of its schema.

    Saving content identical to the latest version stores nothing, so applying the same file twice
    is harmless."""
    from prodloop.annotation import read_schema_file, save_schema

    document = read_schema_file(file)
    engine = open_store_for_command(ctx, db)
    schema, created = save_schema(engine, project_of(engine, project, create=True), document)
    if created:
        console.print(f"created {schema.ref}", highlight=False)
    else:
        console.print(f"unchanged: {schema.ref} already has this content", highlight=False)


def _schema_document(schema: Any) -> dict[str, Any]:
    """The schema as a file would state it: name and version first, settings left at their default
    left out."""
    rest = schema.model_dump(mode="json", exclude_defaults=True, exclude={"name", "version"})
    return {"name": schema.name, "version": schema.version, **rest}


def _field_constraints(spec: Any) -> str:
    if spec.options:
        return ", ".join(spec.options) if spec.type != "ordinal" else " < ".join(spec.options)
    parts = []
    if spec.minimum is not None:
        parts.append(f"min {spec.minimum:g}")
    if spec.maximum is not None:
        parts.append(f"max {spec.maximum:g}")
    if spec.max_length is not None:
        parts.append(f"at most {spec.max_length} characters")
    return ", ".join(parts)


@schema_app.command("show")
def schema_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, or NAME for the latest version.")],
    output: Annotated[
        Literal["table", "yaml", "json"],
        typer.Option("--format", help="table (fields and guidelines), or the document as yaml or json."),
    ] = "table",
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Show a schema version: its fields and guidelines, or the document itself."""
    from prodloop.annotation import get_schema

    engine = open_store_for_command(ctx, db)
    schema = get_schema(engine, project_of(engine, project), ref)
    if output == "json":
        print_json(_schema_document(schema))
        return
    if output == "yaml":
        import yaml

        print(yaml.safe_dump(_schema_document(schema), sort_keys=False, allow_unicode=True), end="")
        return
    title = schema.ref + (f": {escape(schema.description)}" if schema.description else "")
    table = Table("field", "type", "required", "options / bounds", "help", title=title, title_justify="left")
    for spec in schema.fields:
        multi = ""
        if spec.type == "multi_label" and (spec.min_choices is not None or spec.max_choices is not None):
            multi = f" (choose {spec.min_choices or 0} to {spec.max_choices or len(spec.options)})"
        table.add_row(
            spec.name,
            spec.type,
            "yes" if spec.required else "no",
            escape(_field_constraints(spec) + multi),
            escape(spec.help),
        )
    console.print(table)
    if schema.guidelines.strip():
        console.print()
        console.print(Markdown(schema.guidelines))


@schema_app.command("ls")
def schema_ls(ctx: typer.Context, project: ProjectOption = "default", db: DbOption = None) -> None:
    """List the label schemas with their latest version."""
    from prodloop.annotation import list_schemas

    engine = open_store_for_command(ctx, db)
    schemas = list_schemas(engine, project_of(engine, project))
    if not schemas:
        err.print(f"no label schemas in project {project!r}; create one with `prodloop schema create FILE`")
        return
    table = Table(
        Column("name", no_wrap=True), Column("latest", no_wrap=True), "versions", "fields", "saved (UTC)"
    )
    for entry in schemas:
        table.add_row(
            entry["name"],
            entry["latest"],
            str(entry["versions"]),
            ", ".join(entry["fields"]),
            _when(entry["created_ns"]),
        )
    console.print(table)


@schema_app.command("versions")
def schema_versions_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Schema name.")],
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """List every version of a schema, oldest first."""
    from prodloop.annotation import schema_versions

    engine = open_store_for_command(ctx, db)
    versions = schema_versions(engine, project_of(engine, project), name)
    table = Table("version", "content hash", "saved by", "saved (UTC)")
    for entry in versions:
        table.add_row(
            entry["ref"],
            entry["content_hash"][:12],
            escape(entry["created_by"] or "—"),
            _when(entry["created_ns"]),
        )
    console.print(table)


# --------------------------------------------------------------------------------------------------
# prodloop queue: create, list, show


@queue_app.command("create")
def queue_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name: lowercase letters, digits, '-' and '_'.")],
    schema: Annotated[
        str, typer.Option("--schema", help="Label schema NAME@VERSION (NAME alone: the latest version).")
    ],
    overlap: Annotated[
        int | None, typer.Option(help="Distinct annotators who label each item (default 1).")
    ] = None,
    lease_seconds: Annotated[
        int | None, typer.Option(help="How long an annotator holds an item (default 600).")
    ] = None,
    gold_share: Annotated[
        float | None, typer.Option(help="Share of leases that go to gold items, 0 to 1 (default 0).")
    ] = None,
    suggestions: Annotated[
        bool, typer.Option("--suggestions/--no-suggestions", help="Show model suggestions to annotators.")
    ] = False,
    disagreement: Annotated[
        Literal["unanimity", "majority"] | None,
        typer.Option(
            help="Which items go to review: any disagreement, or a weak majority (default unanimity)."
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="With --disagreement majority: a top answer's share below this goes to review."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the queue is for.")] = None,
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Create an annotation queue over one label schema version."""
    from pydantic import ValidationError

    from prodloop.annotation import QueueSettings, create_queue
    from prodloop.errors import ValidationFailed

    given = {
        "name": name,
        "schema": schema,
        "overlap": overlap,
        "lease_seconds": lease_seconds,
        "gold_share": gold_share,
        "show_suggestions": suggestions,
        "disagreement_rule": disagreement,
        "disagreement_threshold": threshold,
        "description": description,
    }
    try:
        settings = QueueSettings.model_validate(
            {key: value for key, value in given.items() if value is not None}
        )
    except ValidationError as error:
        raise ValidationFailed.from_errors(error.errors()) from None
    engine = open_store_for_command(ctx, db)
    queue = create_queue(engine, project_of(engine, project), settings)
    console.print(
        f"created queue {queue['name']} on {queue['schema']}: {_settings_line(queue)}", highlight=False
    )


def _rule(queue: dict[str, Any]) -> str:
    if queue["disagreement_rule"] == "majority":
        return f"majority below {queue['disagreement_threshold']:.0%}"
    return str(queue["disagreement_rule"])


def _settings_line(queue: dict[str, Any]) -> str:
    return (
        f"overlap {queue['overlap']}, leases {queue['lease_seconds']} s, "
        f"gold share {queue['gold_share']:.0%}, "
        f"suggestions {'shown' if queue['show_suggestions'] else 'hidden'}, disagreement rule {_rule(queue)}"
    )


def _done_share(progress: dict[str, Any]) -> str:
    return _pct(progress["done"] / progress["items"]) if progress["items"] else "—"


@queue_app.command("ls")
def queue_ls(
    ctx: typer.Context, output: TableOrJson = "table", project: ProjectOption = "default", db: DbOption = None
) -> None:
    """List the queues with their progress."""
    from prodloop.annotation import list_queues

    engine = open_store_for_command(ctx, db)
    queues = list_queues(engine, project_of(engine, project))
    if output == "json":
        print_json({"queues": queues})
        return
    if not queues:
        err.print(f"no queues in project {project!r}; create one with `prodloop queue create`")
        return
    table = Table(
        Column("queue", no_wrap=True),
        Column("schema", no_wrap=True),
        "overlap",
        "done",
        "review",
        "open",
        "gold",
        "labels to go",
    )
    for queue in queues:
        p = queue["progress"]
        table.add_row(
            queue["name"],
            queue["schema"],
            str(queue["overlap"]),
            f"{p['done']}/{p['items']} ({_done_share(p)})",
            str(p["review"]),
            str(p["open"]),
            str(p["gold_items"]),
            str(p["labels_needed"]),
        )
    console.print(table)


@queue_app.command("show")
def queue_show(
    ctx: typer.Context,
    queue: QueueArgument,
    output: TableOrJson = "table",
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Show a queue's settings and progress."""
    from prodloop.annotation import get_queue

    engine = open_store_for_command(ctx, db)
    shape = get_queue(engine, project_of(engine, project), queue)
    if output == "json":
        print_json(shape)
        return
    p = shape["progress"]
    table = Table("setting", "value", title=f"queue {shape['name']} (id {shape['id']})", title_justify="left")
    rows = [
        ("schema", shape["schema"]),
        ("description", escape(shape["description"] or "—")),
        ("overlap", str(shape["overlap"])),
        ("lease", f"{shape['lease_seconds']} s"),
        ("gold share", _pct(shape["gold_share"])),
        ("suggestions", "shown" if shape["show_suggestions"] else "hidden"),
        ("disagreement rule", _rule(shape)),
        (
            "items",
            f"{p['items']} ({p['done']} done, {p['review']} in review, {p['open']} open; {_done_share(p)})",
        ),
        ("gold items", str(p["gold_items"])),
        ("labels still needed", str(p["labels_needed"])),
        ("leased now", str(p["leased_now"])),
        ("open escalations", str(p["open_escalations"])),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)


# --------------------------------------------------------------------------------------------------
# prodloop queue add


@queue_app.command("set-schema")
def queue_set_schema(
    ctx: typer.Context,
    queue: QueueArgument,
    schema: Annotated[
        str, typer.Option("--schema", help="Another version of the queue's schema: NAME@VERSION.")
    ],
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Move a queue to another version of its schema; labels already given keep theirs."""
    from prodloop.annotation import change_queue_schema

    engine = open_store_for_command(ctx, db)
    shape = change_queue_schema(engine, project_of(engine, project), queue, schema)
    console.print(f"queue {escape(shape['name'])} now labels with {escape(shape['schema'])}")


def _jsonl_rows(path: Path, progress: Progress, task: Any) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed row)`` for each non-blank line, read as a stream; for a line that is not
    JSON the row is a ``_NotJson`` that says why."""
    try:
        handle = path.open("rb")
    except OSError as error:
        from prodloop.errors import InvalidRequest

        raise InvalidRequest(f"cannot read item file {str(path)!r}: {error.strerror}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            progress.advance(task, len(line))
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as error:
                yield number, _NotJson(str(error))


class _NotJson:
    def __init__(self, problem: str) -> None:
        self.problem = problem


def read_item_file(path: Path) -> list[tuple[int, Any]]:
    """Every row of a JSONL item file as ``(line number, ItemIn)``. Each problem is a 422 that names
    ``FILE:LINE`` and the field; nothing is returned unless every row is valid."""
    from prodloop.annotation import parse_items
    from prodloop.errors import ValidationFailed

    items: list[tuple[int, Any]] = []
    problems: list[dict[str, Any]] = []
    pending: list[tuple[int, Any]] = []

    def parse_pending() -> None:
        try:
            parsed = parse_items([row for _, row in pending])
        except ValidationFailed as error:
            for problem in error.detail:
                line = pending[problem["row"] - 1][0]
                problems.append({"line": line, "field": problem["field"], "message": problem["message"]})
        else:
            items.extend(zip((line for line, _ in pending), parsed, strict=True))
        pending.clear()

    size = path.stat().st_size if path.is_file() else 0
    bar, task = _progress(f"read {path.name}", size)
    with bar:
        for line, row in _jsonl_rows(path, bar, task):
            if isinstance(row, _NotJson):
                problems.append({"line": line, "field": "", "message": f"not valid JSON ({row.problem})"})
                continue
            pending.append((line, row))
            if len(pending) >= ADD_CHUNK:
                parse_pending()
        parse_pending()
    if problems:
        problems.sort(key=lambda problem: problem["line"])
        first = problems[0]
        where = f"{first['field']}: " if first["field"] else ""
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValidationFailed(
            f"{path.name}:{first['line']}: {where}{first['message']}{more}; nothing was added",
            problems[:100],
        )
    return items


_ROW_PREFIX = re.compile(r"^item row (\d+): ")


def _located(error: Any, path: Path, chunk: list[tuple[int, Any]], added: int) -> Any:
    """``error`` from adding ``chunk``, with its message naming the file's line instead of the row of
    the chunk, and what was added before it."""
    message = error.message
    match = _ROW_PREFIX.match(message)
    if match:
        message = f"{path.name}:{chunk[int(match.group(1)) - 1][0]}: {message[match.end() :]}"
    elif isinstance(error.detail, dict) and error.detail.get("missing_traces"):
        trace = error.detail["missing_traces"][0]
        line = next((number for number, item in chunk if item.trace_id == trace), None)
        if line is not None:
            message = f"{path.name}:{line}: {message}"
    if added:
        message += (
            f"; the {added} items before it were added, and running the command again after fixing "
            "the line skips them"
        )
    else:
        message += "; nothing was added"
    return type(error)(message, error.detail)


def _add_file(engine: Any, project_id: int, queue: str, path: Path) -> dict[str, int]:
    from prodloop.annotation import add_items
    from prodloop.errors import ProdloopError

    items = read_item_file(path)
    totals = {"added": 0, "skipped": 0}
    bar, task = _progress(f"add to {queue}", len(items))
    with bar:
        for start in range(0, len(items), ADD_CHUNK):
            chunk = items[start : start + ADD_CHUNK]
            try:
                result = add_items(engine, project_id, queue, [item for _, item in chunk])
            except ProdloopError as error:
                raise _located(error, path, chunk, totals["added"]) from None
            totals["added"] += result["added"]
            totals["skipped"] += result["skipped"]
            bar.advance(task, len(chunk))
    return totals


@queue_app.command("add")
def queue_add(
    ctx: typer.Context,
    queue: QueueArgument,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="JSON Lines, one item a line: id, trace_id, input, output, context, "
            "metadata, priority, suggestion, gold.",
        ),
    ] = None,
    from_traces: Annotated[
        bool, typer.Option("--from-traces", help="Add production traces that the filters below select.")
    ] = False,
    feature: Annotated[str | None, typer.Option(help="Traces of this feature.")] = None,
    release: Annotated[str | None, typer.Option(help="Traces served by this release.")] = None,
    model: Annotated[str | None, typer.Option(help="Traces of this model.")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Traces started at or after (ISO 8601, UTC).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Traces started before (ISO 8601, UTC).")] = None,
    signal: Annotated[
        str | None, typer.Option(help="Traces with a signal of this name (thumbs, escalated, …).")
    ] = None,
    sample: Annotated[
        Literal["newest", "random", "stratified"], typer.Option(help="Which N of the matching traces.")
    ] = "newest",
    stratify_by: Annotated[
        Literal["feature", "release", "model"], typer.Option(help="Strata of --sample stratified.")
    ] = "feature",
    n: Annotated[int | None, typer.Option("-n", help="How many traces (default: every match).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of random and stratified samples.")] = 0,
    priority: Annotated[int | None, typer.Option(help="Priority of the added traces (higher first).")] = None,
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Add items to a queue from a JSONL file or from production traces.

    Items already in the queue (same id, trace id or content) are skipped."""
    from prodloop.errors import InvalidRequest

    trace_options = {
        "--feature": feature,
        "--release": release,
        "--model": model,
        "--since": since,
        "--until": until,
        "--signal": signal,
        "-n": n,
        "--priority": priority,
    }
    if (file is None) == (not from_traces):
        raise InvalidRequest("give either --file items.jsonl or --from-traces (with filters), not both")
    if file is not None:
        extra = [name for name, value in trace_options.items() if value is not None]
        if extra:
            raise InvalidRequest(f"{', '.join(extra)} go with --from-traces; with --file, rows set their own")
        if not file.is_file():
            raise InvalidRequest(f"item file {str(file)!r} does not exist")
    from prodloop.annotation import add_items_from_traces, get_queue
    from prodloop.capture import TraceFilter

    engine = open_store_for_command(ctx, db)
    pid = project_of(engine, project)
    name = get_queue(engine, pid, queue)["name"]  # 404 before a long read
    if file is not None:
        result = _add_file(engine, pid, queue, file)
        console.print(
            f"added {result['added']} items to queue {name}; skipped {result['skipped']} already in it",
            highlight=False,
        )
        return
    filters = TraceFilter(
        feature=feature, since=since, until=until, release=release, model=model, signal=signal
    )
    result = add_items_from_traces(
        engine,
        pid,
        queue,
        filters,
        n=n,
        sample=sample,
        stratify_by=stratify_by,
        seed=seed,
        priority=priority or 0,
    )
    console.print(
        f"{result['matched']} traces matched; added {result['added']} items to queue {name}; "
        f"skipped {result['skipped']} already in it",
        highlight=False,
    )
    if result["matched"] == 0:
        err.print(
            "no trace matched the filters; `prodloop traces ls` with the same filters shows what is there"
        )


# --------------------------------------------------------------------------------------------------
# prodloop queue: label quality


@queue_app.command("agreement")
def queue_agreement_cmd(
    ctx: typer.Context,
    queue: QueueArgument,
    output: TableOrJson = "table",
    since: Annotated[datetime | None, typer.Option(help="Labels given at or after (ISO 8601, UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Labels given before (ISO 8601, UTC).")] = None,
    schema: Annotated[
        str | None, typer.Option("--schema", help="Only labels given under this schema NAME@VERSION.")
    ] = None,
    by_version: Annotated[
        bool,
        typer.Option("--by-version", help="Agreement for each schema version the labels were given under."),
    ] = False,
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Agreement between annotators, per field and per class.

    Krippendorff's alpha with a bootstrap 95% interval, Fleiss' kappa and percent agreement. The JSON
    output is a stable contract."""
    from prodloop.annotation.quality import agreement_by_schema_version, queue_agreement
    from prodloop.errors import InvalidRequest

    engine = open_store_for_command(ctx, db)
    pid = project_of(engine, project)
    if by_version:
        if since or until or schema:
            raise InvalidRequest("--by-version covers every label; leave out --since, --until and --schema")
        versions = agreement_by_schema_version(engine, pid, queue)
        if output == "json":
            print_json(versions)
            return
        for entry in versions["versions"]:
            _print_agreement(entry["fields"], title=f"{queue}: labels under {entry['schema']}")
        if not versions["versions"]:
            err.print(f"queue {queue} has no labels yet")
        return
    report = queue_agreement(engine, pid, queue, since=since, until=until, schema=schema)
    if output == "json":
        print_json(report)
        return
    scope = [
        f"schema {schema}" if schema else "",
        f"since {since}" if since else "",
        f"until {until}" if until else "",
    ]
    title = f"{queue}: agreement over {report['n_labels']} labels" + "".join(f", {s}" for s in scope if s)
    _print_agreement(report["fields"], title=title)


def _print_agreement(fields: list[dict[str, Any]], title: str) -> None:
    table = Table(
        "field",
        "level",
        "items",
        "alpha",
        "95% CI",
        "Fleiss κ",
        "agreement",
        title=title,
        title_justify="left",
    )
    problems = []
    for entry in fields:
        table.add_row(
            entry["field"],
            entry["level"],
            str(entry["n_items"]),
            _num(entry["krippendorff_alpha"]),
            _interval(entry["alpha_ci"]),
            _num(entry["fleiss_kappa"]),
            _pct(entry["percent_agreement"]),
        )
        if entry.get("error"):
            problems.append(f"{entry['field']}: {entry['error']}")
    console.print(table)
    classes = Table("field", "class", "alpha", title="alpha per class", title_justify="left")
    for entry in fields:
        for name, alpha in entry["per_class"].items():
            classes.add_row(entry["field"], escape(name), _num(alpha))
    if classes.row_count:
        console.print(classes)
    if any(entry["fleiss_kappa"] is None and not entry.get("error") for entry in fields):
        err.print("Fleiss' kappa needs two or more items with the same number of labels")
    for problem in problems:
        err.print(f"[yellow]no agreement for {escape(problem)}[/yellow]", highlight=False)


@queue_app.command("gold")
def queue_gold(
    ctx: typer.Context,
    queue: QueueArgument,
    threshold: Annotated[
        float, typer.Option(help="Flag annotators whose gold accuracy is below this (0 to 1).")
    ] = 0.8,
    output: TableOrJson = "table",
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Accuracy of each annotator and model judge on gold items.

    With a 95% interval; those below the threshold are flagged."""
    from prodloop.annotation.quality import gold_accuracy

    engine = open_store_for_command(ctx, db)
    report = gold_accuracy(engine, project_of(engine, project), queue, threshold=threshold)
    if output == "json":
        print_json(report)
        return
    if not report["annotators"]:
        err.print(f"nobody has labelled a gold item of queue {queue} yet")
        return
    table = Table(
        "annotator",
        "kind",
        "gold items",
        "correct",
        "accuracy",
        Column("95% CI", no_wrap=True),
        "flag",
        title=f"{queue}: accuracy on gold (threshold {threshold:.0%})",
        title_justify="left",
    )
    for entry in report["annotators"]:
        table.add_row(
            escape(entry["annotator"]),
            entry["kind"],
            str(entry["n_gold"]),
            str(entry["n_correct"]),
            _pct(entry["accuracy"]),
            _interval(entry["ci"], digits=2),
            (
                "[red]FLAGGED (whole interval below)[/red]"
                if entry["confidently_below"]
                else "[red]FLAGGED[/red]"
                if entry["flagged"]
                else "ok"
            ),
        )
    console.print(table)


@queue_app.command("review")
def queue_review(
    ctx: typer.Context,
    queue: QueueArgument,
    limit: Annotated[int, typer.Option(help="At most this many items.")] = 20,
    output: TableOrJson = "table",
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Items waiting for adjudication, with every label side by side.

    An item waits when its labels disagree under the queue's rule, or when someone escalated it."""
    from prodloop.annotation import items_for_review

    engine = open_store_for_command(ctx, db)
    waiting = items_for_review(engine, project_of(engine, project), queue, limit=limit)
    if output == "json":
        print_json(waiting)
        return
    if not waiting["items"]:
        console.print(f"no items of queue {waiting['queue']} wait for adjudication", highlight=False)
        return
    fields = [spec["name"] for spec in waiting["schema"]["fields"]]
    shown = len(waiting["items"])
    console.print(
        f"{waiting['total']} items of queue {waiting['queue']} wait for adjudication"
        + (f" (showing {shown})" if shown < waiting["total"] else ""),
        highlight=False,
    )
    for item in waiting["items"]:
        disagree = set(item["disagreeing_fields"])
        trace = f", trace {item['trace_id']}" if item["trace_id"] else ""
        table = Table(
            "annotator",
            *[f"[red]{name} ≠[/red]" if name in disagree else name for name in fields],
            title=f"item {item['id']}{trace}: {_shown(item['input'])}",
            title_justify="left",
        )
        for label in item["labels"]:
            table.add_row(
                escape(label["annotator"] or "—"), *[_shown(label["value"].get(name), 40) for name in fields]
            )
        console.print(table)
        for note in item["escalations"]:
            about = note["field"] or "whole item"
            console.print(
                f"  escalated by {note['annotator']} ({about}): {note['note']}", highlight=False, markup=False
            )


@queue_app.command("escalations")
def queue_escalations(
    ctx: typer.Context,
    queue: QueueArgument,
    output: TableOrJson = "table",
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Escalation notes ("guideline unclear") collected per field, most escalated first."""
    from prodloop.annotation import escalation_summary

    engine = open_store_for_command(ctx, db)
    summary = escalation_summary(engine, project_of(engine, project), queue)
    if output == "json":
        print_json(summary)
        return
    if not summary["fields"]:
        console.print(f"no escalations in queue {summary['queue']}", highlight=False)
        return
    for entry in summary["fields"]:
        about = entry["field"] or "(whole item)"
        console.print(
            f"[bold]{about}[/bold]: {entry['count']} escalations, {entry['open']} open", highlight=False
        )
        for note in entry["notes"]:
            when = (note["created_at"] or "")[:16].replace("T", " ")
            status = "resolved" if note["resolved"] else "open"
            console.print(
                f"  item {note['item_id']}, {note['annotator'] or '—'}, {when} UTC, {status}: {note['note']}",
                highlight=False,
                markup=False,
            )


@queue_app.command("aggregate")
def queue_aggregate(
    ctx: typer.Context,
    queue: QueueArgument,
    method: Annotated[
        Literal["majority", "dawid-skene"], typer.Option(help="Majority vote, or Dawid-Skene (EM).")
    ] = "majority",
    limit: Annotated[int, typer.Option(help="Items shown per field in the table (json gives all).")] = 50,
    output: TableOrJson = "table",
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Final labels by majority vote or Dawid-Skene, and each annotator's accuracy against them.

    Each label comes with its confidence: the vote share, or the posterior."""
    from prodloop.annotation.quality import aggregate_queue

    engine = open_store_for_command(ctx, db)
    result = aggregate_queue(engine, project_of(engine, project), queue, method=method)
    if output == "json":
        print_json(result)
        return
    for entry in result["fields"]:
        if not entry["items"]:
            console.print(f"{entry['field']}: no labels yet", highlight=False)
            continue
        items = Table(
            "item",
            "trace",
            "label",
            "confidence",
            "votes",
            title=f"{entry['field']} by {method}",
            title_justify="left",
        )
        for row in entry["items"][:limit]:
            items.add_row(
                str(row["item_id"]),
                (row["trace_id"] or "—")[:12],
                _shown(row["label"], 40),
                _num(row["confidence"], 2),
                str(row["n_votes"]),
            )
        console.print(items)
        if len(entry["items"]) > limit:
            err.print(f"{len(entry['items']) - limit} more items; --format json lists them all")
        people = Table("annotator", "kind", f"accuracy vs {method}", title=f"{entry['field']}: annotators")
        for person in entry["annotators"]:
            people.add_row(escape(person["annotator"]), person.get("kind") or "—", _pct(person["accuracy"]))
        console.print(people)


# --------------------------------------------------------------------------------------------------
# prodloop annotator


@annotator_app.command("create")
def annotator_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The annotator's name, as shown next to their labels.")],
    kind: Annotated[Literal["human", "model"], typer.Option(help="A person, or a model judge.")] = "human",
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Register an annotator with an API key of their own, and print the key.

    The key has role annotator. It is shown once; only its hash is stored."""
    import sqlalchemy as sa

    from prodloop.annotation import register_annotator
    from prodloop.errors import ProdloopError
    from prodloop.server.auth import create_api_key, hash_key
    from prodloop.store import read_transaction, write_transaction
    from prodloop.store.schema import api_keys

    engine = open_store_for_command(ctx, db)
    key = create_api_key(engine, project, "annotator", name=name)
    with read_transaction(engine) as connection:
        key_id = connection.execute(
            sa.select(api_keys.c.id).where(api_keys.c.key_hash == hash_key(key))
        ).scalar_one()
    try:
        register_annotator(engine, project_of(engine, project), name, kind, key_id=key_id)
    except ProdloopError:
        with write_transaction(engine) as connection:  # nobody has seen the key: take it back
            connection.execute(api_keys.delete().where(api_keys.c.id == key_id))
        raise
    err.print(
        f"created {kind} annotator {name!r} in project {project!r} with a key of role 'annotator'; "
        "it is not shown again:"
    )
    print(key)


@annotator_app.command("ls")
def annotator_ls(
    ctx: typer.Context, output: TableOrJson = "table", project: ProjectOption = "default", db: DbOption = None
) -> None:
    """List the project's annotators: people and model judges."""
    from prodloop.annotation import list_annotators

    engine = open_store_for_command(ctx, db)
    people = list_annotators(engine, project_of(engine, project))
    if output == "json":
        print_json({"annotators": [person.to_dict() for person in people]})
        return
    if not people:
        err.print(f"no annotators in project {project!r}; add one with `prodloop annotator create NAME`")
        return
    table = Table("id", "name", "kind")
    for person in people:
        table.add_row(str(person.id), escape(person.name), person.kind)
    console.print(table)
