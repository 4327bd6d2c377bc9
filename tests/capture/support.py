"""Shared pieces of the capture tests: OTLP requests built by hand, row counts, the error shape."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import sqlalchemy as sa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from prodloop.store.schema import signals, spans, traces

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z in nanoseconds
MS = 1_000_000


def trace_id() -> str:
    return os.urandom(16).hex()


def span_id() -> str:
    return os.urandom(8).hex()


def row_counts(engine: sa.Engine) -> dict[str, int]:
    """How many rows the capture tables hold: what a failed request must leave unchanged."""
    with engine.connect() as connection:
        return {
            table.name: connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (spans, traces, signals)
        }


NOTHING = {"spans": 0, "traces": 0, "signals": 0}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error shape, and nothing else at the top level; returns the inner ``error`` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "detail"}, error
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"].strip()
    return error  # type: ignore[no-any-return]


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=any_value(v)) for k, v in value.items())
        return out
    raise TypeError(value)


def otlp_span(
    trace: str | bytes,
    span: str | bytes,
    name: str,
    start_ns: int,
    end_ns: int,
    parent: str | None = None,
    attributes: dict[str, Any] | None = None,
    error: bool = False,
    kind: int = Span.SPAN_KIND_INTERNAL,
) -> Span:
    """One protobuf span; ids are hex strings (or raw bytes, to send malformed ids)."""
    message = Span(
        trace_id=trace if isinstance(trace, bytes) else bytes.fromhex(trace),
        span_id=span if isinstance(span, bytes) else bytes.fromhex(span),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK),
    )
    message.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in (attributes or {}).items())
    return message


def otlp_request(span_list: list[Span], service: str = "support-assistant") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=any_value(service)))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests.capture"
    scope_spans.scope.version = "1.0"
    scope_spans.spans.extend(span_list)
    return request


def chat_attributes(
    model: str,
    question: str,
    answer: str,
    input_tokens: int,
    output_tokens: int,
    provider: str = "openai",
) -> dict[str, Any]:
    """Attributes of a chat span as the current OpenTelemetry GenAI conventions write them."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "gen_ai.input.messages": (
            '[{"role": "user", "parts": [{"type": "text", "content": ' + _json_str(question) + "}]}]"
        ),
        "gen_ai.output.messages": (
            '[{"role": "assistant", "parts": [{"type": "text", "content": '
            + _json_str(answer)
            + '}], "finish_reason": "stop"}]'
        ),
    }


def _json_str(text: str) -> str:
    return json.dumps(text)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
