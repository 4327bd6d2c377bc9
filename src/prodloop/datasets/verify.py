"""Re-hash a stored snapshot and say exactly what, if anything, no longer matches its id."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from prodloop.datasets.content import (
    FORMAT_VERSION,
    canonical_json,
    is_canonical,
    rows_sha256,
    sha256_hex,
    snapshot_id,
)
from prodloop.datasets.snapshots import iter_row_texts, resolve_snapshot
from prodloop.errors import ValidationFailed
from prodloop.store import read_transaction
from prodloop.store.schema import dataset_row_labels

#: Problems listed in full; beyond this only their number is given.
_MAX_PROBLEMS = 100


def verify_snapshot(engine: sa.Engine, project_id: int, ref: str) -> dict[str, Any]:
    """Re-read a snapshot's manifest and rows, hash them again, and compare.

    Returns ``{"id", "ok", "rows_checked", "problems": [...]}``; each problem has a ``check`` (manifest,
    rows, row, labels), a message saying what differs, and for a row its ``position``, ``item_id`` and
    ``trace_id``.
    """
    with read_transaction(engine) as connection:
        snapshot = resolve_snapshot(connection, project_id, ref)
        linked = set(
            connection.execute(
                sa.select(dataset_row_labels.c.label_id).where(
                    dataset_row_labels.c.snapshot_id == snapshot.id
                )
            ).scalars()
        )
    problems: list[dict[str, Any]] = []
    manifest = snapshot.manifest

    def problem(check: str, message: str, **where: Any) -> None:
        problems.append({"check": check, "message": message, **where})

    try:
        rehashed = snapshot_id(manifest)
    except ValidationFailed as error:
        rehashed = f"(cannot be hashed: {error.message})"
    if rehashed != snapshot.id:
        problem("manifest", f"the manifest hashes to {rehashed}, not to the snapshot id {snapshot.id}")
    if manifest.get("format_version") != FORMAT_VERSION:
        problem("manifest", f"format_version {manifest.get('format_version')!r} is not {FORMAT_VERSION}")

    hashes = list(manifest.get("row_hashes") or [])
    texts: list[str] = []
    seen_labels: set[int] = set()
    for expected, (position, text) in enumerate(iter_row_texts(engine, snapshot.id)):
        texts.append(text)
        row = _parse(text)
        where = {
            "position": position,
            "item_id": row.get("item_id") if row else None,
            "trace_id": row.get("trace_id") if row else None,
        }
        if position != expected:
            problem("rows", f"row {expected} is missing (the next stored row is {position})", **where)
        if row is None:
            problem("row", f"row {position} is not valid JSON", **where)
            continue
        seen_labels.update(int(label) for label in row.get("label_ids") or [])
        if position < len(hashes) and sha256_hex(text.encode("utf-8")) != hashes[position]:
            item = f"item {row.get('item_id')}" + (
                f", trace {row['trace_id']}" if row.get("trace_id") else ""
            )
            how = "" if is_canonical(text) else " (and is no longer in canonical form)"
            problem("row", f"row {position} ({item}) differs from what was hashed{how}", **where)
    if len(texts) != len(hashes):
        problem("rows", f"{len(texts)} rows are stored, the manifest lists {len(hashes)}")
    if len(texts) != snapshot.row_count or (manifest.get("counts") or {}).get("rows") != len(texts):
        problem(
            "rows",
            f"{len(texts)} rows are stored; the snapshot record says {snapshot.row_count} and the manifest "
            f"{(manifest.get('counts') or {}).get('rows')}",
        )
    if rows_sha256(texts) != manifest.get("rows_sha256"):
        problem("rows", "the rows together hash to something other than the manifest's rows_sha256")

    listed = {int(label) for label in manifest.get("label_ids") or []}
    if seen_labels != listed:
        problem("labels", _difference("the rows", seen_labels, "the manifest", listed))
    if linked != listed:
        problem("labels", _difference("the label links", linked, "the manifest", listed))

    return {
        "id": snapshot.id,
        "ok": not problems,
        "rows_checked": len(texts),
        "problems": problems[:_MAX_PROBLEMS],
        "more_problems": max(0, len(problems) - _MAX_PROBLEMS),
    }


def _parse(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
        canonical_json(value)
    except (ValueError, ValidationFailed):
        return None
    return value if isinstance(value, dict) else None


def _difference(a_name: str, a: set[int], b_name: str, b: set[int]) -> str:
    parts = []
    if extra := sorted(a - b):
        parts.append(f"label ids {extra[:10]} are in {a_name} but not in {b_name}")
    if missing := sorted(b - a):
        parts.append(f"label ids {missing[:10]} are in {b_name} but not in {a_name}")
    return "; ".join(parts)
