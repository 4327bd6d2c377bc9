"""The pull model: annotators lease the next item, label it, skip it or give it back.

``lease_next_item`` gives the caller the highest-priority item it has not labelled or skipped and that
is not already held by enough other annotators to satisfy the queue's overlap. A lease lasts the
queue's ``lease_seconds``; an expired lease stops counting by itself, so an annotator who leaves
mid-run blocks nothing. Submitting needs the lease (or, once it expired, room left on the item).

Correctness under contention:

- SQLite: each lease and submit is one ``BEGIN IMMEDIATE`` transaction through the store's writer,
  so they run one at a time and each sees the last.
- PostgreSQL: candidate items are locked with ``SELECT … FOR UPDATE SKIP LOCKED`` (concurrent
  annotators take different items instead of queueing on one); each locked candidate is checked again
  in a new statement, whose snapshot sees every lease committed before the lock was granted. When
  every candidate is locked by others, the lease waits for one instead of answering "nothing left".
  Every path that changes an item's holders (lease, submit) locks the item row first.
- Nobody labels an item twice: a unique index over (item, annotator, role) for first labels.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from prodloop.annotation.labels import label_dict, settle_item
from prodloop.annotation.queues import _item_and_queue, _queue_row, item_view
from prodloop.annotation.schema_store import schema_by_id
from prodloop.annotation.schemas import validate_label
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.store import dialect_insert, is_sqlite, read_transaction, run_write
from prodloop.store.schema import annotators, escalations, labels, leases, queue_items, skips

#: Candidates locked per attempt on PostgreSQL.
_CANDIDATES = 4
#: Attempts before answering that nothing is free (each attempt takes a fresh snapshot, and each
#: that fails does so because other annotators took the candidates it saw).
_ATTEMPTS = 20


def _iso(ns: int) -> str:
    from prodloop.capture.queries import iso

    return iso(ns) or ""


# The statements of the lease path are built once, with bind parameters (``queue``, ``annotator``,
# ``now``, ``overlap``, ``item``): building a statement costs far more than running a cached one.

#: Unexpired leases on the item by annotators other than the caller.
_HOLDERS = (
    sa.select(sa.func.count())
    .select_from(leases)
    .where(
        leases.c.item_id == queue_items.c.id,
        leases.c.expires_ns > sa.bindparam("now"),
        leases.c.annotator_id != sa.bindparam("annotator"),
    )
    .scalar_subquery()
)
#: Items the caller has neither labelled nor skipped.
_NOT_MINE = (
    ~sa.exists().where(
        labels.c.item_id == queue_items.c.id, labels.c.annotator_id == sa.bindparam("annotator")
    ),
    ~sa.exists().where(
        skips.c.item_id == queue_items.c.id, skips.c.annotator_id == sa.bindparam("annotator")
    ),
)
#: Open ordinary items with room for the caller, in the order annotators are served.
_CANDIDATES_QUERY = (
    sa.select(queue_items.c.id)
    .where(
        queue_items.c.queue_id == sa.bindparam("queue"),
        queue_items.c.status == "open",
        queue_items.c.gold.is_(None),
        *_NOT_MINE,
        queue_items.c.n_labels + _HOLDERS < sa.bindparam("overlap"),
    )
    .order_by(queue_items.c.priority.desc(), queue_items.c.id)
)
_NEXT_ONE = _CANDIDATES_QUERY.limit(1)
_NEXT_UNLOCKED = _CANDIDATES_QUERY.limit(_CANDIDATES).with_for_update(skip_locked=True, of=queue_items)
_NEXT_WAITING = _CANDIDATES_QUERY.limit(1).with_for_update(of=queue_items)
#: Whether an item still has room for the caller.
_ROOM = sa.select(
    queue_items.c.status,
    queue_items.c.n_labels,
    queue_items.c.gold.is_not(None).label("is_gold"),
    _HOLDERS.label("held"),
).where(queue_items.c.id == sa.bindparam("item"))


def _has_room(connection: sa.Connection, item_id: int, overlap: int, annotator_id: int, now: int) -> bool:
    row = connection.execute(_ROOM, {"item": item_id, "annotator": annotator_id, "now": now}).one()
    if row.is_gold:
        return True
    return row.status == "open" and bool(row.n_labels + row.held < overlap)


def _grant(
    connection: sa.Connection, queue: Any, item_id: int, annotator_id: int, now: int
) -> dict[str, Any]:
    expires = now + queue.lease_seconds * 1_000_000_000
    grant = dialect_insert(connection, leases).values(
        queue_id=queue.id, item_id=item_id, annotator_id=annotator_id, leased_ns=now, expires_ns=expires
    )
    connection.execute(
        grant.on_conflict_do_update(
            index_elements=[leases.c.item_id, leases.c.annotator_id],
            set_={"leased_ns": now, "expires_ns": expires},
        )
    )
    row = connection.execute(sa.select(queue_items).where(queue_items.c.id == item_id)).one()
    return {"item": item_view(row, queue), "lease": {"expires_ns": expires, "expires_at": _iso(expires)}}


def _wants_gold(connection: sa.Connection, queue: Any, annotator_id: int) -> bool:
    if queue.gold_share <= 0:
        return False
    counted = connection.execute(
        sa.select(sa.func.count(), sa.func.count(queue_items.c.gold))
        .select_from(labels.join(queue_items, queue_items.c.id == labels.c.item_id))
        .where(
            labels.c.queue_id == queue.id,
            labels.c.annotator_id == annotator_id,
            labels.c.role == "annotation",
            labels.c.supersedes_id.is_(None),
        )
    ).one()
    done, gold = counted
    return bool(gold < queue.gold_share * (done + 1))


def _next_gold(connection: sa.Connection, queue: Any, annotator_id: int) -> int | None:
    held = sa.exists().where(leases.c.item_id == queue_items.c.id, leases.c.annotator_id == annotator_id)
    return connection.execute(  # type: ignore[no-any-return]
        sa.select(queue_items.c.id)
        .where(
            queue_items.c.queue_id == queue.id,
            queue_items.c.gold.is_not(None),
            ~held,
            *_NOT_MINE,
        )
        .order_by(queue_items.c.priority.desc(), queue_items.c.id)
        .limit(1),
        {"annotator": annotator_id},
    ).scalar()


def _next_item(connection: sa.Connection, queue: Any, annotator_id: int, now: int) -> int | None:
    params = {"queue": queue.id, "annotator": annotator_id, "now": now, "overlap": queue.overlap}
    if is_sqlite(connection):  # one writer at a time: what this transaction reads is current
        return connection.execute(_NEXT_ONE, params).scalar()  # type: ignore[no-any-return]
    for _ in range(_ATTEMPTS):
        attempt = connection.begin_nested()
        locked = connection.execute(_NEXT_UNLOCKED, params).scalars().all()
        if not locked:
            # Every candidate left is locked by someone leasing or submitting right now: wait for the
            # first rather than answer that nothing is left. This attempt holds no other lock (the
            # last one's were given back), so the wait cannot close a cycle.
            locked = connection.execute(_NEXT_WAITING, params).scalars().all()
            if not locked:
                attempt.commit()
                return None
        for item_id in locked:  # a new statement, a new snapshot: re-check what the lock now guards
            if _has_room(connection, item_id, queue.overlap, annotator_id, now):
                attempt.commit()
                return int(item_id)
        attempt.rollback()  # give back the locks on candidates that had no room
    return None


def lease_next_item(
    engine: sa.Engine, project_id: int, queue: str | int, annotator_id: int
) -> dict[str, Any] | None:
    """Lease the caller's next item of ``queue``: ``{"item", "lease", "schema"}`` (the schema version
    to label with), or ``None`` when there is nothing left for it.

    An annotator who already holds an unexpired lease in the queue gets that item again (with the
    lease renewed), so reloading a page does not take a second item.
    """

    def write(connection: sa.Connection) -> dict[str, Any] | None:
        q = _queue_row(connection, project_id, queue)
        now = time.time_ns()
        # An item still open (or gold) that the caller holds; one a reviewer settled meanwhile is
        # not handed out again.
        held = connection.execute(
            sa.select(leases.c.item_id)
            .join(queue_items, queue_items.c.id == leases.c.item_id)
            .where(
                leases.c.queue_id == q.id,
                leases.c.annotator_id == annotator_id,
                leases.c.expires_ns > now,
                sa.or_(queue_items.c.status == "open", queue_items.c.gold.is_not(None)),
            )
            .order_by(leases.c.leased_ns)
            .limit(1)
        ).scalar()
        if held is not None:
            return {**_grant(connection, q, held, annotator_id, now), "schema": q.schema_ref}
        item_id = None
        if _wants_gold(connection, q, annotator_id):
            item_id = _next_gold(connection, q, annotator_id)
        if item_id is None:
            item_id = _next_item(connection, q, annotator_id, now)
        if item_id is None:
            return None
        return {**_grant(connection, q, item_id, annotator_id, now), "schema": q.schema_ref}

    return run_write(engine, write)


def submit_label(
    engine: sa.Engine, project_id: int, item_id: int, annotator_id: int, value: dict[str, Any]
) -> dict[str, Any]:
    """Record the caller's label of a leased item; 409 without a lease, 422 if a value breaks the
    schema (naming the field, the value and the allowed options)."""
    with read_transaction(engine) as connection:
        _, queue = _item_and_queue(connection, project_id, item_id, lock=False)
        schema_pk = queue.schema_id
        schema = schema_by_id(connection, schema_pk)
    checked = validate_label(schema, value)

    def write(connection: sa.Connection) -> dict[str, Any]:
        item, q = _item_and_queue(connection, project_id, item_id, lock=True)
        if q.schema_id != schema_pk:  # the queue moved to another schema version since the check
            raise Conflict(
                f"queue {q.name!r} moved to another version of its schema while you labelled; "
                "reload the item and label it again",
                {"item": item_id},
            )
        now = time.time_ns()
        # Who the caller is, its lease on the item, and any label it already gave: one statement.
        already = (
            sa.select(labels.c.id)
            .where(
                labels.c.item_id == item_id,
                labels.c.annotator_id == annotator_id,
                labels.c.role == "annotation",
            )
            .limit(1)
            .scalar_subquery()
        )
        caller = connection.execute(
            sa.select(
                annotators.c.name,
                already.label("already"),
                leases.c.id.label("lease_id"),
                leases.c.leased_ns,
                leases.c.expires_ns,
            )
            .select_from(
                annotators.outerjoin(
                    leases, sa.and_(leases.c.annotator_id == annotators.c.id, leases.c.item_id == item_id)
                )
            )
            .where(annotators.c.id == annotator_id)
        ).first()
        if caller is None:
            raise NotFound(f"annotator {annotator_id} does not exist", {"annotator": annotator_id})
        if caller.already is not None:
            raise Conflict(
                f"you already labelled item {item_id}; to change it, correct label {caller.already}",
                {"item": item_id, "label": caller.already},
            )
        lease = caller if caller.lease_id is not None else None
        if lease is None:
            raise Conflict(
                f"item {item_id} is not leased to you; "
                f"lease it with POST /api/v1/queues/{q.name}/lease first",
                {"item": item_id},
            )
        if lease.expires_ns <= now and not _has_room(connection, item_id, q.overlap, annotator_id, now):
            raise Conflict(
                f"your lease on item {item_id} expired and other annotators have taken it; "
                "lease the next item",
                {"item": item_id},
            )
        row = connection.execute(
            labels.insert()
            .values(
                project_id=project_id,
                queue_id=q.id,
                item_id=item_id,
                trace_id=item.trace_id,
                annotator_id=annotator_id,
                role="annotation",
                schema_id=schema_pk,
                value=checked,
                duration_ms=max(0, (now - lease.leased_ns) // 1_000_000),
                created_ns=now,
            )
            .returning(*labels.c)
        ).one()
        connection.execute(leases.delete().where(leases.c.id == lease.lease_id))
        status = item.status
        if item.gold is None:
            n_labels = item.n_labels + 1
            changes: dict[str, Any] = {"n_labels": n_labels}
            if status == "open" and n_labels >= q.overlap:
                status = settle_item(connection, q, item_id, schema)
                changes.update(status=status, completed_ns=now if status == "done" else None)
            connection.execute(queue_items.update().where(queue_items.c.id == item_id).values(**changes))
        names = {annotator_id: caller.name}
        return {"label": label_dict(row, schema.ref, names), "item_status": status}

    return run_write(engine, write)


def release_item(engine: sa.Engine, project_id: int, item_id: int, annotator_id: int) -> dict[str, Any]:
    """Give the item back to the queue unlabelled (the caller may be offered it again)."""

    def write(connection: sa.Connection) -> dict[str, Any]:
        _item_and_queue(connection, project_id, item_id, lock=False)
        released = connection.execute(
            leases.delete().where(leases.c.item_id == item_id, leases.c.annotator_id == annotator_id)
        ).rowcount
        return {"item": item_id, "released": bool(released)}

    return run_write(engine, write)


def skip_item(
    engine: sa.Engine, project_id: int, item_id: int, annotator_id: int, reason: str | None = None
) -> dict[str, Any]:
    """Give the item back and never offer it to the caller again; others still label it."""

    def write(connection: sa.Connection) -> dict[str, Any]:
        _, q = _item_and_queue(connection, project_id, item_id, lock=False)
        _skip(connection, q.id, item_id, annotator_id, reason)
        return {"item": item_id, "skipped": True}

    return run_write(engine, write)


def _skip(
    connection: sa.Connection, queue_pk: int, item_id: int, annotator_id: int, reason: str | None
) -> None:
    connection.execute(
        leases.delete().where(leases.c.item_id == item_id, leases.c.annotator_id == annotator_id)
    )
    # Insert-if-absent: a double click (two skips at once) records one skip and fails neither.
    skip = dialect_insert(connection, skips).values(
        item_id=item_id,
        annotator_id=annotator_id,
        queue_id=queue_pk,
        reason=reason,
        created_ns=time.time_ns(),
    )
    connection.execute(skip.on_conflict_do_nothing(index_elements=[skips.c.item_id, skips.c.annotator_id]))


def escalate_item(
    engine: sa.Engine, project_id: int, item_id: int, annotator_id: int, note: str, field: str | None = None
) -> dict[str, Any]:
    """Flag an item for a reviewer ("guideline unclear"), with a note about ``field`` (or the whole
    item). The caller is not offered the item again; a reviewer sees it among the items to adjudicate,
    and the notes are collected per field for the schema's owner."""
    with read_transaction(engine) as connection:
        _, q = _item_and_queue(connection, project_id, item_id, lock=False)
        schema = schema_by_id(connection, q.schema_id)
    if field is not None:
        schema.field(field)  # 422 naming the schema's fields
    if not note or not note.strip():
        raise ValidationFailed(
            "an escalation needs a note: say what in the item or the guidelines is unclear", {"item": item_id}
        )
    note = note.strip()

    def write(connection: sa.Connection) -> dict[str, Any]:
        now = time.time_ns()
        escalation_id = connection.execute(
            escalations.insert()
            .values(
                queue_id=q.id,
                item_id=item_id,
                annotator_id=annotator_id,
                field=field,
                note=note,
                created_ns=now,
            )
            .returning(escalations.c.id)
        ).scalar_one()
        _skip(connection, q.id, item_id, annotator_id, f"escalated: {note}")
        return {"item": item_id, "escalation": int(escalation_id), "field": field}

    return run_write(engine, write)
