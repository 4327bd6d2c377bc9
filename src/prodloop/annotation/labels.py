"""Append-only labels: corrections, history, disagreement and adjudication.

A label is never updated or deleted. A correction is a new label that names the one it supersedes,
with who wrote it, when and why; a label can be superseded once, so an annotator's answers on an item
form one chain whose last link is the current answer. A reviewer's final value for an item is a label
of role ``adjudication``, kept the same way.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from prodloop.annotation.queues import _item_and_queue, _queue_row, item_view
from prodloop.annotation.schema_store import schema_by_id, schema_id
from prodloop.annotation.schemas import LabelSchema, validate_label
from prodloop.capture.queries import iso
from prodloop.errors import Conflict, Forbidden, NotFound, ValidationFailed
from prodloop.store import is_sqlite, read_transaction, run_write
from prodloop.store.schema import annotators, escalations, label_schemas, labels, queue_items, queues, skips

#: Field types whose answers are compared for agreement; free text is not.
DISCRETE_TYPES = frozenset({"categorical", "multi_label", "ordinal", "pairwise", "numeric"})


def _comparable(value: Any) -> Any:
    return frozenset(value) if isinstance(value, list) else value  # multi-label answers are sets


def label_dict(row: Any, schema_ref: str, names: dict[int, str] | None = None) -> dict[str, Any]:
    names = names or {}
    return {
        "id": row.id,
        "item_id": row.item_id,
        "trace_id": row.trace_id,
        "annotator_id": row.annotator_id,
        "annotator": names.get(row.annotator_id),
        "author_id": row.author_id or row.annotator_id,
        "author": names.get(row.author_id or row.annotator_id),
        "role": row.role,
        "schema": schema_ref,
        "value": row.value,
        "supersedes": row.supersedes_id,
        "reason": row.reason,
        "duration_ms": row.duration_ms,
        "created_ns": row.created_ns,
        "created_at": iso(row.created_ns),
    }


def _current() -> sa.ColumnElement[bool]:
    newer = labels.alias("newer")
    return ~sa.exists().where(newer.c.supersedes_id == labels.c.id)


# --------------------------------------------------------------------------------------------------
# Disagreement


def disagreeing_fields(
    schema: LabelSchema, values: Sequence[dict[str, Any]], rule: str, threshold: float
) -> list[str]:
    """The fields on which ``values`` (one dict per annotator) disagree under the queue's rule:
    ``unanimity`` (any difference) or ``majority`` (the top answer's share is below ``threshold``)."""
    fields = []
    for spec in schema.fields:
        if spec.type not in DISCRETE_TYPES:
            continue
        answers = Counter(_comparable(value.get(spec.name)) for value in values)
        if len(answers) <= 1:
            continue
        top_share = answers.most_common(1)[0][1] / len(values)
        if rule == "unanimity" or top_share < threshold:
            fields.append(spec.name)
    return fields


def _current_values(connection: sa.Connection, item_id: int, role: str = "annotation") -> Sequence[Any]:
    return connection.execute(
        sa.select(labels)
        .where(labels.c.item_id == item_id, labels.c.role == role, _current())
        .order_by(labels.c.id)
    ).all()


def settle_item(connection: sa.Connection, queue: Any, item_id: int, schema: LabelSchema) -> str:
    """The status of an item whose labels are all in: ``review`` if they disagree under the queue's
    rule or someone escalated it, else ``done``."""
    rows = _current_values(connection, item_id)
    disagree = disagreeing_fields(
        schema, [row.value for row in rows], queue.disagreement_rule, queue.disagreement_threshold
    )
    escalated = connection.execute(
        sa.select(escalations.c.id)
        .where(escalations.c.item_id == item_id, escalations.c.resolved_ns.is_(None))
        .limit(1)
    ).first()
    return "review" if disagree or escalated is not None else "done"


def _lock_item(connection: sa.Connection, item_id: int) -> Any:
    query = sa.select(queue_items).where(queue_items.c.id == item_id)
    if not is_sqlite(connection):  # SQLite's writer already runs one write at a time
        query = query.with_for_update()
    return connection.execute(query).one()


def _resettle(connection: sa.Connection, queue: Any, item_id: int, schema: LabelSchema) -> None:
    """After a correction: an item with all its labels and no adjudication moves between ``review``
    and ``done`` as its current labels now agree or not."""
    item = _lock_item(connection, item_id)
    if item.gold is not None or item.n_labels < queue.overlap:
        return
    adjudicated = _current_values(connection, item_id, role="adjudication")
    if adjudicated:
        return
    status = settle_item(connection, queue, item_id, schema)
    if status != item.status:
        connection.execute(
            queue_items.update()
            .where(queue_items.c.id == item_id)
            .values(status=status, completed_ns=time.time_ns() if status == "done" else None)
        )


# --------------------------------------------------------------------------------------------------
# Corrections and history


@dataclass(frozen=True)
class Author:
    """Who writes a label: an annotator, and whether they may correct other people's labels."""

    annotator_id: int
    reviewer: bool = False


def correct_label(
    engine: sa.Engine, project_id: int, label_id: int, author: Author, value: dict[str, Any], reason: str
) -> dict[str, Any]:
    """A new label that supersedes ``label_id``: the annotator's own correction, or a reviewer's.

    409 if ``label_id`` was already superseded (naming the current label); 403 for someone else's
    label without review rights; 422 if the value breaks the schema or there is no reason.
    """
    if not reason or not reason.strip():
        raise ValidationFailed("a correction needs a reason: say why the label changes", {"label": label_id})

    with read_transaction(engine) as connection:
        old = connection.execute(
            sa.select(labels).where(labels.c.id == label_id, labels.c.project_id == project_id)
        ).first()
        if old is None:
            raise NotFound(f"label {label_id} does not exist in this project", {"label": label_id})
        queue = connection.execute(sa.select(queues).where(queues.c.id == old.queue_id)).one()
        schema = schema_by_id(connection, queue.schema_id)
    if old.annotator_id != author.annotator_id and not author.reviewer:
        raise Forbidden("only the label's annotator or a reviewer may correct it", {"label": label_id})
    checked = validate_label(schema, value)

    def write(connection: sa.Connection) -> dict[str, Any]:
        current = label_id
        while True:  # to the end of the chain: the label to correct instead
            newer = connection.execute(
                sa.select(labels.c.id).where(labels.c.supersedes_id == current)
            ).scalar()
            if newer is None:
                break
            current = int(newer)
        if current != label_id:
            raise Conflict(
                f"label {label_id} was already superseded; its current version is label {current}; "
                "correct that one",
                {"label": label_id, "current": current},
            )
        try:
            new_id = connection.execute(
                labels.insert()
                .values(
                    project_id=project_id,
                    queue_id=old.queue_id,
                    item_id=old.item_id,
                    trace_id=old.trace_id,
                    annotator_id=old.annotator_id,
                    author_id=author.annotator_id if author.annotator_id != old.annotator_id else None,
                    role=old.role,
                    schema_id=queue.schema_id,
                    value=checked,
                    supersedes_id=label_id,
                    reason=reason.strip(),
                    created_ns=time.time_ns(),
                )
                .returning(labels.c.id)
            ).scalar_one()
        except sa.exc.IntegrityError:
            raise Conflict(
                f"label {label_id} was superseded at the same moment; reload it", {"label": label_id}
            ) from None
        if old.role == "annotation":
            _resettle(connection, queue, old.item_id, schema)
        row = connection.execute(sa.select(labels).where(labels.c.id == new_id)).one()
        return label_dict(row, schema.ref)

    return run_write(engine, write)


def _names(connection: sa.Connection, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(
        connection.execute(
            sa.select(annotators.c.id, annotators.c.name).where(annotators.c.id.in_(ids))
        ).all()
    )


def _schema_refs(connection: sa.Connection, ids: set[int]) -> dict[int, str]:
    rows = connection.execute(
        sa.select(label_schemas.c.id, label_schemas.c.name, label_schemas.c.version).where(
            label_schemas.c.id.in_(ids)
        )
    )
    return {row.id: f"{row.name}@{row.version}" for row in rows}


def item_history(
    engine: sa.Engine, project_id: int, item_id: int, only_annotator: int | None = None
) -> dict[str, Any]:
    """Every label version of an item, oldest first, with skips and escalations. With
    ``only_annotator`` (an annotator's own key: blind), only that annotator's labels are shown."""
    with read_transaction(engine) as connection:
        item = connection.execute(
            sa.select(queue_items).where(queue_items.c.id == item_id, queue_items.c.project_id == project_id)
        ).first()
        if item is None:
            raise NotFound(f"item {item_id} does not exist in this project", {"item": item_id})
        query = sa.select(labels, _current().label("is_current")).where(labels.c.item_id == item_id)
        notes = sa.select(escalations).where(escalations.c.item_id == item_id)
        if only_annotator is not None:
            query = query.where(labels.c.annotator_id == only_annotator)
            notes = notes.where(escalations.c.annotator_id == only_annotator)
        rows = connection.execute(query.order_by(labels.c.created_ns, labels.c.id)).all()
        escalated = connection.execute(notes.order_by(escalations.c.id)).all()
        skipped = connection.execute(sa.select(skips).where(skips.c.item_id == item_id)).all()
        if only_annotator is not None:
            skipped = [row for row in skipped if row.annotator_id == only_annotator]
        people = {row.annotator_id for row in rows} | {row.author_id for row in rows if row.author_id}
        people |= {row.annotator_id for row in escalated} | {row.annotator_id for row in skipped}
        names = _names(connection, people)
        refs = _schema_refs(connection, {row.schema_id for row in rows})
    versions = []
    for row in rows:
        shape = label_dict(row, refs[row.schema_id], names)
        shape["current"] = bool(row.is_current)
        versions.append(shape)
    return {
        "item_id": item_id,
        "trace_id": item.trace_id,
        # An annotator's own history leaves the item's status out: it would tell what others answered.
        "status": item.status if only_annotator is None else None,
        "labels": versions,
        "escalations": [_escalation_dict(row, names) for row in escalated],
        "skips": [
            {
                "annotator": names.get(row.annotator_id),
                "reason": row.reason,
                "created_at": iso(row.created_ns),
            }
            for row in skipped
        ],
    }


def _escalation_dict(row: Any, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "item_id": row.item_id,
        "annotator": names.get(row.annotator_id),
        "field": row.field,
        "note": row.note,
        "created_at": iso(row.created_ns),
        "resolved": row.resolved_ns is not None,
    }


# --------------------------------------------------------------------------------------------------
# Adjudication


def items_for_review(engine: sa.Engine, project_id: int, queue: str | int, limit: int = 50) -> dict[str, Any]:
    """Items waiting for a reviewer (labels disagree, or someone escalated them), each with every
    current label side by side, the fields that disagree, and the escalation notes; plus the
    schema and its guidelines."""
    with read_transaction(engine) as connection:
        q = _queue_row(connection, project_id, queue)
        schema = schema_by_id(connection, q.schema_id)
        escalated = sa.exists().where(
            escalations.c.item_id == queue_items.c.id, escalations.c.resolved_ns.is_(None)
        )
        adjudicated = sa.exists().where(labels.c.item_id == queue_items.c.id, labels.c.role == "adjudication")
        waiting = sa.and_(
            queue_items.c.queue_id == q.id,
            sa.or_(queue_items.c.status == "review", sa.and_(escalated, ~adjudicated)),
        )
        total = connection.execute(sa.select(sa.func.count()).where(waiting)).scalar_one()
        items = connection.execute(
            sa.select(queue_items)
            .where(waiting)
            .order_by(queue_items.c.priority.desc(), queue_items.c.id)
            .limit(limit)
        ).all()
        ids = [row.id for row in items]
        current = connection.execute(
            sa.select(labels)
            .where(labels.c.item_id.in_(ids), labels.c.role == "annotation", _current())
            .order_by(labels.c.id)
        ).all()
        notes = connection.execute(
            sa.select(escalations).where(escalations.c.item_id.in_(ids), escalations.c.resolved_ns.is_(None))
        ).all()
        names = _names(
            connection, {row.annotator_id for row in current} | {row.annotator_id for row in notes}
        )
    shaped = []
    for row in items:
        mine = [label for label in current if label.item_id == row.id]
        view = item_view(row, q)
        view["labels"] = [label_dict(label, schema.ref, names) for label in mine]
        view["disagreeing_fields"] = disagreeing_fields(
            schema, [label.value for label in mine], q.disagreement_rule, q.disagreement_threshold
        )
        view["escalations"] = [_escalation_dict(note, names) for note in notes if note.item_id == row.id]
        shaped.append(view)
    return {"queue": q.name, "schema": schema.model_dump(mode="json"), "total": total, "items": shaped}


def adjudicate(
    engine: sa.Engine, project_id: int, item_id: int, reviewer_id: int, value: dict[str, Any], rationale: str
) -> dict[str, Any]:
    """Record a reviewer's final value for an item, with the rationale. A later adjudication
    supersedes the earlier one. The item is done and its escalations resolved."""
    if not rationale or not rationale.strip():
        raise ValidationFailed(
            "an adjudication needs a rationale: say why this is the final value", {"item": item_id}
        )
    with read_transaction(engine) as connection:
        item, queue = _item_and_queue(connection, project_id, item_id, lock=False)
        schema = schema_by_id(connection, queue.schema_id)
    checked = validate_label(schema, value)

    def write(connection: sa.Connection) -> dict[str, Any]:
        now = time.time_ns()
        _lock_item(connection, item_id)  # one adjudication at a time per item
        previous = _current_values(connection, item_id, role="adjudication")
        label_id = connection.execute(
            labels.insert()
            .values(
                project_id=project_id,
                queue_id=queue.id,
                item_id=item_id,
                trace_id=item.trace_id,
                annotator_id=previous[-1].annotator_id if previous else reviewer_id,
                author_id=reviewer_id if previous and previous[-1].annotator_id != reviewer_id else None,
                role="adjudication",
                schema_id=queue.schema_id,
                value=checked,
                supersedes_id=previous[-1].id if previous else None,
                reason=rationale.strip(),
                created_ns=now,
            )
            .returning(labels.c.id)
        ).scalar_one()
        connection.execute(
            queue_items.update().where(queue_items.c.id == item_id).values(status="done", completed_ns=now)
        )
        connection.execute(
            escalations.update()
            .where(escalations.c.item_id == item_id, escalations.c.resolved_ns.is_(None))
            .values(resolved_ns=now)
        )
        row = connection.execute(sa.select(labels).where(labels.c.id == label_id)).one()
        return label_dict(row, schema.ref)

    return run_write(engine, write)


def escalation_summary(
    engine: sa.Engine, project_id: int, queue: str | int, notes_per_field: int = 20
) -> dict[str, Any]:
    """Escalation notes collected per field, so the schema's owner sees which parts of the
    guidelines cause trouble: count, still open, and the latest notes."""
    with read_transaction(engine) as connection:
        q = _queue_row(connection, project_id, queue)
        rows = connection.execute(
            sa.select(escalations).where(escalations.c.queue_id == q.id).order_by(escalations.c.id.desc())
        ).all()
        names = _names(connection, {row.annotator_id for row in rows})
    fields: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row.field or "(whole item)"
        entry = fields.setdefault(key, {"field": row.field, "count": 0, "open": 0, "notes": []})
        entry["count"] += 1
        entry["open"] += row.resolved_ns is None
        if len(entry["notes"]) < notes_per_field:
            entry["notes"].append(_escalation_dict(row, names))
    ranked = sorted(fields.values(), key=lambda entry: -entry["count"])
    return {"queue": q.name, "fields": ranked}


def current_labels(
    engine: sa.Engine,
    project_id: int,
    queue: str | int,
    since_ns: int | None = None,
    until_ns: int | None = None,
    schema_ref: str | None = None,
    role: str = "annotation",
) -> list[dict[str, Any]]:
    """The current label of each annotator on each item of the queue (the last link of each chain),
    optionally only labels given in a time range or under one schema version, with the annotator's
    name and kind and whether the item is gold (with its gold answer)."""
    with read_transaction(engine) as connection:
        q = _queue_row(connection, project_id, queue)
        where = [labels.c.queue_id == q.id, labels.c.role == role, _current()]
        if since_ns is not None:
            where.append(labels.c.created_ns >= since_ns)
        if until_ns is not None:
            where.append(labels.c.created_ns < until_ns)
        if schema_ref is not None:
            where.append(labels.c.schema_id == schema_id(connection, project_id, schema_ref)[0])
        rows = connection.execute(
            sa.select(
                labels,
                annotators.c.name.label("annotator_name"),
                annotators.c.kind.label("annotator_kind"),
                queue_items.c.gold,
            )
            .join(annotators, annotators.c.id == labels.c.annotator_id)
            .join(queue_items, queue_items.c.id == labels.c.item_id)
            .where(*where)
            .order_by(labels.c.item_id, labels.c.id)
        ).all()
        refs = _schema_refs(connection, {row.schema_id for row in rows})
    return [
        {
            "id": row.id,
            "item_id": row.item_id,
            "trace_id": row.trace_id,
            "annotator_id": row.annotator_id,
            "annotator": row.annotator_name,
            "kind": row.annotator_kind,
            "schema": refs[row.schema_id],
            "value": row.value,
            "gold": row.gold,
            "created_ns": row.created_ns,
            "duration_ms": row.duration_ms,
        }
        for row in rows
    ]


# --------------------------------------------------------------------------------------------------
# Reading labels and items for other packages (datasets lineage): by id, and by trace

#: Ids per ``IN (…)`` list, well under SQLite's limit on bound parameters.
_IN_CHUNK = 500


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), _IN_CHUNK):
        yield ordered[start : start + _IN_CHUNK]


def labels_by_ids(engine: sa.Engine, project_id: int, ids: Iterable[int]) -> list[dict[str, Any]]:
    """The labels with these ids, oldest id first, each once: the shape of :func:`item_history`'s
    labels (item, trace, annotator and author names, role, schema ref, value, supersedes, reason,
    time) plus the annotator's ``kind`` (human or model). Ids that are not labels of this project
    are left out. Reads any number of ids, a chunk at a time."""
    with read_transaction(engine) as connection:
        rows: list[Any] = []
        for chunk in _chunks(ids):
            rows += connection.execute(
                sa.select(labels)
                .where(labels.c.project_id == project_id, labels.c.id.in_(chunk))
                .order_by(labels.c.id)
            ).all()
        people: dict[int, Any] = {}
        for chunk in _chunks(
            {row.annotator_id for row in rows} | {row.author_id for row in rows if row.author_id}
        ):
            found = connection.execute(
                sa.select(annotators.c.id, annotators.c.name, annotators.c.kind).where(
                    annotators.c.id.in_(chunk)
                )
            )
            people.update((person.id, person) for person in found)
        refs: dict[int, str] = {}
        for chunk in _chunks({row.schema_id for row in rows}):
            refs.update(_schema_refs(connection, set(chunk)))
    names = {person_id: person.name for person_id, person in people.items()}
    shaped = []
    for row in rows:
        shape = label_dict(row, refs[row.schema_id], names)
        shape["kind"] = people[row.annotator_id].kind
        shaped.append(shape)
    return shaped


def items_of_trace(engine: sa.Engine, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    """The queue items that hold a trace, in the order they were added: each item's id, its queue
    (id and name) and its status (open, review or done). Empty when no queue holds the trace."""
    trace_id = trace_id.strip().lower()
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(
                queue_items.c.id,
                queue_items.c.queue_id,
                queue_items.c.status,
                queues.c.name.label("queue"),
            )
            .join(queues, queues.c.id == queue_items.c.queue_id)
            .where(queue_items.c.project_id == project_id, queue_items.c.trace_id == trace_id)
            .order_by(queue_items.c.id)
        ).all()
    return [
        {"item_id": row.id, "queue_id": row.queue_id, "queue": row.queue, "status": row.status}
        for row in rows
    ]
