"""Native JSON traces (for users without OpenTelemetry) turned into the same span records as OTLP."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime
from typing import Any

from prodloop.capture.genai import map_genai
from prodloop.capture.queries import MAX_NS, to_ns
from prodloop.capture.shapes import SpanIn, TextOrMessages, TraceIn
from prodloop.errors import ValidationFailed


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def derived_span_id(trace_id: str, position: str) -> str:
    """A span id that the same trace always gets for the same position, so that a resent native trace
    is recognised as the same spans and stored once."""
    digest = hashlib.sha256(f"{trace_id}:{position}".encode()).digest()[:8]
    return digest.hex() if any(digest) else "0" * 15 + "1"


def _ns(value: datetime | None, default: int) -> int:
    return default if value is None else to_ns(value)


def _end_ns(start_ns: int, end: datetime | None, duration_ms: float | None) -> int:
    if end is not None:
        return _ns(end, start_ns)
    if duration_ms is not None:
        end_ns = start_ns + int(duration_ms * 1_000_000)
        if end_ns > MAX_NS:
            message = f"duration_ms {duration_ms} ends after the year 2262, which prodloop cannot store"
            raise ValidationFailed(message)
        return end_ns
    return start_ns


def _messages(value: TextOrMessages, role: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return value


def _record(
    span: SpanIn | TraceIn,
    *,
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    start_ns: int,
    feature: str | None,
    release: str | None,
    join_key: str | None,
    kind: str,
    conversation_id: str | None,
    tool_name: str | None,
) -> dict[str, Any]:
    attributes = dict(span.attributes)
    # Read the user's attributes with the same GenAI mapping as OTLP, then let explicit fields win.
    mapped = map_genai(attributes, [])
    input_messages = _messages(span.input, "user")
    output_messages = _messages(span.output, "assistant")
    explicit = {
        "operation": span.operation,
        "provider": span.provider,
        "request_model": span.model,
        "response_model": span.response_model or span.model,
        "input_tokens": span.input_tokens,
        "output_tokens": span.output_tokens,
        "conversation_id": conversation_id,
        "tool_name": tool_name,
        "input_messages": input_messages,
        "output_messages": output_messages,
    }
    for key, value in explicit.items():
        if value is not None:
            mapped[key] = value
    if input_messages is not None:
        mapped["input_text"] = (
            span.input
            if isinstance(span.input, str)
            else map_genai({"gen_ai.input.messages": input_messages}, [])["input_text"]
        )
    if output_messages is not None:
        mapped["output_text"] = (
            span.output
            if isinstance(span.output, str)
            else map_genai({"gen_ai.output.messages": output_messages}, [])["output_text"]
        )
    if release is not None:
        attributes.setdefault("prodloop.release", release)
    if join_key is not None:
        attributes.setdefault("prodloop.join_key", join_key)
    record: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "name": span.name,
        "kind": kind,
        "start_ns": start_ns,
        "end_ns": _end_ns(start_ns, span.end_time, span.duration_ms),
        "status_code": span.status,
        "status_message": getattr(span, "status_message", None),
        "service_name": feature,
        "scope_name": "prodloop.native",
        "scope_version": None,
        "release": release,
        "join_key": join_key,
        "attributes": attributes,
        "resource_attributes": {"service.name": feature} if feature else {},
        "events": [],
        "links": [],
    }
    record.update(mapped)
    return record


def native_span_records(trace: TraceIn, now_ns: int | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The trace id and span records of one native trace."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    trace_id = trace.trace_id or new_trace_id()
    start_ns = _ns(trace.start_time, now_ns)
    common: dict[str, Any] = {
        "trace_id": trace_id,
        "feature": trace.feature,
        "conversation_id": trace.conversation_id,
    }
    root_id = derived_span_id(trace_id, "root")
    records = [
        _record(
            trace,
            span_id=root_id,
            parent_span_id=None,
            start_ns=start_ns,
            release=trace.release,
            join_key=trace.join_key,
            kind="server",
            tool_name=None,
            **common,
        )
    ]
    for index, span in enumerate(trace.spans):
        records.append(
            _record(
                span,
                span_id=span.span_id or derived_span_id(trace_id, str(index)),
                parent_span_id=span.parent_span_id or root_id,
                start_ns=_ns(span.start_time, start_ns),
                release=None,
                join_key=None,
                kind=span.kind,
                tool_name=span.tool_name,
                **common,
            )
        )
    return trace_id, records
