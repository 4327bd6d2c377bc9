"""``prodloop drift REF CUR``: drift between two files (CSV, Parquet, JSON Lines), with no server and no
store. Prints the JSON report (the contract of :meth:`prodloop.monitoring.drift.DriftReport.to_dict`) or
writes the standalone HTML report; the work is :func:`prodloop.monitoring.files.file_drift`."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from prodloop.cli.common import err, print_json
from prodloop.errors import ValidationFailed

#: Inputs of at least this many rows (both files together) show a progress bar.
PROGRESS_ROWS = 100_000
DEFAULT_HTML = Path("drift-report.html")


def _split_assignments(values: list[str] | None, what: str) -> tuple[str | None, dict[str, str]]:
    """``["ks", "age=psi"]`` -> ("ks", {"age": "psi"}): one value for all columns, and per column."""
    every: str | None = None
    per_column: dict[str, str] = {}
    for value in values or []:
        name, sep, setting = value.rpartition("=")
        if not sep:
            if every is not None and every != value:
                raise ValidationFailed(
                    f"{what} is given twice for all columns ({every!r} and {value!r}); give one, "
                    f"and COLUMN=VALUE for single columns"
                )
            every = value
        elif not name or not setting:
            raise ValidationFailed(f"{what} {value!r} is not VALUE or COLUMN=VALUE")
        else:
            per_column[name] = setting
    return every, per_column


def _float(value: str, given: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValidationFailed(f"--threshold {given}: {value!r} is not a number") from None


def drift(
    reference: Annotated[Path, typer.Argument(help="The reference file: CSV, Parquet or JSON Lines.")],
    current: Annotated[Path, typer.Argument(help="The current file, in the same or another format.")],
    output_format: Annotated[
        Literal["json", "html"] | None,
        typer.Option(
            "--format",
            help="json or html (default: html when --output ends in .html, else json).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the report here (default: JSON on stdout; HTML to drift-report.html).",
        ),
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="Compare only these columns, comma-separated (default: all shared).")
    ] = None,
    test: Annotated[
        list[str] | None,
        typer.Option(
            help="Drift test for every column (NAME) or one column (COLUMN=NAME); repeat for more "
            "(default: Evidently 0.7's choice by type and size)."
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(help="Threshold of the test for every column (X) or one column (COLUMN=X); repeatable."),
    ] = None,
    column_type: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            help="Type of a column when the inferred one is wrong: COLUMN=numeric, categorical or text; "
            "repeatable.",
        ),
    ] = None,
    drift_share: Annotated[
        float, typer.Option(help="Share of drifted columns at which the dataset counts as drifted.")
    ] = 0.5,
    input_format: Annotated[
        Literal["csv", "tsv", "parquet", "jsonl"] | None,
        typer.Option(help="Read both files as this format (default: from each file's extension)."),
    ] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit with status 1 when the dataset drifted (for CI).")
    ] = False,
) -> None:
    """Compare two files column by column and report the drift, as JSON or a standalone HTML page.

    Each column gets the test Evidently 0.7 picks for its type and size (text: a TF-IDF classifier).
    Exit status: 0 when the report is made, 1 with --fail-on-drift when the dataset drifted, 2 for bad input.
    """
    from prodloop.monitoring.files import file_drift

    every_test, column_tests = _split_assignments(test, "--test")
    every_threshold, column_thresholds = _split_assignments(threshold, "--threshold")
    every_type, column_types = _split_assignments(column_type, "--type")
    if every_type is not None:
        raise ValidationFailed(f"--type {every_type!r} names no column; write COLUMN={every_type}")
    fmt = output_format or (
        "html" if output is not None and output.suffix.lower() in (".html", ".htm") else "json"
    )
    picked = [name.strip() for name in columns.split(",") if name.strip()] if columns else None

    rows = _rows_hint(reference) + _rows_hint(current)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=rows < PROGRESS_ROWS,
    )
    with progress:
        task = progress.add_task("reading the files", total=None)
        result = file_drift(
            reference,
            current,
            format=input_format,
            columns=picked,
            test=every_test,
            column_tests=column_tests,
            threshold=None if every_threshold is None else _float(every_threshold, every_threshold),
            column_thresholds={c: _float(v, f"{c}={v}") for c, v in column_thresholds.items()},
            column_types=column_types,
            drift_share=drift_share,
            progress=lambda done, total: progress.update(
                task, description="comparing columns", completed=done, total=total
            ),
        )
    report = result.report
    for name, why in result.inputs.skipped.items():
        err.print(f"[yellow]not tested:[/yellow] {escape(name)}: {escape(why)}")
    drifted = sum(column.drift for column in report.columns)
    verdict = "dataset drift" if report.dataset_drift else "no dataset drift"
    summary = (
        f"{verdict}: {drifted} of {len(report.columns)} columns drifted "
        f"({report.share_drifted:.0%}; the dataset drifts from {report.drift_share:.0%})"
    )
    if fmt == "json":
        if output is None:
            print_json(report.to_dict())
            err.print(summary)
        else:
            text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
            output.write_text(text + "\n", encoding="utf-8")
            err.print(f"{summary}; wrote {escape(str(output))}")
    else:
        from prodloop.monitoring.report_html import drift_report_html

        target = output or DEFAULT_HTML
        with err.status("drawing the report") if rows >= PROGRESS_ROWS else nullcontext():
            html = drift_report_html(
                report,
                result.inputs.reference,
                result.inputs.current,
                reference_name=reference.name,
                current_name=current.name,
                skipped=result.inputs.skipped,
            )
        target.write_text(html, encoding="utf-8")
        err.print(f"{summary}; wrote {escape(str(target))}")
    if fail_on_drift and report.dataset_drift:
        raise typer.Exit(1)


def _rows_hint(path: Path) -> int:
    """About how many rows a file holds, from its size (for deciding whether to show progress)."""
    try:
        return path.stat().st_size // 50
    except OSError:
        return 0
