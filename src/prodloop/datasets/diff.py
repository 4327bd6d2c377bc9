"""What changed between two snapshots: rows added, removed and relabelled, field by field."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from prodloop.datasets.snapshots import get_snapshot, iter_row_texts


def _keyed(engine: sa.Engine, snapshot_id: str, by: str) -> dict[Any, dict[str, Any]]:
    """The rows of a snapshot by their key; a row that has no key of its own (no trace id, or a
    trace id taken by an earlier row) is keyed by its item."""
    rows: dict[Any, dict[str, Any]] = {}
    for _, text in iter_row_texts(engine, snapshot_id):
        row = json.loads(text)
        key = row.get(by)
        if key is None or key in rows:
            key = ("item", row["item_id"])
        rows[key] = row
    return rows


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {"item_id": row["item_id"], "trace_id": row.get("trace_id"), "label": row["label"]}


def diff_snapshots(engine: sa.Engine, project_id: int, a: str, b: str) -> dict[str, Any]:
    """Rows of ``b`` that ``a`` lacks (added), rows of ``a`` that ``b`` lacks (removed), rows in both
    whose final label differs (relabelled, with each changed field), and how many are unchanged.

    Rows are matched by queue item when both snapshots come from the same queue, and by trace id
    otherwise (rows without a trace id then only match themselves).
    """
    first = get_snapshot(engine, project_id, a)
    second = get_snapshot(engine, project_id, b)
    by = "item_id" if first["queue"] == second["queue"] else "trace_id"
    old = _keyed(engine, first["id"], by)
    new = _keyed(engine, second["id"], by)
    added = [_brief(new[key]) for key in new if key not in old]
    removed = [_brief(old[key]) for key in old if key not in new]
    relabelled = []
    unchanged = 0
    for key, before in old.items():
        after = new.get(key)
        if after is None:
            continue
        fields = sorted(set(before["label"]) | set(after["label"]))
        changes = [
            {"field": field, "a": before["label"].get(field), "b": after["label"].get(field)}
            for field in fields
            if before["label"].get(field) != after["label"].get(field)
        ]
        if changes:
            relabelled.append(
                {"item_id": after["item_id"], "trace_id": after.get("trace_id"), "changes": changes}
            )
        else:
            unchanged += 1
    summary = {key: first[key] for key in ("id", "name", "queue", "aggregation", "created_at")}
    return {
        "a": summary,
        "b": {key: second[key] for key in ("id", "name", "queue", "aggregation", "created_at")},
        "matched_by": by,
        "counts": {
            "added": len(added),
            "removed": len(removed),
            "relabelled": len(relabelled),
            "unchanged": unchanged,
        },
        "added": added,
        "removed": removed,
        "relabelled": relabelled,
    }
