"""Writing the demo scenario into the store: traces first, then the signals that name them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from prodloop.capture import native_span_records, record_signals, write_spans
from prodloop.demo.annotation import label_demo_queue
from prodloop.demo.monitoring import monitor_demo
from prodloop.demo.scenario import DemoTrace, generate_scenario
from prodloop.server.auth import ensure_project
from prodloop.store import read_transaction
from prodloop.store.schema import traces

TRACE_BATCH = 500
SIGNAL_BATCH = 2000


def has_traces(engine: sa.Engine) -> bool:
    """Whether the store holds any trace, in any project."""
    with read_transaction(engine) as connection:
        return connection.execute(sa.select(traces.c.trace_id).limit(1)).first() is not None


def _trace_count(engine: sa.Engine, project_id: int) -> int:
    with read_transaction(engine) as connection:
        query = sa.select(sa.func.count()).select_from(traces).where(traces.c.project_id == project_id)
        return int(connection.execute(query).scalar_one())


def _span_records(batch: Sequence[DemoTrace], now_ns: int) -> list[dict[str, Any]]:
    """The span records of demo traces, with the scenario's own root span ids, which its child spans
    name as their parent."""
    records: list[dict[str, Any]] = []
    for item in batch:
        _, trace_records = native_span_records(item.trace, now_ns)
        trace_records[0]["span_id"] = item.root_span_id
        records.extend(trace_records)
    return records


def load_demo(
    engine: sa.Engine,
    project: str = "default",
    seed: int = 7,
    days: int = 30,
    traces_per_day: int = 700,
    end: datetime | None = None,
    progress: bool = False,
    annotator_keys: Path | None = None,
    monitors: bool = True,
) -> dict[str, int]:
    """Generate the demo scenario (:mod:`prodloop.demo.scenario`) and store it in ``project``, then
    label a review queue of its answers (:mod:`prodloop.demo.annotation`), then create the demo's
    monitors and the runs a daily schedule would have made (:mod:`prodloop.demo.monitoring`; left
    out with ``monitors`` false).

    Returns how many traces, spans and signals were new: loading the same scenario again stores
    nothing twice and returns zeros. With ``annotator_keys``, the demo's annotators and reviewer get
    API keys, written to that file (mode 0600) and never printed.
    """
    project_id = ensure_project(engine, project)
    before = _trace_count(engine, project_id)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    totals = {"traces": 0, "spans": 0, "signals": 0}
    with Progress(*columns, disable=not progress, transient=False) as bar:
        generating = bar.add_task("generate demo scenario", total=None)
        scenario = generate_scenario(seed=seed, days=days, traces_per_day=traces_per_day, end=end)
        bar.update(generating, total=1, completed=1)
        task = bar.add_task("store traces", total=len(scenario.traces))
        now_ns = time.time_ns()
        for i in range(0, len(scenario.traces), TRACE_BATCH):
            batch = scenario.traces[i : i + TRACE_BATCH]
            totals["spans"] += write_spans(engine, project_id, _span_records(batch, now_ns))
            bar.update(task, advance=len(batch))
        task = bar.add_task("store signals", total=len(scenario.signals))
        for i in range(0, len(scenario.signals), SIGNAL_BATCH):
            signal_batch = scenario.signals[i : i + SIGNAL_BATCH]
            totals["signals"] += record_signals(engine, project_id, signal_batch).accepted
            bar.update(task, advance=len(signal_batch))
        label_demo_queue(engine, project, scenario, bar=bar, keys_file=annotator_keys)
        if monitors:
            monitor_demo(engine, project_id, scenario, bar=bar)
    totals["traces"] = _trace_count(engine, project_id) - before
    return totals
