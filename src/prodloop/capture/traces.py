"""Writing spans into the store and keeping each trace's summary row current.

Spans of one trace may arrive in several requests, in any order, and a retried export may send the
same span twice. :func:`write_spans` inserts the spans that are new (a repeated span id is ignored)
and merges their summary into the trace row with one upsert whose rules do not depend on the order
of arrival: the earliest start, the latest end, counts and token sums of the new spans only, and the
input and output text of the root span, else of the earliest LLM span, else of the earliest span that
has any.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from rapidfuzz.distance import Levenshtein

from prodloop.capture.genai import is_llm_span
from prodloop.capture.native import native_span_records
from prodloop.capture.otlp import parse_request, span_records
from prodloop.store import dialect_insert, run_write
from prodloop.store.engine import dumps_json
from prodloop.store.schema import signals, spans, traces

NUL = chr(0)
REPLACEMENT = chr(0xFFFD)
ESCAPED_NUL = json.dumps(NUL)[1:-1]

#: io_rank of a trace whose spans carry no text yet.
_NO_TEXT = 3


def _trace_summaries(project_id: int, records: Sequence[dict[str, Any]], now_ns: int) -> list[dict[str, Any]]:
    """One summary row per trace over the given (new) spans, merged later with what is stored."""
    summaries: dict[str, dict[str, Any]] = {}
    for r in records:
        tid = r["trace_id"]
        s = summaries.get(tid)
        if s is None:
            s = summaries[tid] = {
                "project_id": project_id,
                "trace_id": tid,
                "feature": None,
                "release": None,
                "join_key": None,
                "name": None,
                "root_span_id": None,
                "start_ns": r["start_ns"],
                "end_ns": r["end_ns"],
                "span_count": 0,
                "error_count": 0,
                "model": None,
                "provider": None,
                "model_start_ns": None,
                "input_tokens": None,
                "output_tokens": None,
                "conversation_id": None,
                "input_text": None,
                "output_text": None,
                "io_rank": _NO_TEXT,
                "io_start_ns": None,
                "ingested_ns": now_ns,
                "_first_start": None,
            }
        is_root = r["parent_span_id"] is None
        llm = is_llm_span(r)
        s["span_count"] += 1
        s["error_count"] += r["status_code"] == "error"
        s["start_ns"] = min(s["start_ns"], r["start_ns"])
        s["end_ns"] = max(s["end_ns"], r["end_ns"])
        if is_root:
            s["root_span_id"] = r["span_id"]
            s["name"] = r["name"]
            s["feature"] = r["service_name"] or s["feature"]
        else:
            if s["_first_start"] is None or r["start_ns"] < s["_first_start"]:
                s["_first_start"] = r["start_ns"]
                if s["root_span_id"] is None:
                    s["name"] = r["name"]
            s["feature"] = s["feature"] or r["service_name"]
        s["release"] = s["release"] or r["release"]
        s["join_key"] = s["join_key"] or r["join_key"]
        s["conversation_id"] = s["conversation_id"] or r.get("conversation_id")
        if llm:
            model = r.get("response_model") or r.get("request_model")
            if model and (s["model_start_ns"] is None or r["start_ns"] < s["model_start_ns"]):
                s["model"], s["provider"], s["model_start_ns"] = model, r.get("provider"), r["start_ns"]
            for key in ("input_tokens", "output_tokens"):
                if r.get(key) is not None:
                    s[key] = (s[key] or 0) + r[key]
        if r.get("input_text") is not None or r.get("output_text") is not None:
            rank = 0 if is_root else 1 if llm else 2
            if rank < s["io_rank"] or (rank == s["io_rank"] and r["start_ns"] < s["io_start_ns"]):
                s["io_rank"] = rank
                s["io_start_ns"] = r["start_ns"]
                s["input_text"] = r.get("input_text")
                s["output_text"] = r.get("output_text")
    for s in summaries.values():
        del s["_first_start"]
    return list(summaries.values())


def _sum(stored: Any, new: Any) -> Any:
    return sa.case((stored.is_(None), new), (new.is_(None), stored), else_=stored + new)


def _upsert_traces(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    stmt = dialect_insert(connection, traces)
    t, ex = traces.c, stmt.excluded
    takes_io = sa.or_(
        ex.io_rank < t.io_rank, sa.and_(ex.io_rank == t.io_rank, ex.io_start_ns < t.io_start_ns)
    )
    takes_model = sa.and_(
        ex.model_start_ns.is_not(None),
        sa.or_(t.model_start_ns.is_(None), ex.model_start_ns < t.model_start_ns),
    )
    root_arrives = sa.and_(ex.root_span_id.is_not(None), t.root_span_id.is_(None))
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.project_id, t.trace_id],
        set_={
            "start_ns": sa.case((ex.start_ns < t.start_ns, ex.start_ns), else_=t.start_ns),
            "end_ns": sa.case((ex.end_ns > t.end_ns, ex.end_ns), else_=t.end_ns),
            "span_count": t.span_count + ex.span_count,
            "error_count": t.error_count + ex.error_count,
            "input_tokens": _sum(t.input_tokens, ex.input_tokens),
            "output_tokens": _sum(t.output_tokens, ex.output_tokens),
            "root_span_id": sa.func.coalesce(t.root_span_id, ex.root_span_id),
            "name": sa.case((root_arrives, ex.name), else_=sa.func.coalesce(t.name, ex.name)),
            "feature": sa.case(
                (root_arrives, sa.func.coalesce(ex.feature, t.feature)),
                else_=sa.func.coalesce(t.feature, ex.feature),
            ),
            "release": sa.func.coalesce(t.release, ex.release),
            "join_key": sa.func.coalesce(t.join_key, ex.join_key),
            "model": sa.case((takes_model, ex.model), else_=t.model),
            "provider": sa.case((takes_model, ex.provider), else_=t.provider),
            "model_start_ns": sa.case((takes_model, ex.model_start_ns), else_=t.model_start_ns),
            "conversation_id": sa.func.coalesce(t.conversation_id, ex.conversation_id),
            "input_text": sa.case((takes_io, ex.input_text), else_=t.input_text),
            "output_text": sa.case((takes_io, ex.output_text), else_=t.output_text),
            "io_start_ns": sa.case((takes_io, ex.io_start_ns), else_=t.io_start_ns),
            "io_rank": sa.case((takes_io, ex.io_rank), else_=t.io_rank),
        },
    )
    sql, names = _compiled(connection.dialect, stmt)
    if names is None:
        connection.exec_driver_sql(sql, rows)
    else:
        connection.exec_driver_sql(sql, [tuple(row[name] for name in names) for row in rows])


_COMPILED: dict[str, tuple[str, tuple[str, ...] | None]] = {}


def _compiled(dialect: sa.Dialect, stmt: Any) -> tuple[str, tuple[str, ...] | None]:
    """The SQL text of the trace upsert for ``dialect``, compiled once and run with the driver's
    ``executemany``: building the statement row by row cost more than the database's own work.
    Returns the text and, for positional drivers, the parameter names in order."""
    cached = _COMPILED.get(dialect.name)
    if cached is None:
        compiled = stmt.compile(dialect=dialect)
        names = tuple(compiled.positiontup) if compiled.positional else None
        cached = _COMPILED[dialect.name] = (str(compiled), names)
    return cached


def lock_join_keys(connection: sa.Connection, project_id: int, keys: Sequence[str]) -> None:
    """Serialise the joining of traces and signals that share a join key.

    A trace and a signal with the same join key, written at the same moment by two transactions, could
    each miss the other (neither is committed when the other looks). On PostgreSQL both writers first
    take a transaction-scoped advisory lock per join key, in one sorted order so that they cannot
    deadlock; SQLite needs nothing, since ``BEGIN IMMEDIATE`` already runs writers one at a time.
    """
    if connection.dialect.name != "postgresql" or not keys:
        return
    connection.execute(
        sa.text(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, :project) AS h "
            "FROM unnest(CAST(:keys AS text[])) AS k) AS s ORDER BY h"
        ),
        {"project": project_id, "keys": sorted(set(keys))},
    )


def _join_pending_signals(
    connection: sa.Connection, project_id: int, summaries: list[dict[str, Any]]
) -> None:
    """Attach signals that arrived before their trace: by join key, and compute pending edit distances."""
    keyed = [s["trace_id"] for s in summaries if s["join_key"] is not None]
    if keyed:
        # The trace row holds the join key that won, which may come from an earlier request.
        rows = connection.execute(
            sa.select(traces.c.trace_id, traces.c.join_key).where(
                traces.c.project_id == project_id, traces.c.trace_id.in_(keyed)
            )
        ).all()
        by_key = {key: tid for tid, key in rows}
        lock_join_keys(connection, project_id, list(by_key))
        waiting = (
            connection.execute(
                sa.select(signals.c.join_key)
                .where(
                    signals.c.project_id == project_id,
                    signals.c.trace_id.is_(None),
                    signals.c.join_key.in_(list(by_key)),
                )
                .distinct()
            )
            .scalars()
            .all()
        )
        if waiting:
            connection.execute(
                signals.update()
                .where(
                    signals.c.project_id == project_id,
                    signals.c.trace_id.is_(None),
                    signals.c.join_key == sa.bindparam("key"),
                )
                .values(trace_id=sa.bindparam("tid")),
                [{"key": key, "tid": by_key[key]} for key in waiting],
            )
    fill_edit_distances(connection, project_id, [s["trace_id"] for s in summaries])


def fill_edit_distances(connection: sa.Connection, project_id: int, trace_ids: list[str]) -> None:
    """Keep the edit distance of `edit` signals equal to the distance between the edited text and their
    trace's current output (which may change when the root span arrives after an LLM span)."""
    if not trace_ids:
        return
    rows = connection.execute(
        sa.select(signals.c.id, signals.c.text, signals.c.edit_distance, traces.c.output_text)
        .join(
            traces,
            sa.and_(traces.c.project_id == signals.c.project_id, traces.c.trace_id == signals.c.trace_id),
        )
        .where(
            signals.c.project_id == project_id,
            signals.c.trace_id.in_(trace_ids),
            signals.c.name == "edit",
            traces.c.output_text.is_not(None),
        )
    ).all()
    changed = []
    for sid, text, stored, output in rows:
        distance = Levenshtein.distance(output, text or "")
        if distance != stored:
            changed.append({"sid": sid, "d": distance})
    if changed:
        connection.execute(
            signals.update()
            .where(signals.c.id == sa.bindparam("sid"))
            .values(edit_distance=sa.bindparam("d")),
            changed,
        )


_SPAN_COLUMNS = [column.name for column in spans.columns]
_SPAN_JSON = frozenset(column.name for column in spans.columns if isinstance(column.type, sa.JSON))
_SQLITE_INSERT_SPAN = (
    f"INSERT INTO spans ({', '.join(_SPAN_COLUMNS)}) VALUES ({', '.join('?' for _ in _SPAN_COLUMNS)})"
)
_POSTGRES_INSERT_SPAN = (
    f"INSERT INTO spans ({', '.join(_SPAN_COLUMNS)}) "
    f"VALUES ({', '.join('%s::jsonb' if name in _SPAN_JSON else '%s' for name in _SPAN_COLUMNS)}) "
    "ON CONFLICT (project_id, trace_id, span_id) DO NOTHING RETURNING trace_id, span_id"
)


def without_nul(value: Any) -> Any:
    """``value`` with NUL characters replaced by U+FFFD: PostgreSQL text cannot hold NUL, and both
    stores must keep the same thing."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT)
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def _dump_json(value: Any) -> str:
    text = dumps_json(value)
    # NUL is written as an escape; only then is the (rare, slower) clean-up needed.
    return dumps_json(without_nul(value)) if ESCAPED_NUL in text else text


def _clean_text(records: list[dict[str, Any]]) -> None:
    for record in records:
        for key, value in record.items():
            if isinstance(value, str) and NUL in value:
                record[key] = value.replace(NUL, REPLACEMENT)


def _span_params(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    # The spans of one OTLP resource share one resource-attributes dict: encode it once.
    encoded: dict[int, str] = {}

    def dump(value: Any) -> str:
        key = id(value)
        text = encoded.get(key)
        if text is None:
            text = encoded[key] = _dump_json(value)
        return text

    resource = "resource_attributes"
    return [
        tuple(
            (dump(r[name]) if name == resource else _dump_json(r[name]))
            if name in _SPAN_JSON and r[name] is not None
            else r[name]
            for name in _SPAN_COLUMNS
        )
        for r in rows
    ]


def _insert_new_spans(
    connection: sa.Connection, project_id: int, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert the spans not stored yet and return them: the hot path of ingest, so it hands one
    ``executemany`` to the driver instead of building statements row by row.

    SQLite: skip the spans already stored, then insert; exact, because ``BEGIN IMMEDIATE`` lets no other
    writer in between. PostgreSQL: ``ON CONFLICT DO NOTHING RETURNING`` in psycopg's pipelined
    ``executemany`` says which rows were new, even with concurrent writers.
    """
    if connection.dialect.name == "sqlite":
        trace_ids = sorted({r["trace_id"] for r in rows})
        stored = set(
            map(
                tuple,
                connection.execute(
                    sa.select(spans.c.trace_id, spans.c.span_id).where(
                        spans.c.project_id == project_id, spans.c.trace_id.in_(trace_ids)
                    )
                ).all(),
            )
        )
        new = [r for r in rows if (r["trace_id"], r["span_id"]) not in stored]
        if new:
            connection.exec_driver_sql(_SQLITE_INSERT_SPAN, _span_params(new))
        return new
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    inserted = set()
    with cursor:
        cursor.executemany(_POSTGRES_INSERT_SPAN, _span_params(rows), returning=True)
        while True:
            row = cursor.fetchone()
            if row is not None:
                inserted.add(tuple(row))
            if not cursor.nextset():
                break
    return [r for r in rows if (r["trace_id"], r["span_id"]) in inserted]


def write_spans(engine: sa.Engine, project_id: int, records: Sequence[dict[str, Any]]) -> int:
    """Store spans and update their traces in one transaction; returns how many spans were new.

    Either every span is stored (or recognised as already stored) and committed when the call returns,
    or it raises and nothing is written.
    """
    if not records:
        return 0
    now_ns = time.time_ns()
    unique = {(r["trace_id"], r["span_id"]): r for r in records}
    records = list(unique.values())
    _clean_text(records)
    rows = [{**r, "project_id": project_id} for r in records]

    def write(connection: sa.Connection) -> int:
        new = _insert_new_spans(connection, project_id, rows)
        if new:
            summaries = _trace_summaries(project_id, new, now_ns)
            _upsert_traces(connection, summaries)
            _join_pending_signals(connection, project_id, summaries)
        return len(new)

    return run_write(engine, write)


def ingest_traces(engine: sa.Engine, project_id: int, batch: Sequence[Any]) -> dict[str, Any]:
    """Store native traces (:class:`~prodloop.capture.shapes.TraceIn`) in one transaction."""
    now_ns = time.time_ns()
    trace_ids: list[str] = []
    records: list[dict[str, Any]] = []
    for trace in batch:
        trace_id, trace_records = native_span_records(trace, now_ns)
        trace_ids.append(trace_id)
        records.extend(trace_records)
    stored = write_spans(engine, project_id, records)
    return {"accepted": len(trace_ids), "spans_stored": stored, "trace_ids": trace_ids}


def ingest_otlp(engine: sa.Engine, project_id: int, body: bytes, encoding: str) -> tuple[int, list[str]]:
    """Decode one OTLP/HTTP trace export and store its valid spans; returns how many spans were
    stored as new and one reason per rejected span."""
    records, problems = span_records(parse_request(body, encoding))
    return write_spans(engine, project_id, records), problems
