"""Bulk loading from JSON Lines files: native traces, signals and OTLP/JSON requests, mixed freely."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from prodloop.capture.otlp import JSON, parse_request, span_records
from prodloop.capture.shapes import SignalIn, TraceIn
from prodloop.capture.signals import record_signals
from prodloop.capture.traces import ingest_traces, write_spans
from prodloop.errors import ProdloopError, ValidationFailed


def _classify(document: dict[str, Any]) -> str:
    if "resourceSpans" in document or "resource_spans" in document:
        return "otlp"
    if document.get("kind") in ("explicit", "implicit", "outcome"):
        return "signal"
    return "trace"


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def ingest_jsonl(
    engine: sa.Engine, project_id: int, path: Path, batch_size: int = 1000, progress: bool = False
) -> dict[str, int]:
    """Load every line of ``path``; a line that is not valid stops the load with its line number
    (batches already committed stay, so the load can be resumed after fixing that line: traces and
    spans are idempotent, and signals with an ``id`` too)."""
    totals = {"traces": 0, "spans": 0, "signals": 0}
    traces: list[TraceIn] = []
    signals: list[SignalIn] = []
    otlp: list[dict[str, Any]] = []

    def flush() -> None:
        if traces:
            result = ingest_traces(engine, project_id, traces)
            totals["traces"] += result["accepted"]
            totals["spans"] += result["spans_stored"]
            traces.clear()
        if otlp:
            totals["spans"] += write_spans(engine, project_id, otlp)
            otlp.clear()
        if signals:
            totals["signals"] += record_signals(engine, project_id, signals).accepted
            signals.clear()

    size = path.stat().st_size
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(f"ingest {path.name}", total=size)
        for number, line in _lines(path):
            try:
                document = json.loads(line)
                if not isinstance(document, dict):
                    raise ValueError("each line must be a JSON object")
                kind = _classify(document)
                if kind == "trace":
                    traces.append(TraceIn.model_validate(document))
                elif kind == "signal":
                    signals.append(SignalIn.model_validate(document))
                else:
                    records, problems = span_records(parse_request(line, JSON))
                    if problems:
                        raise ValueError("; ".join(problems))
                    otlp.extend(records)
            except (ValueError, ValidationError) as exc:
                raise ValidationFailed(f"{path}:{number}: {exc}", {"line": number}) from exc
            except ProdloopError as exc:
                raise ValidationFailed(f"{path}:{number}: {exc.message}", {"line": number}) from exc
            if len(traces) + len(signals) + len(otlp) >= batch_size:
                # Traces go first in flush, so signals in the same file find traces above them.
                flush()
            bar.update(task, advance=len(line))
        flush()
        bar.update(task, completed=size)
    return totals
