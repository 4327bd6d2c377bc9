"""Trace attributes as columns for the drift tests, and which values a drift is made of.

Any attribute of a trace's root span (``support.route``, ``support.channel``) is a column: its values
for the traces of a window, one per trace. When such a column drifts, :func:`value_shifts` says which
values grew and shrank, and :func:`ranked_by_shift` orders the current traces so that those with the
most over-represented values come first, for routing to a queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from prodloop.capture.queries import to_ns
from prodloop.store import read_transaction
from prodloop.store.schema import spans, traces

#: Most traces a window reads for column drift (the newest are kept).
MAX_ROWS = 200_000


@dataclass(frozen=True)
class Window:
    """The traces of a feature in ``[since, until)``, or of a release up to ``until``."""

    since: datetime | None
    until: datetime
    release: str | None = None


@dataclass(frozen=True)
class AttributeColumns:
    trace_ids: list[str]
    start_ns: np.ndarray
    columns: dict[str, np.ndarray]


def attribute_columns(
    engine: sa.Engine, project_id: int, feature: str, window: Window, attributes: list[str]
) -> AttributeColumns:
    """The root-span ``attributes`` of the feature's traces in ``window``, one object array per
    attribute (``None`` where a trace does not have it)."""
    where: list[sa.ColumnElement[bool]] = [
        traces.c.project_id == project_id,
        traces.c.feature == feature,
        traces.c.start_ns < to_ns(window.until),
    ]
    if window.since is not None:
        where.append(traces.c.start_ns >= to_ns(window.since))
    if window.release is not None:
        where.append(traces.c.release == window.release)
    root = sa.and_(
        spans.c.project_id == traces.c.project_id,
        spans.c.trace_id == traces.c.trace_id,
        spans.c.span_id == traces.c.root_span_id,
    )
    values = [spans.c.attributes[name].as_string().label(f"a{i}") for i, name in enumerate(attributes)]
    query = (
        sa.select(traces.c.trace_id, traces.c.start_ns, *values)
        .select_from(traces.outerjoin(spans, root))
        .where(*where)
        .order_by(traces.c.start_ns.desc())
        .limit(MAX_ROWS)
    )
    with read_transaction(engine) as connection:
        rows = connection.execute(query).all()
    columns = {
        name: np.array([row[2 + i] for row in rows], dtype=object) for i, name in enumerate(attributes)
    }
    return AttributeColumns(
        [row.trace_id for row in rows], np.array([row.start_ns for row in rows], dtype=np.int64), columns
    )


def value_shifts(reference: np.ndarray, current: np.ndarray, top: int = 10) -> list[dict[str, Any]]:
    """Each value's share in the reference and now, largest absolute change first."""
    ref_values, ref_counts = np.unique(reference.astype(str), return_counts=True)
    cur_values, cur_counts = np.unique(current.astype(str), return_counts=True)
    ref_share = dict(zip(ref_values.tolist(), (ref_counts / max(1, len(reference))).tolist(), strict=True))
    cur_share = dict(zip(cur_values.tolist(), (cur_counts / max(1, len(current))).tolist(), strict=True))
    shifts = [
        {
            "value": value,
            "reference_share": ref_share.get(value, 0.0),
            "current_share": cur_share.get(value, 0.0),
            "change": cur_share.get(value, 0.0) - ref_share.get(value, 0.0),
        }
        for value in set(ref_share) | set(cur_share)
    ]
    shifts.sort(key=lambda s: (-abs(s["change"]), s["value"]))
    return shifts[:top]


def ranked_by_shift(
    trace_ids: list[str], reference: np.ndarray, current: np.ndarray, limit: int = 500
) -> tuple[list[str], dict[str, str]]:
    """Current trace ids ordered by how over-represented their value is now (the ratio of its current
    share to its reference share, smoothed so a new value ranks first), and each trace's value as its
    stratum."""
    ref_values, ref_counts = np.unique(reference.astype(str), return_counts=True)
    cur_text = current.astype(str)
    cur_values, cur_counts = np.unique(cur_text, return_counts=True)
    ref_share = dict(zip(ref_values.tolist(), (ref_counts / max(1, len(reference))).tolist(), strict=True))
    floor = 0.5 / max(1, len(reference))  # half an observation: a value never seen before is "new"
    ratio = {
        value: (count / len(current)) / max(ref_share.get(value, 0.0), floor)
        for value, count in zip(cur_values.tolist(), cur_counts.tolist(), strict=True)
    }
    order = sorted(range(len(trace_ids)), key=lambda i: (-ratio[cur_text[i]], i))
    over = [i for i in order if ratio[cur_text[i]] > 1.0][:limit]
    return [trace_ids[i] for i in over], {trace_ids[i]: str(cur_text[i]) for i in over}
