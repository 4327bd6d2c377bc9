"""Re-hash a stored snapshot and say exactly what, if anything, no longer matches its id.

Verification reads data that may have been tampered with, so it parses every stored value defensively:
whatever shape it finds, it reports a problem rather than raising."""

from __future__ import annotations

import json
from collections.abc import Iterator
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
from prodloop.datasets.snapshots import READ_PAGE, resolve_snapshot
from prodloop.errors import ValidationFailed
from prodloop.store import read_transaction
from prodloop.store.schema import dataset_row_labels, dataset_rows

#: Problems listed in full; beyond this only their number is given.
_MAX_PROBLEMS = 100


def verify_snapshot(engine: sa.Engine, project_id: int, ref: str) -> dict[str, Any]:
    """Re-read a snapshot's manifest and rows, hash them again, and compare.

    Returns ``{"id", "ok", "rows_checked", "problems": [...]}``; each problem has a ``check`` (manifest,
    rows, row, labels), a message saying what differs, and for a row its ``position``, ``item_id`` and
    ``trace_id``. Malformed stored data (a manifest that is not an object, label ids that are not
    integers…) is reported as a problem, never raised.
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

    def problem(check: str, message: str, **where: Any) -> None:
        problems.append({"check": check, "message": message, **where})

    try:
        rehashed = snapshot_id(snapshot.manifest)
    except (ValidationFailed, TypeError, ValueError) as error:
        rehashed = f"(cannot be hashed: {getattr(error, 'message', error)})"
    if rehashed != snapshot.id:
        problem("manifest", f"the manifest hashes to {rehashed}, not to the snapshot id {snapshot.id}")
    if isinstance(snapshot.manifest, dict):
        manifest: dict[str, Any] = snapshot.manifest
    else:
        problem("manifest", f"the manifest is {_kind(snapshot.manifest)}, not a JSON object")
        manifest = {}
    if manifest.get("format_version") != FORMAT_VERSION:
        problem("manifest", f"format_version {manifest.get('format_version')!r} is not {FORMAT_VERSION}")
    if manifest.get("name") != snapshot.name:
        problem(
            "manifest",
            f"the snapshot record's name {snapshot.name!r} is not the manifest's name "
            f"{manifest.get('name')!r}",
        )

    hashes = manifest.get("row_hashes")
    if not isinstance(hashes, list):
        problem("manifest", f"the manifest's row_hashes is {_kind(hashes)}, not a list")
        hashes = []
    texts: list[str] = []
    seen_labels: set[int] = set()
    for expected, stored in enumerate(_stored_rows(engine, snapshot.id)):
        position, text = stored.position, stored.content
        texts.append(text)
        row = _parse(text)
        where = {
            "position": position,
            "item_id": row.get("item_id") if row else stored.item_id,
            "trace_id": row.get("trace_id") if row else stored.trace_id,
        }
        if position != expected:
            problem("rows", f"row {expected} is missing (the next stored row is {position})", **where)
        if row is None:
            problem("row", f"row {position} is not a valid JSON object", **where)
            continue
        item = f"item {row.get('item_id')}" + (f", trace {row['trace_id']}" if row.get("trace_id") else "")
        labels = _int_list(row.get("label_ids", []))
        if labels is None:
            problem(
                "row",
                f"row {position} ({item}) has label_ids {_shown(row.get('label_ids'))}, not a list of "
                "integers",
                **where,
            )
        else:
            seen_labels.update(labels)
        for column in ("item_id", "trace_id"):
            if stored._mapping[column] != row.get(column):
                problem(
                    "row",
                    f"row {position} ({item}) is stored with {column} {stored._mapping[column]!r} but its "
                    f"content says {row.get(column)!r}",
                    **where,
                )
        if position < len(hashes) and sha256_hex(text.encode("utf-8")) != hashes[position]:
            how = "" if is_canonical(text) else " (and is no longer in canonical form)"
            problem("row", f"row {position} ({item}) differs from what was hashed{how}", **where)
    if len(texts) != len(hashes):
        problem("rows", f"{len(texts)} rows are stored, the manifest lists {len(hashes)}")
    counts = manifest.get("counts")
    manifest_rows = counts.get("rows") if isinstance(counts, dict) else None
    if len(texts) != snapshot.row_count or manifest_rows != len(texts):
        problem(
            "rows",
            f"{len(texts)} rows are stored; the snapshot record says {snapshot.row_count} and the manifest "
            f"{manifest_rows}",
        )
    if rows_sha256(texts) != manifest.get("rows_sha256"):
        problem("rows", "the rows together hash to something other than the manifest's rows_sha256")

    listed = _int_list(manifest.get("label_ids", []))
    if listed is None:
        problem(
            "manifest",
            f"the manifest's label_ids is {_shown(manifest.get('label_ids'))}, not a list of integers",
        )
    else:
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


def _stored_rows(engine: sa.Engine, snapshot: str) -> Iterator[Any]:
    """Each stored row of a snapshot (position, item_id, trace_id, content), in order, a page at a time."""
    position = 0
    while True:
        with read_transaction(engine) as connection:
            page = connection.execute(
                sa.select(
                    dataset_rows.c.position,
                    dataset_rows.c.item_id,
                    dataset_rows.c.trace_id,
                    dataset_rows.c.content,
                )
                .where(dataset_rows.c.snapshot_id == snapshot, dataset_rows.c.position >= position)
                .order_by(dataset_rows.c.position)
                .limit(READ_PAGE)
            ).all()
        yield from page
        if len(page) < READ_PAGE:
            return
        position = page[-1].position + 1


def _parse(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
        canonical_json(value)
    except (ValueError, TypeError, ValidationFailed):
        return None
    return value if isinstance(value, dict) else None


def _int_list(value: Any) -> set[int] | None:
    """The integers of a JSON list of integers; None when ``value`` is anything else."""
    if value is None:
        return set()
    if not isinstance(value, list) or not all(
        isinstance(entry, int) and not isinstance(entry, bool) for entry in value
    ):
        return None
    return set(value)


def _kind(value: Any) -> str:
    if value is None:
        return "missing"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:59] + "…"


def _difference(a_name: str, a: set[int], b_name: str, b: set[int]) -> str:
    parts = []
    if extra := sorted(a - b):
        parts.append(f"label ids {extra[:10]} are in {a_name} but not in {b_name}")
    if missing := sorted(b - a):
        parts.append(f"label ids {missing[:10]} are in {b_name} but not in {a_name}")
    return "; ".join(parts)
