"""Immutable dataset snapshots of a queue's final labels.

``snapshot_queue`` turns a queue's labelled items into rows (input, output, final label with its
confidence, each annotator's label, the ids of the labels behind it, the trace id) and a manifest
(schema versions, annotators, label ids, aggregation, filters, counts, and the hashes of the rows).
The id is the hash of that content (see :mod:`prodloop.datasets.content`), so snapshotting the same
labels again stores nothing new and answers with the snapshot already there.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal

import sqlalchemy as sa

from prodloop.capture.queries import iso
from prodloop.datasets.content import FORMAT_VERSION, row_text, rows_sha256, sha256_hex, snapshot_id
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.store import dialect_insert, read_transaction, run_write
from prodloop.store.schema import dataset_row_labels, dataset_rows, dataset_snapshots

Aggregation = Literal["majority", "dawid-skene", "adjudicated"]
AGGREGATIONS: tuple[str, ...] = ("majority", "dawid-skene", "adjudicated")

#: Rows (and label links) written per statement.
_CHUNK = 500
#: Rows read per query when streaming a snapshot.
READ_PAGE = 1000
#: Shortest snapshot id prefix accepted in place of the whole id.
MIN_PREFIX = 8
#: Digits kept of a confidence, so that a rebuild on another machine hashes the same.
_CONFIDENCE_DIGITS = 6

_HEX = re.compile(r"^[0-9a-f]+$")


# --------------------------------------------------------------------------------------------------
# Finding a snapshot


def resolve_snapshot(connection: sa.Connection, project_id: int, ref: str) -> Any:
    """The snapshot row that ``ref`` names: its whole id, or a unique prefix of at least 8 hex digits."""
    ref = ref.strip().lower()
    if len(ref) < MIN_PREFIX or len(ref) > 64 or not _HEX.match(ref):
        raise ValidationFailed(
            f"snapshot id {ref!r} is not a snapshot id: give the 64 hex digits, or at least the first "
            f"{MIN_PREFIX} (`prodloop dataset ls` lists them)",
            {"snapshot": ref},
        )
    query = sa.select(dataset_snapshots).where(dataset_snapshots.c.project_id == project_id)
    if len(ref) == 64:
        query = query.where(dataset_snapshots.c.id == ref)
    else:
        query = query.where(dataset_snapshots.c.id.startswith(ref, autoescape=True))
    rows = connection.execute(query.order_by(dataset_snapshots.c.id).limit(10)).all()
    if not rows:
        raise NotFound(
            f"snapshot {ref} does not exist in this project; `prodloop dataset ls` lists them",
            {"snapshot": ref},
        )
    if len(rows) > 1:
        raise Conflict(
            f"snapshot id prefix {ref} matches {len(rows)} snapshots; give more digits",
            {"snapshot": ref, "matches": [row.id for row in rows]},
        )
    return rows[0]


def _summary(row: Any) -> dict[str, Any]:
    manifest = row.manifest
    return {
        "id": row.id,
        "name": row.name,
        "queue": manifest.get("queue"),
        "aggregation": manifest.get("aggregation"),
        "counts": manifest.get("counts"),
        "created_at": iso(row.created_ns),
        "created_by": row.created_by,
    }


def _view(row: Any) -> dict[str, Any]:
    return {**_summary(row), "manifest": row.manifest}


def get_snapshot(engine: sa.Engine, project_id: int, ref: str) -> dict[str, Any]:
    """A snapshot: its id, name, when and by whom it was made, and its whole manifest."""
    with read_transaction(engine) as connection:
        return _view(resolve_snapshot(connection, project_id, ref))


def list_snapshots(
    engine: sa.Engine, project_id: int, name: str | None = None, queue: str | None = None
) -> list[dict[str, Any]]:
    """The project's snapshots, newest first (without their manifests' long lists)."""
    query = sa.select(dataset_snapshots).where(dataset_snapshots.c.project_id == project_id)
    if name is not None:
        query = query.where(dataset_snapshots.c.name == name)
    with read_transaction(engine) as connection:
        rows = connection.execute(
            query.order_by(dataset_snapshots.c.created_ns.desc(), dataset_snapshots.c.id)
        ).all()
    found = [_summary(row) for row in rows]
    return [entry for entry in found if queue is None or entry["queue"] == queue]


def iter_row_texts(engine: sa.Engine, snapshot: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """``(position, canonical JSON text)`` of each row of a snapshot (by its whole id), in order,
    read a page at a time."""
    position = start
    while True:
        with read_transaction(engine) as connection:
            page = connection.execute(
                sa.select(dataset_rows.c.position, dataset_rows.c.content)
                .where(dataset_rows.c.snapshot_id == snapshot, dataset_rows.c.position >= position)
                .order_by(dataset_rows.c.position)
                .limit(READ_PAGE)
            ).all()
        yield from ((row.position, row.content) for row in page)
        if len(page) < READ_PAGE:
            return
        position = page[-1].position + 1


def snapshot_rows(
    engine: sa.Engine, project_id: int, ref: str, offset: int = 0, limit: int = 100
) -> dict[str, Any]:
    """One page of a snapshot's rows, in order, each with its position."""
    if offset < 0 or not 1 <= limit <= 1000:
        raise ValidationFailed(
            f"offset must be 0 or more and limit 1 to 1000 (got offset {offset}, limit {limit})"
        )
    with read_transaction(engine) as connection:
        snapshot = resolve_snapshot(connection, project_id, ref)
        page = connection.execute(
            sa.select(dataset_rows.c.position, dataset_rows.c.content)
            .where(dataset_rows.c.snapshot_id == snapshot.id, dataset_rows.c.position >= offset)
            .order_by(dataset_rows.c.position)
            .limit(limit)
        ).all()
    rows = [{"position": row.position, **json.loads(row.content)} for row in page]
    following = offset + len(rows)
    return {
        "id": snapshot.id,
        "total": snapshot.row_count,
        "offset": offset,
        "limit": limit,
        "next_offset": following if following < snapshot.row_count else None,
        "rows": rows,
    }


# --------------------------------------------------------------------------------------------------
# Building a snapshot


def _confidence(value: float | None) -> float | None:
    return None if value is None else round(float(value), _CONFIDENCE_DIGITS)


def dataset_row(final: dict[str, Any]) -> dict[str, Any]:
    """A snapshot row from one entry of :func:`prodloop.annotation.quality.final_labels`."""
    behind = labels_behind(final)
    return {
        "item_id": final["item_id"],
        "trace_id": final["trace_id"],
        "input": final["input"],
        "output": final["output"],
        "context": final["context"],
        "metadata": final["metadata"],
        "label": final["value"],
        "confidence": {field: _confidence(value) for field, value in final["confidence"].items()},
        "source": final["source"],
        "annotators": {
            label["annotator"]: label["value"] for label in behind if label.get("role") != "adjudication"
        },
        "label_ids": sorted(int(label["id"]) for label in behind),
    }


def labels_behind(final: dict[str, Any]) -> list[dict[str, Any]]:
    """The labels that a final value comes from: the annotators' labels, and the reviewer's
    adjudication where the value was taken from it (not where a vote decided)."""
    adjudicated = "adjudication" in final["source"].values()
    return [label for label in final["labels"] if label.get("role") != "adjudication" or adjudicated]


def _schema_order(ref: str) -> tuple[str, int]:
    name, _, version = ref.rpartition("@")
    return name, int(version) if version.isdigit() else 0


def build_manifest(
    name: str, queue: str, aggregation: str, finals: list[dict[str, Any]], texts: list[str]
) -> dict[str, Any]:
    """The manifest of a snapshot whose rows come from ``finals`` and are written as ``texts``."""
    people: dict[str, dict[str, Any]] = {}
    counted: Counter[str] = Counter()
    label_ids: set[int] = set()
    schemas: set[str] = set()
    for final in finals:
        for label in labels_behind(final):
            label_ids.add(int(label["id"]))
            schemas.add(label["schema"])
            people.setdefault(label["annotator"], {"name": label["annotator"], "kind": label["kind"]})
            counted[label["annotator"]] += 1
    annotators = [{**people[person], "labels": counted[person]} for person in sorted(people)]
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "queue": queue,
        "aggregation": aggregation,
        "filters": {
            "gold_items": "excluded",
            "items": "done" if aggregation == "adjudicated" else "labelled",
        },
        "schema_versions": sorted(schemas, key=_schema_order),
        "counts": {"rows": len(texts), "labels": len(label_ids), "annotators": len(annotators)},
        "annotators": annotators,
        "label_ids": sorted(label_ids),
        "rows_sha256": rows_sha256(texts),
        "row_hashes": [sha256_hex(text.encode("utf-8")) for text in texts],
    }


def snapshot_queue(
    engine: sa.Engine,
    project_id: int,
    queue: str | int,
    name: str,
    aggregation: str = "majority",
    created_by: str | None = None,
) -> dict[str, Any]:
    """Snapshot the final labels of ``queue`` (aggregated by ``aggregation``) as dataset ``name``.

    Returns the snapshot (id, name, manifest…) with ``created``: false when a snapshot with the same
    content was already stored, which is then returned as it is. The snapshot is written in one
    transaction: all of it, or (on any failure) nothing.
    """
    from prodloop.annotation import final_labels, get_queue

    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("a snapshot name needs 1 to 200 characters", {"name": name})
    if aggregation not in AGGREGATIONS:
        raise ValidationFailed(
            f"aggregation {aggregation!r} is not one of {', '.join(AGGREGATIONS)}",
            {"aggregation": aggregation},
        )
    q = get_queue(engine, project_id, queue)
    finals = final_labels(engine, project_id, q["id"], aggregation)  # type: ignore[arg-type]
    if not finals:
        which = "done (agreed or adjudicated)" if aggregation == "adjudicated" else "labelled"
        raise ValidationFailed(
            f"queue {q['name']!r} has no {which} items to snapshot; label some first",
            {"queue": q["name"], "aggregation": aggregation},
        )
    finals.sort(key=lambda final: final["item_id"])
    rows = [dataset_row(final) for final in finals]
    texts = [row_text(row) for row in rows]
    manifest = build_manifest(name, q["name"], aggregation, finals, texts)
    new_id = snapshot_id(manifest)

    def write(connection: sa.Connection) -> dict[str, Any]:
        existing = _existing(connection, project_id, new_id)
        if existing is not None:
            return {**_view(existing), "created": False}
        insert = dialect_insert(connection, dataset_snapshots).values(
            id=new_id,
            project_id=project_id,
            name=name,
            queue_id=q["id"],
            manifest=manifest,
            row_count=len(rows),
            created_by=created_by,
            created_ns=time.time_ns(),
        )
        inserted = connection.execute(
            insert.on_conflict_do_nothing(index_elements=["id"]).returning(dataset_snapshots.c.id)
        ).first()
        if inserted is None:
            # The same snapshot, written at the same moment by someone else (PostgreSQL waited for it).
            return {**_view(_existing(connection, project_id, new_id)), "created": False}
        records = [
            {
                "snapshot_id": new_id,
                "position": position,
                "item_id": row["item_id"],
                "trace_id": row["trace_id"],
                "content": text,
            }
            for position, (row, text) in enumerate(zip(rows, texts, strict=True))
        ]
        for start in range(0, len(records), _CHUNK):
            connection.execute(dataset_rows.insert(), records[start : start + _CHUNK])
        links = [{"snapshot_id": new_id, "label_id": label_id} for label_id in manifest["label_ids"]]
        for start in range(0, len(links), _CHUNK):
            connection.execute(dataset_row_labels.insert(), links[start : start + _CHUNK])
        stored = connection.execute(sa.select(dataset_snapshots).where(dataset_snapshots.c.id == new_id))
        return {**_view(stored.one()), "created": True}

    return run_write(engine, write)


def _existing(connection: sa.Connection, project_id: int, snapshot: str) -> Any:
    row = connection.execute(sa.select(dataset_snapshots).where(dataset_snapshots.c.id == snapshot)).first()
    if row is not None and row.project_id != project_id:
        raise Conflict(
            f"a snapshot with id {snapshot} exists in another project; snapshot ids are content hashes "
            "and the store keeps each once",
            {"snapshot": snapshot},
        )
    return row
