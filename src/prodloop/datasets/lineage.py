"""Lineage both ways: from a production trace to its labels, snapshots and checkpoints, and from a
checkpoint back to the exact labels (and the people) behind it.

The labels behind a snapshot are fixed when it is made (``dataset_row_labels``); since labels are
never changed or deleted, reading them back gives the very labels that were snapshotted, however many
corrections came later. Labels and queue items belong to :mod:`prodloop.annotation`, so they are read
through its functions, never from its tables.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import sqlalchemy as sa

from prodloop.capture.queries import iso
from prodloop.datasets.checkpoints import _checkpoint_row, _datasets_of, _view
from prodloop.errors import NotFound, ValidationFailed
from prodloop.store import read_transaction
from prodloop.store.schema import (
    checkpoint_datasets,
    checkpoints,
    dataset_row_labels,
    dataset_rows,
    dataset_snapshots,
)

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
#: What checkpoint lineage shows of each label (from :func:`prodloop.annotation.labels_by_ids`).
_LABEL_KEYS = (
    "id",
    "item_id",
    "trace_id",
    "annotator",
    "kind",
    "role",
    "schema",
    "value",
    "supersedes",
    "created_at",
)


def trace_lineage(engine: sa.Engine, project_id: int, trace_id: str) -> dict[str, Any]:
    """A trace's queue items, every version of their labels, the snapshots that hold it (with its
    row there), and the checkpoints trained or evaluated on those snapshots."""
    from prodloop.annotation import item_history, items_of_trace
    from prodloop.capture import trace_summaries

    trace_id = trace_id.strip().lower()
    if not _TRACE_ID.match(trace_id):
        raise ValidationFailed(f"{trace_id!r} is not a trace id (32 hex digits)", {"trace_id": trace_id})
    if not trace_summaries(engine, project_id, [trace_id]):
        raise NotFound(f"trace {trace_id} does not exist in this project", {"trace_id": trace_id})
    items = items_of_trace(engine, project_id, trace_id)
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(
                dataset_rows.c.snapshot_id,
                dataset_rows.c.position,
                dataset_rows.c.content,
                dataset_snapshots.c.name,
                dataset_snapshots.c.manifest,
                dataset_snapshots.c.created_ns,
            )
            .join(dataset_snapshots, dataset_snapshots.c.id == dataset_rows.c.snapshot_id)
            .where(dataset_snapshots.c.project_id == project_id, dataset_rows.c.trace_id == trace_id)
            .order_by(dataset_snapshots.c.created_ns, dataset_rows.c.snapshot_id, dataset_rows.c.position)
        ).all()
        used = connection.execute(
            sa.select(
                checkpoints.c.name,
                checkpoints.c.base_model,
                checkpoints.c.adapter,
                checkpoints.c.created_ns,
                checkpoint_datasets.c.snapshot_id,
                checkpoint_datasets.c.purpose,
            )
            .join(checkpoint_datasets, checkpoint_datasets.c.checkpoint_id == checkpoints.c.id)
            .where(
                checkpoints.c.project_id == project_id,
                checkpoint_datasets.c.snapshot_id.in_({row.snapshot_id for row in rows}),
            )
            .order_by(checkpoints.c.created_ns, checkpoints.c.name, checkpoint_datasets.c.purpose.desc())
        ).all()
    histories = [item_history(engine, project_id, item["item_id"]) for item in items]
    snapshots = []
    for row in rows:
        content = json.loads(row.content)
        snapshots.append(
            {
                "id": row.snapshot_id,
                "name": row.name,
                "queue": row.manifest.get("queue"),
                "aggregation": row.manifest.get("aggregation"),
                "created_at": iso(row.created_ns),
                "position": row.position,
                "item_id": content.get("item_id"),
                "label": content.get("label"),
                "label_ids": content.get("label_ids"),
            }
        )
    return {
        "trace_id": trace_id,
        "items": [
            {
                "item_id": item["item_id"],
                "queue": item["queue"],
                "status": item["status"],
                "labels": history["labels"],
            }
            for item, history in zip(items, histories, strict=True)
        ],
        "labels": [label for history in histories for label in history["labels"]],
        "snapshots": snapshots,
        "checkpoints": [
            {
                "name": row.name,
                "base_model": row.base_model,
                "adapter": row.adapter,
                "snapshot_id": row.snapshot_id,
                "purpose": row.purpose,
                "created_at": iso(row.created_ns),
            }
            for row in used
        ],
    }


def checkpoint_lineage(engine: sa.Engine, project_id: int, name: str) -> dict[str, Any]:
    """A checkpoint's snapshots and the exact labels behind them: each label's id, item, trace,
    annotator (name and kind), role, schema version, value and time, and which snapshots (and so
    which purposes) it reached the checkpoint through; with a count per annotator."""
    from prodloop.annotation import labels_by_ids

    with read_transaction(engine) as connection:
        checkpoint = _checkpoint_row(connection, project_id, name)
        datasets = _datasets_of(connection, [checkpoint.id]).get(checkpoint.id, [])
        snapshot_ids = {entry["snapshot_id"] for entry in datasets}
        links = connection.execute(
            sa.select(dataset_row_labels.c.label_id, dataset_row_labels.c.snapshot_id)
            .where(dataset_row_labels.c.snapshot_id.in_(snapshot_ids))
            .order_by(dataset_row_labels.c.label_id, dataset_row_labels.c.snapshot_id)
        ).all()
    purposes: dict[str, list[str]] = {}
    for dataset in datasets:
        purposes.setdefault(dataset["snapshot_id"], []).append(dataset["purpose"])
    through: dict[int, list[str]] = {}
    for link in links:
        through.setdefault(link.label_id, []).append(link.snapshot_id)
    found = [
        {
            **{key: label[key] for key in _LABEL_KEYS},
            "snapshots": through[label["id"]],
            "purposes": sorted(
                {purpose for snapshot in through[label["id"]] for purpose in purposes[snapshot]}, reverse=True
            ),
        }
        for label in labels_by_ids(engine, project_id, through)
    ]
    people = Counter((entry["annotator"], entry["kind"]) for entry in found)
    return {
        "checkpoint": _view(checkpoint, datasets),
        "datasets": datasets,
        "labels": found,
        "annotators": [
            {"name": person, "kind": kind, "labels": count}
            for (person, kind), count in sorted(people.items())
        ],
        "counts": {
            "snapshots": len(datasets),
            "labels": len(found),
            "annotators": len(people),
            "traces": len({entry["trace_id"] for entry in found if entry["trace_id"]}),
        },
    }
