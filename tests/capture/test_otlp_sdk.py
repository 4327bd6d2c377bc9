"""OTLP/HTTP ingest as OpenTelemetry users meet it: the official SDK exporter over real HTTP, hand-written
OTLP/JSON, protobuf answers, partial success, retries, and traces split over several requests."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import prodloop.otel
from tests.capture.support import (
    JSON,
    MS,
    PROTOBUF,
    T0,
    auth,
    chat_attributes,
    otlp_request,
    otlp_span,
    row_counts,
    span_id,
    trace_id,
)

QUESTION = "Where is my refund for order 1001?"
ANSWER = "Your refund was issued on Monday and should arrive within 3 days."


class RecordingExporter(SpanExporter):
    """The official OTLP/HTTP exporter, keeping the result of every export it makes."""

    def __init__(self, url: str, key: str, compression: Compression | None = None) -> None:
        self.inner = OTLPSpanExporter(
            endpoint=url + "/v1/traces", headers={"Authorization": f"Bearer {key}"}, compression=compression
        )
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def _hex_trace_id(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


def _support_trace(provider: TracerProvider) -> str:
    """A support-assistant request: root, a chat call, a tool call and a second chat call."""
    tracer = provider.get_tracer("support.app", "2.3.0")
    with tracer.start_as_current_span("support.answer", kind=SpanKind.SERVER) as root:
        root.set_attribute("prodloop.release", "support@v7")
        root.set_attribute("prodloop.join_key", "TICKET-1001")
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as chat:
            for key, value in chat_attributes("gpt-4o", QUESTION, ANSWER, 120, 30).items():
                chat.set_attribute(key, value)
            chat.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
            chat.set_attribute("gen_ai.request.temperature", 0.2)
            chat.set_attribute("gen_ai.request.max_tokens", 512)
            chat.set_attribute("gen_ai.conversation.id", "conv-77")
            chat.set_attribute("gen_ai.response.finish_reasons", ["stop"])
        with tracer.start_as_current_span("execute_tool lookup_order") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "lookup_order")
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as second:
            second.set_attribute("gen_ai.operation.name", "chat")
            second.set_attribute("gen_ai.provider.name", "openai")
            second.set_attribute("gen_ai.request.model", "gpt-4o")
            second.set_attribute("gen_ai.usage.input_tokens", 80)
            second.set_attribute("gen_ai.usage.output_tokens", 12)
            second.set_status(Status(StatusCode.ERROR, "rate limited"))
    return _hex_trace_id(root)


def _get(client: Any, key: str, trace: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/traces/{trace}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("processor", "compression"),
    [(SimpleSpanProcessor, None), (BatchSpanProcessor, Compression.Gzip)],
    ids=["simple-plain", "batch-gzip"],
)
def test_sdk_exporter_spans_arrive_as_a_tree_with_feature_release_and_genai_columns(
    live_server: Any, admin_key: str, client: Any, processor: Any, compression: Any
) -> None:
    exporter = RecordingExporter(live_server.url, admin_key, compression)
    provider = TracerProvider(resource=Resource.create({"service.name": "support-assistant"}))
    provider.add_span_processor(processor(exporter))
    trace = _support_trace(provider)
    provider.shutdown()

    assert exporter.results and set(exporter.results) == {SpanExportResult.SUCCESS}
    got = _get(client, admin_key, trace)
    assert got["feature"] == "support-assistant"
    assert got["release"] == "support@v7"
    assert got["join_key"] == "TICKET-1001"
    assert got["name"] == "support.answer"
    assert got["span_count"] == 4
    assert got["error_count"] == 1 and got["status"] == "error"
    assert got["input_tokens"] == 200 and got["output_tokens"] == 42
    assert got["provider"] == "openai"
    assert got["conversation_id"] == "conv-77"
    # The root carries no text, so the trace shows the first LLM call's.
    assert got["input"] == QUESTION and got["output"] == ANSWER

    [root] = got["spans"]
    assert root["name"] == "support.answer" and root["parent_span_id"] is None and root["kind"] == "server"
    assert root["scope"] == {"name": "support.app", "version": "2.3.0"}
    children = root["children"]
    assert [c["name"] for c in children] == ["chat gpt-4o", "execute_tool lookup_order", "chat gpt-4o-mini"]
    assert all(c["parent_span_id"] == root["span_id"] for c in children)
    chat, tool, second = children
    assert chat["operation"] == "chat" and chat["kind"] == "client"
    assert chat["provider"] == "openai"
    assert chat["request_model"] == "gpt-4o" and chat["response_model"] == "gpt-4o-2024-08-06"
    assert chat["input_tokens"] == 120 and chat["output_tokens"] == 30
    assert chat["sampling"] == {"temperature": 0.2, "max_tokens": 512}
    assert chat["finish_reasons"] == ["stop"]
    assert chat["input"] == QUESTION and chat["output"] == ANSWER
    assert chat["input_messages"][0]["role"] == "user"
    assert chat["attributes"]["gen_ai.request.temperature"] == 0.2
    assert chat["resource_attributes"]["service.name"] == "support-assistant"
    assert tool["operation"] == "execute_tool" and tool["tool_name"] == "lookup_order"
    assert second["status"] == "error" and second["status_message"] == "rate limited"
    # The trace's model comes from the first LLM call, preferring the model that answered.
    assert got["model"] == "gpt-4o-2024-08-06"


def test_configure_returns_a_provider_whose_spans_carry_the_release(
    live_server: Any, admin_key: str, client: Any
) -> None:
    provider = prodloop.otel.configure(
        live_server.url, admin_key, service_name="faq-bot", release="faq@2024-06-01", set_global=False
    )
    tracer = provider.get_tracer("faq")
    with tracer.start_as_current_span("faq.answer") as root, tracer.start_as_current_span("retrieve"):
        pass
    provider.shutdown()

    got = _get(client, admin_key, _hex_trace_id(root))
    assert got["feature"] == "faq-bot" and got["release"] == "faq@2024-06-01"
    [root_span] = got["spans"]
    [child] = root_span["children"]
    assert root_span["release"] == child["release"] == "faq@2024-06-01"
    assert child["attributes"]["prodloop.release"] == "faq@2024-06-01"


def _otlp_json_body(trace: str, root: str, child: str) -> dict[str, Any]:
    """OTLP/JSON as the specification writes it: hex ids, lowerCamelCase, int64 as strings, enums as ints."""

    def string(key: str, value: str) -> dict[str, Any]:
        return {"key": key, "value": {"stringValue": value}}

    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        string("service.name", "faq-bot"),
                        string("deployment.environment", "prod"),
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual-json", "version": "0.1"},
                        "spans": [
                            {
                                "traceId": trace,
                                "spanId": root,
                                "parentSpanId": "",
                                "name": "faq.answer",
                                "kind": 2,
                                "startTimeUnixNano": str(T0),
                                "endTimeUnixNano": str(T0 + 1500 * MS),
                                "attributes": [
                                    string("prodloop.release", "faq@r3"),
                                    string("prodloop.join_key", "Q-9"),
                                    {"key": "app.retries", "value": {"intValue": "2"}},
                                    {"key": "app.score", "value": {"doubleValue": 0.75}},
                                    {"key": "app.cached", "value": {"boolValue": True}},
                                    {
                                        "key": "app.tags",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"stringValue": "faq"}, {"intValue": "7"}]
                                            }
                                        },
                                    },
                                    {
                                        "key": "app.user",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    string("tier", "gold"),
                                                    {"key": "age_days", "value": {"intValue": "400"}},
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "status": {"code": 1},
                                "unknownFutureField": {"ignored": True},
                            },
                            {
                                "traceId": trace.upper(),
                                "spanId": child,
                                "parentSpanId": root,
                                "name": "chat claude",
                                "kind": 3,
                                "startTimeUnixNano": str(T0 + 100 * MS),
                                "endTimeUnixNano": str(T0 + 1400 * MS),
                                "attributes": [
                                    string("gen_ai.operation.name", "chat"),
                                    string("gen_ai.provider.name", "anthropic"),
                                    string("gen_ai.request.model", "claude-sonnet-4"),
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "321"}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "54"}},
                                    string(
                                        "gen_ai.input.messages",
                                        json.dumps(
                                            [{"role": "user", "parts": [{"type": "text", "content": "How?"}]}]
                                        ),
                                    ),
                                    string(
                                        "gen_ai.output.messages",
                                        json.dumps(
                                            [
                                                {
                                                    "role": "assistant",
                                                    "parts": [{"type": "text", "content": "Like this."}],
                                                    "finish_reason": "end_turn",
                                                }
                                            ]
                                        ),
                                    ),
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": str(T0 + 200 * MS),
                                        "name": "retry",
                                        "attributes": [{"key": "attempt", "value": {"intValue": "1"}}],
                                    }
                                ],
                            },
                        ],
                    }
                ],
            }
        ]
    }


def test_hand_written_otlp_json_is_stored_and_answered_in_json(client: Any, admin_key: str) -> None:
    trace, root, child = trace_id(), span_id(), span_id()
    response = client.post(
        "/v1/traces",
        content=json.dumps(_otlp_json_body(trace, root, child)),
        headers={**auth(admin_key), **JSON},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = json_format.Parse(response.text, ExportTraceServiceResponse())
    assert not answer.HasField("partial_success")

    got = _get(client, admin_key, trace)
    assert got["feature"] == "faq-bot" and got["release"] == "faq@r3" and got["join_key"] == "Q-9"
    assert got["start_time"] == "2023-11-14T22:13:20Z" and got["duration_ms"] == 1500.0
    assert got["input"] == "How?" and got["output"] == "Like this."
    assert got["model"] == "claude-sonnet-4" and got["input_tokens"] == 321 and got["output_tokens"] == 54
    [root_span] = got["spans"]
    assert root_span["span_id"] == root and root_span["kind"] == "server" and root_span["status"] == "ok"
    attributes = root_span["attributes"]
    assert (
        attributes["app.retries"] == 2
        and attributes["app.score"] == 0.75
        and attributes["app.cached"] is True
    )
    assert attributes["app.tags"] == ["faq", 7]
    assert attributes["app.user"] == {"tier": "gold", "age_days": 400}
    assert root_span["resource_attributes"]["deployment.environment"] == "prod"
    [chat] = root_span["children"]
    assert chat["span_id"] == child and chat["kind"] == "client" and chat["offset_ms"] == 100.0
    assert chat["provider"] == "anthropic" and chat["finish_reasons"] is None
    assert chat["output_messages"][0]["finish_reason"] == "end_turn"
    assert chat["events"] == [{"name": "retry", "time_ns": T0 + 200 * MS, "attributes": {"attempt": 1}}]


def test_protobuf_request_is_answered_in_protobuf(client: Any, admin_key: str) -> None:
    trace = trace_id()
    request = otlp_request([otlp_span(trace, span_id(), "root", T0, T0 + MS)])
    response = client.post(
        "/v1/traces", content=request.SerializeToString(), headers={**auth(admin_key), **PROTOBUF}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(response.content)
    assert not answer.HasField("partial_success")
    assert _get(client, admin_key, trace)["span_count"] == 1


def _mixed_request(good_trace: str) -> Any:
    good = otlp_span(good_trace, span_id(), "good", T0, T0 + MS)
    zero_trace = otlp_span(bytes(16), span_id(), "zero-trace", T0, T0 + MS)
    short_trace = otlp_span(bytes.fromhex("0123456789abcdef"), span_id(), "short-trace", T0, T0 + MS)
    zero_span = otlp_span(trace_id(), bytes(8), "zero-span", T0, T0 + MS)
    return otlp_request([zero_trace, good, short_trace, zero_span])


def test_partial_success_in_protobuf_rejects_bad_ids_and_stores_the_rest(
    client: Any, admin_key: str, engine: sa.Engine
) -> None:
    good_trace = trace_id()
    request = _mixed_request(good_trace)
    response = client.post(
        "/v1/traces", content=request.SerializeToString(), headers={**auth(admin_key), **PROTOBUF}
    )
    assert response.status_code == 200
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(response.content)
    assert answer.partial_success.rejected_spans == 3
    message = answer.partial_success.error_message
    assert "zero-trace" in message and "short-trace" in message and "zero-span" in message
    assert row_counts(engine) == {"spans": 1, "traces": 1, "signals": 0}
    assert _get(client, admin_key, good_trace)["spans"][0]["name"] == "good"


def test_partial_success_in_json(client: Any, admin_key: str, engine: sa.Engine) -> None:
    good_trace = trace_id()
    body = json_format.MessageToDict(_mixed_request(good_trace))
    # MessageToDict writes ids as base64; OTLP/JSON wants hex.
    for span in body["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId"):
            span[key] = base64.b64decode(span[key]).hex()
    response = client.post("/v1/traces", content=json.dumps(body), headers={**auth(admin_key), **JSON})
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 3
    assert "zero-trace" in partial["errorMessage"]
    assert row_counts(engine) == {"spans": 1, "traces": 1, "signals": 0}


def test_resent_spans_are_stored_once(
    live_server: Any, admin_key: str, client: Any, engine: sa.Engine
) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-assistant"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace = _support_trace(provider)
    finished = memory.get_finished_spans()

    exporter = OTLPSpanExporter(endpoint=live_server.url + "/v1/traces", headers=auth(admin_key))
    assert exporter.export(finished) == SpanExportResult.SUCCESS
    first = _get(client, admin_key, trace)
    # An exporter retry after a lost answer sends the very same spans again, in a different grouping.
    assert exporter.export(list(reversed(finished))) == SpanExportResult.SUCCESS
    assert exporter.export(finished[:2]) == SpanExportResult.SUCCESS
    exporter.shutdown()
    again = _get(client, admin_key, trace)

    assert again["span_count"] == first["span_count"] == 4
    assert again["input_tokens"] == first["input_tokens"] == 200
    assert again["output_tokens"] == first["output_tokens"] == 42
    assert again["error_count"] == 1
    assert row_counts(engine)["spans"] == 4


def _split_trace(trace: str, root_text: bool) -> tuple[Any, Any]:
    """One trace in two requests: the root and a late LLM call, then the first LLM call, a tool
    call, and an async span that ends after the root."""
    root, chat1, chat2, tool, audit = (span_id() for _ in range(5))
    root_attributes: dict[str, Any] = {"prodloop.release": "r9", "prodloop.join_key": "K-1"}
    if root_text:
        root_attributes |= {"input.value": "root question", "output.value": "root answer"}
    first = [
        otlp_span(trace, root, "handle", T0, T0 + 5000 * MS, attributes=root_attributes),
        otlp_span(
            trace,
            chat2,
            "chat 2",
            T0 + 3000 * MS,
            T0 + 4000 * MS,
            root,
            chat_attributes("gpt-4o", "q2", "a2", 5, 6),
        ),
    ]
    second = [
        otlp_span(
            trace,
            chat1,
            "chat 1",
            T0 + 100 * MS,
            T0 + 900 * MS,
            root,
            chat_attributes("gpt-4o", "q1", "a1", 10, 20),
        ),
        otlp_span(trace, tool, "tool", T0 + 1000 * MS, T0 + 2000 * MS, root, {"gen_ai.tool.name": "search"}),
        otlp_span(trace, audit, "audit", T0 + 4500 * MS, T0 + 7000 * MS, root, error=True),
    ]
    return otlp_request(first), otlp_request(second)


def _send(client: Any, key: str, request: Any) -> None:
    response = client.post(
        "/v1/traces", content=request.SerializeToString(), headers={**auth(key), **PROTOBUF}
    )
    assert response.status_code == 200


def _summary(client: Any, key: str, trace: str) -> dict[str, Any]:
    got = _get(client, key, trace)
    return {k: v for k, v in got.items() if k not in ("trace_id", "spans", "signals")}


@pytest.mark.parametrize("root_text", [True, False], ids=["root-has-text", "root-without-text"])
def test_a_trace_split_over_two_requests_has_one_summary_whatever_the_order(
    client: Any, admin_key: str, root_text: bool
) -> None:
    in_order, reversed_order = trace_id(), trace_id()
    a, b = _split_trace(in_order, root_text)
    _send(client, admin_key, a)
    _send(client, admin_key, b)
    a, b = _split_trace(reversed_order, root_text)
    _send(client, admin_key, b)
    _send(client, admin_key, a)

    one, other = _summary(client, admin_key, in_order), _summary(client, admin_key, reversed_order)
    assert one == other
    expected_io = ("root question", "root answer") if root_text else ("q1", "a1")
    assert (one["input"], one["output"]) == expected_io
    assert one["start_time"] == "2023-11-14T22:13:20Z" and one["end_time"] == "2023-11-14T22:13:27Z"
    assert one["duration_ms"] == 7000.0
    assert one["span_count"] == 5 and one["error_count"] == 1
    assert one["input_tokens"] == 15 and one["output_tokens"] == 26
    assert one["name"] == "handle" and one["release"] == "r9" and one["join_key"] == "K-1"


def test_trace_model_does_not_depend_on_which_request_arrived_first(client: Any, admin_key: str) -> None:
    """A router calls a small model first and a large one later; the spans come in two exports."""

    def requests(trace: str) -> tuple[Any, Any]:
        root, early, late = span_id(), span_id(), span_id()
        return (
            otlp_request(
                [
                    otlp_span(trace, root, "handle", T0, T0 + 10 * MS),
                    otlp_span(
                        trace, late, "chat", T0 + 5 * MS, T0 + 9 * MS, root, {"gen_ai.request.model": "big"}
                    ),
                ]
            ),
            otlp_request(
                [
                    otlp_span(
                        trace, early, "chat", T0 + MS, T0 + 4 * MS, root, {"gen_ai.request.model": "small"}
                    )
                ]
            ),
        )

    in_order, reversed_order = trace_id(), trace_id()
    a, b = requests(in_order)
    _send(client, admin_key, a)
    _send(client, admin_key, b)
    a, b = requests(reversed_order)
    _send(client, admin_key, b)
    _send(client, admin_key, a)
    assert _get(client, admin_key, in_order)["model"] == _get(client, admin_key, reversed_order)["model"]


def test_text_with_a_nul_character_does_not_lose_the_batch(
    live_server: Any, admin_key: str, client: Any, engine: sa.Engine
) -> None:
    """Prompts pasted from binary files or tool output can hold U+0000; SQLite stores it, and
    PostgreSQL must not answer 500 and drop every span of the export with it."""
    exporter = RecordingExporter(live_server.url, admin_key)
    provider = TracerProvider(resource=Resource.create({"service.name": "support-assistant"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("support.app")
    with tracer.start_as_current_span("support.answer") as root:
        root.set_attribute("input.value", "see attachment: PK\x03\x04\x00\x00")
        root.set_attribute("output.value", "I cannot open that file.")
        with tracer.start_as_current_span("chat") as chat:
            for key, value in chat_attributes("gpt-4o", "q\x00", "a", 3, 1).items():
                chat.set_attribute(key, value)
    provider.shutdown()

    assert exporter.results == [SpanExportResult.SUCCESS]
    got = _get(client, admin_key, _hex_trace_id(root))
    assert got["span_count"] == 2
    assert got["input"].startswith("see attachment: PK") and got["output"] == "I cannot open that file."
