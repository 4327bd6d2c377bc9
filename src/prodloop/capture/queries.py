"""Reading traces back: filtered lists with keyset pagination, and one trace with its span tree."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from prodloop.errors import InvalidRequest, NotFound, ValidationFailed
from prodloop.store import read_transaction
from prodloop.store.schema import signals, spans, traces


@dataclass(frozen=True)
class TraceFilter:
    """Which traces to list; every field is optional."""

    feature: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    release: str | None = None
    model: str | None = None
    has_signal: bool | None = None
    signal: str | None = None  # a signal name (thumbs, thumbs_down, edit, escalated…) the trace must have
    status: str | None = None  # "error" or "ok"
    search: str | None = None  # text that the input or output contains


#: Times are stored as signed 64-bit nanoseconds: up to the year 2262.
MAX_NS = 2**63 - 1


def to_ns(value: datetime) -> int:
    """Nanoseconds since the epoch; a time without an offset is UTC. 422 beyond what the store holds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ns = int(value.timestamp() * 1_000_000) * 1000
    if not 0 <= ns <= MAX_NS:
        shown = value.isoformat()
        raise ValidationFailed(f"time {shown} is outside what prodloop stores, 1970 to 2262", {"time": shown})
    return ns


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


def encode_cursor(start_ns: int, trace_id: str) -> str:
    return base64.urlsafe_b64encode(f"{start_ns}:{trace_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, trace_id = raw.split(":", 1)
        if not 0 <= int(start) <= MAX_NS:
            raise ValueError("position out of range")
        return int(start), trace_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cursor {cursor!r} is not one that prodloop returned") from exc


def _signal_exists(name: str | None) -> sa.ColumnElement[bool]:
    clause = sa.and_(signals.c.project_id == traces.c.project_id, signals.c.trace_id == traces.c.trace_id)
    if name in ("thumbs_up", "thumbs_down"):  # stored as `thumbs` with value up (1) or down (0)
        clause = sa.and_(
            clause, signals.c.name == "thumbs", signals.c.value_num == (1.0 if name == "thumbs_up" else 0.0)
        )
    elif name is not None:
        clause = sa.and_(clause, signals.c.name == name)
    return sa.exists(sa.select(sa.literal(1)).where(clause))


def _conditions(project_id: int, f: TraceFilter) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [traces.c.project_id == project_id]
    if f.feature is not None:
        where.append(traces.c.feature == f.feature)
    if f.since is not None:
        where.append(traces.c.start_ns >= to_ns(f.since))
    if f.until is not None:
        where.append(traces.c.start_ns < to_ns(f.until))
    if f.release is not None:
        where.append(traces.c.release == f.release)
    if f.model is not None:
        where.append(traces.c.model == f.model)
    if f.has_signal is True:
        where.append(_signal_exists(None))
    elif f.has_signal is False:
        where.append(~_signal_exists(None))
    if f.signal is not None:
        where.append(_signal_exists(f.signal))
    if f.status == "error":
        where.append(traces.c.error_count > 0)
    elif f.status == "ok":
        where.append(traces.c.error_count == 0)
    if f.search:
        literal = f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{literal}%"
        where.append(
            sa.or_(
                traces.c.input_text.ilike(pattern, escape="\\"),
                traces.c.output_text.ilike(pattern, escape="\\"),
            )
        )
    return where


def trace_summary(row: Any) -> dict[str, Any]:
    return {
        "trace_id": row.trace_id,
        "feature": row.feature,
        "release": row.release,
        "join_key": row.join_key,
        "name": row.name,
        "start_time": iso(row.start_ns),
        "end_time": iso(row.end_ns),
        "duration_ms": (row.end_ns - row.start_ns) / 1e6,
        "span_count": row.span_count,
        "error_count": row.error_count,
        "status": "error" if row.error_count else "ok",
        "model": row.model,
        "provider": row.provider,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "conversation_id": row.conversation_id,
        "input": row.input_text,
        "output": row.output_text,
    }


def list_traces(
    engine: sa.Engine, project_id: int, filters: TraceFilter, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """Traces newest first, ``limit`` at a time; pass ``next_cursor`` back for the next page."""
    where = _conditions(project_id, filters)
    if cursor:
        start_ns, trace_id = decode_cursor(cursor)
        where.append(
            sa.or_(
                traces.c.start_ns < start_ns,
                sa.and_(traces.c.start_ns == start_ns, traces.c.trace_id < trace_id),
            )
        )
    query = (
        sa.select(traces)
        .where(*where)
        .order_by(traces.c.start_ns.desc(), traces.c.trace_id.desc())
        .limit(limit + 1)
    )
    with read_transaction(engine) as connection:
        rows = connection.execute(query).all()
        page = rows[:limit]
        badges: dict[str, dict[str, int]] = {}
        if page:
            counted = connection.execute(
                sa.select(signals.c.trace_id, signals.c.name, signals.c.value, sa.func.count())
                .where(signals.c.project_id == project_id, signals.c.trace_id.in_([r.trace_id for r in page]))
                .group_by(signals.c.trace_id, signals.c.name, signals.c.value)
            ).all()
            for trace_id, name, value, count in counted:
                label = f"{name}:{value}" if name == "thumbs" or isinstance(value, bool) else name
                badges.setdefault(trace_id, {})
                badges[trace_id][label] = badges[trace_id].get(label, 0) + count
    items = []
    for row in page:
        summary = trace_summary(row)
        summary["signals"] = badges.get(row.trace_id, {})
        items.append(summary)
    next_cursor = encode_cursor(page[-1].start_ns, page[-1].trace_id) if len(rows) > limit else None
    return {"traces": items, "next_cursor": next_cursor}


def matching_traces(
    engine: sa.Engine, project_id: int, filters: TraceFilter, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every trace that ``filters`` select (newest first, at most ``limit``), as summaries: for
    sampling traces into an annotation queue or a monitor's window."""
    query = (
        sa.select(traces)
        .where(*_conditions(project_id, filters))
        .order_by(traces.c.start_ns.desc(), traces.c.trace_id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    with read_transaction(engine) as connection:
        return [trace_summary(row) for row in connection.execute(query)]


def trace_summaries(engine: sa.Engine, project_id: int, trace_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Summaries of the traces among ``trace_ids`` that exist, by trace id."""
    found: dict[str, dict[str, Any]] = {}
    with read_transaction(engine) as connection:
        for start in range(0, len(trace_ids), 500):
            chunk = trace_ids[start : start + 500]
            rows = connection.execute(
                sa.select(traces).where(traces.c.project_id == project_id, traces.c.trace_id.in_(chunk))
            )
            found.update((row.trace_id, trace_summary(row)) for row in rows)
    return found


def _span_dict(row: Any) -> dict[str, Any]:
    return {
        "span_id": row.span_id,
        "parent_span_id": row.parent_span_id,
        "name": row.name,
        "kind": row.kind,
        "start_time": iso(row.start_ns),
        "end_time": iso(row.end_ns),
        "duration_ms": (row.end_ns - row.start_ns) / 1e6,
        "offset_ms": None,
        "status": row.status_code,
        "status_message": row.status_message,
        "service_name": row.service_name,
        "scope": {"name": row.scope_name, "version": row.scope_version},
        "release": row.release,
        "join_key": row.join_key,
        "operation": row.operation,
        "provider": row.provider,
        "request_model": row.request_model,
        "response_model": row.response_model,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "sampling": row.sampling,
        "conversation_id": row.conversation_id,
        "tool_name": row.tool_name,
        "finish_reasons": row.finish_reasons,
        "input_messages": row.input_messages,
        "output_messages": row.output_messages,
        "input": row.input_text,
        "output": row.output_text,
        "attributes": row.attributes,
        "resource_attributes": row.resource_attributes,
        "events": row.events,
        "links": row.links,
        "children": [],
    }


def span_tree(rows: list[Any], trace_start_ns: int) -> list[dict[str, Any]]:
    """Spans nested under their parents, children in start order; a span whose parent never arrived is
    shown at the top level rather than lost."""
    nodes = {}
    for row in rows:
        node = _span_dict(row)
        node["offset_ms"] = (row.start_ns - trace_start_ns) / 1e6
        nodes[row.span_id] = node
    roots: list[dict[str, Any]] = []
    for row in rows:
        node = nodes[row.span_id]
        parent = nodes.get(row.parent_span_id) if row.parent_span_id else None
        (parent["children"] if parent is not None else roots).append(node)
    return roots


def signal_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "trace_id": row.trace_id,
        "join_key": row.join_key,
        "kind": row.kind,
        "name": row.name,
        "value": row.value,
        "text": row.text,
        "edit_distance": row.edit_distance,
        "user_id": row.user_id,
        "metadata": row.metadata,
        "timestamp": iso(row.timestamp_ns),
        "received_at": iso(row.received_ns),
    }


def get_trace(engine: sa.Engine, project_id: int, trace_id: str) -> dict[str, Any]:
    """One trace with its span tree and every signal about it; 404 if the project has no such trace."""
    trace_id = trace_id.lower()
    with read_transaction(engine) as connection:
        row = connection.execute(
            sa.select(traces).where(traces.c.project_id == project_id, traces.c.trace_id == trace_id)
        ).first()
        if row is None:
            raise NotFound(f"trace {trace_id} not found in this project", {"trace_id": trace_id})
        span_rows = connection.execute(
            sa.select(spans)
            .where(spans.c.project_id == project_id, spans.c.trace_id == trace_id)
            .order_by(spans.c.start_ns, spans.c.span_id)
        ).all()
        signal_rows = connection.execute(
            sa.select(signals)
            .where(signals.c.project_id == project_id, signals.c.trace_id == trace_id)
            .order_by(signals.c.timestamp_ns, signals.c.id)
        ).all()
    result = trace_summary(row)
    result["spans"] = span_tree(list(span_rows), row.start_ns)
    result["signals"] = [signal_dict(s) for s in signal_rows]
    return result


def list_features(engine: sa.Engine, project_id: int) -> list[dict[str, Any]]:
    """Every feature (service name) of the project with its trace count and time span."""
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(
                traces.c.feature,
                sa.func.count(),
                sa.func.min(traces.c.start_ns),
                sa.func.max(traces.c.start_ns),
            )
            .where(traces.c.project_id == project_id)
            .group_by(traces.c.feature)
            .order_by(sa.func.count().desc())
        ).all()
    return [
        {"feature": feature, "traces": count, "first_trace": iso(first), "last_trace": iso(last)}
        for feature, count, first, last in rows
    ]


def distinct_values(engine: sa.Engine, project_id: int, column: str, limit: int = 200) -> list[str]:
    """Distinct values of a trace column (release, model) for filter menus."""
    col = traces.c[column]
    with read_transaction(engine) as connection:
        return [
            v
            for v in connection.execute(
                sa.select(col)
                .where(traces.c.project_id == project_id, col.is_not(None))
                .distinct()
                .order_by(col)
                .limit(limit)
            ).scalars()
        ]
