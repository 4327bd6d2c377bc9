"""Annotation queues and their items.

A queue pairs items with a label schema version and says how they are labelled: how many distinct
annotators label each item (``overlap``), how long a lease lasts, what share of leases goes to gold
items, whether model suggestions are shown, and when disagreement sends an item to a reviewer.
Items come from production traces (filtered and sampled) or from JSONL rows; each keeps its trace id.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import rfc8785
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prodloop.annotation.schema_store import schema_by_id, schema_id
from prodloop.annotation.schemas import LabelSchema, validate_label
from prodloop.capture import TraceFilter, matching_traces, trace_summaries
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.store import dialect_insert, is_sqlite, read_transaction, run_write
from prodloop.store.schema import escalations, label_schemas, leases, queue_items, queues

_NAME = r"^[a-z0-9][a-z0-9_-]*$"
_TRACE_ID = r"^[0-9a-f]{32}$"
#: The largest id the store holds (a signed 64-bit integer).
MAX_ID = 2**63 - 1
#: Priorities are 32-bit integers.
_PRIORITY = Field(ge=-(2**31), le=2**31 - 1, description="Higher is labelled first.")
#: Items written per statement when adding many at once.
_INSERT_CHUNK = 500


class QueueSettings(BaseModel):
    """How a queue's items are labelled."""

    name: Annotated[str, Field(pattern=_NAME, max_length=100, description="Unique in the project.")]
    schema_ref: Annotated[
        str, Field(alias="schema", description="`name@version` (or `name` for the latest version).")
    ]
    description: str = ""
    overlap: Annotated[int, Field(ge=1, le=50, description="Distinct annotators per item.")] = 1
    lease_seconds: Annotated[
        int, Field(ge=10, le=7 * 86400, description="How long an annotator holds an item.")
    ] = 600
    gold_share: Annotated[
        float, Field(ge=0.0, le=1.0, description="Share of leases that go to gold items.")
    ] = 0.0
    show_suggestions: bool = False
    disagreement_rule: Literal["unanimity", "majority"] = "unanimity"
    disagreement_threshold: Annotated[
        float,
        Field(
            gt=0.0,
            le=1.0,
            description="With rule `majority`: items whose top answer has a smaller share go to review.",
        ),
    ] = 0.5

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ItemIn(BaseModel):
    """One item to label, as a JSONL row or API object."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str | None, Field(max_length=200, description="Your id; the same id is added once.")] = None
    trace_id: Annotated[str | None, Field(pattern=_TRACE_ID)] = None
    input: Any = None
    output: Any = None
    context: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    priority: Annotated[int, _PRIORITY] = 0
    suggestion: dict[str, Any] | None = None
    gold: dict[str, Any] | None = Field(None, description="The known answer: makes this a gold item.")


def parse_items(rows: Iterable[dict[str, Any]]) -> list[ItemIn]:
    """Read item rows; every problem is a 422 naming the row (from 1) and the field."""
    items: list[ItemIn] = []
    problems: list[dict[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        try:
            items.append(ItemIn.model_validate(row))
        except ValidationError as error:
            for problem in error.errors():
                where = ".".join(str(part) for part in problem["loc"])
                problems.append({"row": number, "field": where, "message": problem["msg"]})
    if problems:
        first = problems[0]
        raise ValidationFailed(
            f"item row {first['row']}: {first['field'] or 'row'}: {first['message']}"
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""),
            problems,
        )
    return items


# --------------------------------------------------------------------------------------------------
# Queues


def _queue_row(connection: sa.Connection, project_id: int, queue: str | int) -> Any:
    text = str(queue)
    if text.isascii() and text.isdigit():
        # An id beyond what the store holds names no queue (rather than overflowing the driver).
        where = queues.c.id == int(text) if int(text) <= MAX_ID else sa.false()
    else:
        where = queues.c.name == text
    row = connection.execute(
        sa.select(
            queues,
            (label_schemas.c.name + "@" + sa.cast(label_schemas.c.version, sa.String)).label("schema_ref"),
        )
        .join(label_schemas, label_schemas.c.id == queues.c.schema_id)
        .where(queues.c.project_id == project_id, where)
    ).first()
    if row is None:
        raise NotFound(
            f"queue {str(queue)!r} does not exist; `prodloop queue ls` lists them", {"queue": queue}
        )
    return row


def item_view(row: Any, queue: Any) -> dict[str, Any]:
    """What an annotator sees of an item: never other people's labels, never whether it is gold."""
    payload = row.payload or {}
    return {
        "id": row.id,
        "queue": queue.name,
        "trace_id": row.trace_id,
        "priority": row.priority,
        "input": payload.get("input"),
        "output": payload.get("output"),
        "context": payload.get("context"),
        "metadata": payload.get("metadata") or {},
        "suggestion": row.suggestion if queue.show_suggestions else None,
    }


_QUEUE_COLUMNS = [column.label(f"queue__{column.name}") for column in queues.c]


def _item_and_queue(connection: sa.Connection, project_id: int, item_id: int, lock: bool) -> tuple[Any, Any]:
    """The item (its row locked, with ``lock``, on PostgreSQL) and its queue, in one statement."""
    query = (
        sa.select(queue_items, *_QUEUE_COLUMNS)
        .join(queues, queues.c.id == queue_items.c.queue_id)
        .where(queue_items.c.id == item_id, queue_items.c.project_id == project_id)
    )
    if lock and not is_sqlite(connection):
        query = query.with_for_update(of=queue_items)
    row = connection.execute(query).first()
    if row is None:
        raise NotFound(f"item {item_id} does not exist in this project", {"item": item_id})
    fields = row._asdict()
    queue = SimpleNamespace(**{column.name: fields[f"queue__{column.name}"] for column in queues.c})
    return row, queue


def _schema_ref(connection: sa.Connection, schema_pk: int) -> str:
    row = connection.execute(
        sa.select(label_schemas.c.name, label_schemas.c.version).where(label_schemas.c.id == schema_pk)
    ).one()
    return f"{row.name}@{row.version}"


def _queue_dict(connection: sa.Connection, row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "schema": _schema_ref(connection, row.schema_id),
        "overlap": row.overlap,
        "lease_seconds": row.lease_seconds,
        "gold_share": row.gold_share,
        "show_suggestions": row.show_suggestions,
        "disagreement_rule": row.disagreement_rule,
        "disagreement_threshold": row.disagreement_threshold,
        "created_ns": row.created_ns,
    }


def create_queue(engine: sa.Engine, project_id: int, settings: QueueSettings) -> dict[str, Any]:
    """Create a queue; 409 if the name is taken, 404 if the schema version does not exist."""
    if settings.name.isdigit():
        raise ValidationFailed(
            "a queue name needs a letter, so that it is not read as an id", {"name": settings.name}
        )

    def write(connection: sa.Connection) -> dict[str, Any]:
        schema_pk, _ = schema_id(connection, project_id, settings.schema_ref)
        try:
            new_id = connection.execute(
                queues.insert()
                .values(
                    project_id=project_id,
                    name=settings.name,
                    description=settings.description,
                    schema_id=schema_pk,
                    overlap=settings.overlap,
                    lease_seconds=settings.lease_seconds,
                    gold_share=settings.gold_share,
                    show_suggestions=settings.show_suggestions,
                    disagreement_rule=settings.disagreement_rule,
                    disagreement_threshold=settings.disagreement_threshold,
                    created_ns=time.time_ns(),
                )
                .returning(queues.c.id)
            ).scalar_one()
        except sa.exc.IntegrityError:
            raise Conflict(f"queue {settings.name!r} already exists", {"queue": settings.name}) from None
        return _queue_dict(connection, _queue_row(connection, project_id, int(new_id)))

    return run_write(engine, write)


def get_queue(engine: sa.Engine, project_id: int, queue: str | int) -> dict[str, Any]:
    """A queue's settings and progress."""
    with read_transaction(engine) as connection:
        row = _queue_row(connection, project_id, queue)
        shape = _queue_dict(connection, row)
        shape["progress"] = _progress(connection, row)
    return shape


def queue_schema(engine: sa.Engine, project_id: int, queue: str | int) -> LabelSchema:
    with read_transaction(engine) as connection:
        return schema_by_id(connection, _queue_row(connection, project_id, queue).schema_id)


def _progress(connection: sa.Connection, row: Any) -> dict[str, Any]:
    counts: dict[str, int] = dict(
        connection.execute(
            sa.select(queue_items.c.status, sa.func.count())
            .where(queue_items.c.queue_id == row.id, queue_items.c.gold.is_(None))
            .group_by(queue_items.c.status)
        ).all()
    )
    gold = connection.execute(
        sa.select(sa.func.count()).where(queue_items.c.queue_id == row.id, queue_items.c.gold.is_not(None))
    ).scalar_one()
    labels_needed = connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(row.overlap - queue_items.c.n_labels), 0)).where(
            queue_items.c.queue_id == row.id, queue_items.c.gold.is_(None), queue_items.c.status == "open"
        )
    ).scalar_one()
    leased = connection.execute(
        sa.select(sa.func.count()).where(leases.c.queue_id == row.id, leases.c.expires_ns > time.time_ns())
    ).scalar_one()
    open_escalations = connection.execute(
        sa.select(sa.func.count()).where(
            escalations.c.queue_id == row.id, escalations.c.resolved_ns.is_(None)
        )
    ).scalar_one()
    total = sum(counts.values())
    return {
        "items": total,
        "open": counts.get("open", 0),
        "review": counts.get("review", 0),
        "done": counts.get("done", 0),
        "gold_items": gold,
        "labels_needed": int(labels_needed),
        "leased_now": leased,
        "open_escalations": open_escalations,
        "complete": total > 0 and counts.get("done", 0) == total,
    }


def list_queues(engine: sa.Engine, project_id: int) -> list[dict[str, Any]]:
    """Every queue of the project, with its progress."""
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(queues).where(queues.c.project_id == project_id).order_by(queues.c.name)
        ).all()
        result = []
        for row in rows:
            shape = _queue_dict(connection, row)
            shape["progress"] = _progress(connection, row)
            result.append(shape)
    return result


# --------------------------------------------------------------------------------------------------
# Adding items


def _content_key(payload: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(payload)).hexdigest()[:40]


def add_items(
    engine: sa.Engine,
    project_id: int,
    queue: str | int,
    items: Sequence[ItemIn],
    source: str = "jsonl",
    alert_id: int | None = None,
) -> dict[str, int]:
    """Add ``items`` to the queue; an item already in it (same id, trace id or content) is skipped.

    ``alert_id`` links each item to the monitoring alert that routed it (``source`` "alert").

    Gold answers and suggestions are checked against the queue's schema, and a trace id must name a
    trace of the project; items with a trace id and no input or output take the trace's text. All
    items are added or (on any problem) none.
    """
    with read_transaction(engine) as connection:
        row = _queue_row(connection, project_id, queue)
        schema = schema_by_id(connection, row.schema_id)
    traced = sorted({item.trace_id for item in items if item.trace_id})
    summaries = trace_summaries(engine, project_id, traced) if traced else {}
    missing = [trace_id for trace_id in traced if trace_id not in summaries]
    if missing:
        raise ValidationFailed(
            f"trace {missing[0]} is not in this project"
            + (f" (nor are {len(missing) - 1} more)" if len(missing) > 1 else ""),
            {"missing_traces": missing[:100]},
        )
    records = [
        {**_item_record(row.id, project_id, schema, item, summaries, source, n), "alert_id": alert_id}
        for n, item in enumerate(items, 1)
    ]

    def write(connection: sa.Connection) -> dict[str, int]:
        added = 0
        for start in range(0, len(records), _INSERT_CHUNK):
            chunk = records[start : start + _INSERT_CHUNK]
            insert = dialect_insert(connection, queue_items).values(chunk)
            insert = insert.on_conflict_do_nothing(
                index_elements=[queue_items.c.queue_id, queue_items.c.item_key]
            )
            # Count what RETURNING gives back: psycopg leaves rowcount at -1 for a multi-row INSERT.
            added += len(connection.execute(insert.returning(queue_items.c.id)).all())
        return {"added": added, "skipped": len(records) - added}

    return run_write(engine, write)


def _item_record(
    queue_pk: int,
    project_id: int,
    schema: LabelSchema,
    item: ItemIn,
    summaries: dict[str, dict[str, Any]],
    source: str,
    number: int,
) -> dict[str, Any]:
    trace = summaries.get(item.trace_id or "")
    payload: dict[str, Any] = {
        "input": item.input if item.input is not None or trace is None else trace["input"],
        "output": item.output if item.output is not None or trace is None else trace["output"],
        "context": item.context,
        "metadata": dict(item.metadata),
    }
    if trace is not None:
        for key in ("feature", "release", "model", "start_time"):
            if trace.get(key) is not None:
                payload["metadata"].setdefault(key, trace[key])
    # A gold answer or suggestion may set only some fields: each one given is checked.
    partial = schema.model_copy(
        update={"fields": tuple(spec.model_copy(update={"required": False}) for spec in schema.fields)}
    )
    checked: dict[str, dict[str, Any] | None] = {"gold": None, "suggestion": None}
    for kind, values in (("gold", item.gold), ("suggestion", item.suggestion)):
        if values is not None:
            try:
                normalised = validate_label(partial, values)
            except ValidationFailed as error:
                raise ValidationFailed(f"item row {number}: {kind}: {error.message}", error.detail) from None
            checked[kind] = {key: value for key, value in normalised.items() if value is not None}
            if kind == "gold" and not any(
                schema.field(name).type != "text" for name in (checked[kind] or {})
            ):  # a gold item with no answer to compare could never be scored
                scored = [spec.name for spec in schema.fields if spec.type != "text"]
                raise ValidationFailed(
                    f"item row {number}: gold sets none of the fields {', '.join(scored)}; "
                    "give the known answer of at least one (free text is not scored), or leave gold out",
                    [{"row": number, "field": "gold", "message": "no field set"}],
                )
    key = item.id or item.trace_id or _content_key(payload)
    return {
        "queue_id": queue_pk,
        "project_id": project_id,
        "item_key": key,
        "trace_id": item.trace_id,
        "priority": item.priority,
        "payload": payload,
        "suggestion": checked["suggestion"],
        "gold": checked["gold"],
        "source": source,
        "status": "open",
        "n_labels": 0,
        "created_ns": time.time_ns(),
    }


StratifyBy = Literal["feature", "release", "model"]


def sample_traces(
    candidates: list[dict[str, Any]],
    n: int | None,
    sample: Literal["newest", "random", "stratified"] = "newest",
    stratify_by: str = "feature",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``n`` of ``candidates`` (newest first): the newest, a seeded random sample, or a stratified
    one with each stratum's share of the sample proportional to its share of the candidates (largest
    remainders; every stratum with candidates gets at least one while ``n`` allows)."""
    if n is None or n >= len(candidates):
        return list(candidates)
    if sample == "newest":
        return candidates[:n]
    rng = random.Random(seed)
    if sample == "random":
        return rng.sample(candidates, n)
    strata: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for trace in candidates:
        strata[trace.get(stratify_by)].append(trace)
    exact = {key: n * len(group) / len(candidates) for key, group in strata.items()}
    if len(strata) >= n:  # no room for every stratum: one each for the n largest
        largest = sorted(strata, key=lambda k: -exact[k])[:n]
        quota = {key: int(key in largest) for key in strata}
    else:  # one each first, then the rest by share: taken from the most over, given to the most under
        quota = {key: max(1, int(share)) for key, share in exact.items()}
        while sum(quota.values()) > n:
            over = max((k for k in strata if quota[k] > 1), key=lambda k: (quota[k] - exact[k], exact[k]))
            quota[over] -= 1
        while sum(quota.values()) < n:
            quota[max(strata, key=lambda k: exact[k] - quota[k])] += 1
    chosen: list[dict[str, Any]] = []
    for key, group in strata.items():
        chosen.extend(rng.sample(group, min(quota[key], len(group))))
    return chosen


def add_items_from_traces(
    engine: sa.Engine,
    project_id: int,
    queue: str | int,
    filters: TraceFilter,
    n: int | None = None,
    sample: Literal["newest", "random", "stratified"] = "newest",
    stratify_by: StratifyBy = "feature",
    seed: int = 0,
    priority: int = 0,
) -> dict[str, int]:
    """Add the traces that ``filters`` select (all, or a sample of ``n``) as items of the queue."""
    if n is not None and n < 1:
        raise ValidationFailed(f"a sample needs at least 1 trace, got {n}", {"n": n})
    candidates = matching_traces(engine, project_id, filters, limit=n if sample == "newest" else None)
    chosen = sample_traces(candidates, n, sample, stratify_by, seed)
    items = [
        ItemIn(trace_id=trace["trace_id"], input=trace["input"], output=trace["output"], priority=priority)
        for trace in chosen
    ]
    result = add_items(engine, project_id, queue, items, source="traces")
    return {**result, "matched": len(candidates)}


def change_queue_schema(engine: sa.Engine, project_id: int, queue: str | int, ref: str) -> dict[str, Any]:
    """Move a queue to another version of its schema (say, with clearer guidelines). Labels already
    given keep the version they were given under; new labels are checked against and record the new
    one, so agreement by schema version shows whether the change helped."""

    def write(connection: sa.Connection) -> dict[str, Any]:
        row = _queue_row(connection, project_id, queue)
        schema_pk, schema = schema_id(connection, project_id, ref)
        current = schema_by_id(connection, row.schema_id)
        if schema.name != current.name:
            raise ValidationFailed(
                f"queue {row.name!r} labels with {current.ref}; it can move to another version of "
                f"{current.name!r}, not to {schema.ref} (create a new queue for another schema)",
                {"queue": row.name, "schema": ref},
            )
        connection.execute(queues.update().where(queues.c.id == row.id).values(schema_id=schema_pk))
        return _queue_dict(connection, _queue_row(connection, project_id, row.id))

    return run_write(engine, write)
