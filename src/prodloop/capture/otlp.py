"""OTLP/HTTP trace requests: decode protobuf or JSON (optionally gzip) into span records, and encode
the ``ExportTraceServiceResponse`` in the request's own encoding.

See the OTLP specification, "OTLP/HTTP": JSON uses hex strings for trace and span ids, integer enum
values, and lowerCamelCase field names; receivers ignore unknown fields.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from prodloop.capture.genai import map_genai
from prodloop.capture.queries import MAX_NS
from prodloop.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_SPAN_KINDS = {
    Span.SPAN_KIND_UNSPECIFIED: "unspecified",
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
_STATUS = {Status.STATUS_CODE_UNSET: "unset", Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


def media_type(content_type: str | None) -> str:
    """The OTLP encoding named by a Content-Type header, or 415."""
    base = (content_type or "").split(";")[0].strip().lower()
    if base in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if base == JSON:
        return JSON
    raise UnsupportedMediaType(
        f"content type {content_type or '(none)'!r} is not OTLP; send {PROTOBUF} or {JSON}",
        {"content_type": content_type},
    )


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip or deflate), refusing output beyond ``limit`` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"content encoding {encoding!r} is not supported; use gzip or none",
            {"content_encoding": encoding},
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    parts: list[bytes] = []
    size = 0
    rest = body
    # A gzip body may hold several members one after another (RFC 1952); read them all.
    while True:
        decompressor = zlib.decompressobj(wbits)
        try:
            out = decompressor.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise InvalidRequest(f"body is not valid {encoding} data: {exc}") from exc
        size += len(out)
        if size > limit or decompressor.unconsumed_tail:
            raise PayloadTooLarge(
                f"decompressed body is larger than the limit of {limit} bytes (PRODLOOP_MAX_REQUEST_BYTES)",
                {"limit": limit},
            )
        if not decompressor.eof:
            raise InvalidRequest(f"body is truncated {encoding} data")
        parts.append(out)
        rest = decompressor.unused_data
        if not rest or encoding != "gzip":
            return b"".join(parts)


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping expects base64 for bytes fields."""
    if isinstance(node, dict):
        for key in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
            value = node.get(key)
            if isinstance(value, str) and value:
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError as exc:
                    raise InvalidRequest(f"{key} {value!r} is not a hex string") from exc
        for value in node.values():
            if isinstance(value, dict | list):
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def parse_request(body: bytes, encoding: str) -> ExportTraceServiceRequest:
    """Parse an ``ExportTraceServiceRequest`` in either OTLP encoding; 400 if it cannot be read."""
    request = ExportTraceServiceRequest()
    if encoding == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise InvalidRequest(
                f"body is not a valid OTLP protobuf ExportTraceServiceRequest: {exc}"
            ) from exc
        return request
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidRequest("OTLP/JSON body must be an object with `resourceSpans`")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidRequest(f"body is not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    return request


def encode_response(rejected: int, message: str, encoding: str) -> bytes:
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if encoding == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a plain Python value."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def attributes_dict(key_values: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in key_values}


def span_records(request: ExportTraceServiceRequest) -> tuple[list[dict[str, Any]], list[str]]:
    """Span records for :func:`prodloop.capture.traces.write_spans`, and one reason per rejected span."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for resource_spans in request.resource_spans:
        resource = attributes_dict(resource_spans.resource.attributes)
        service = resource.get("service.name")
        service_name = service if isinstance(service, str) else None
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name or None
            scope_version = scope_spans.scope.version or None
            for span in scope_spans.spans:
                trace_id = span.trace_id.hex()
                span_id = span.span_id.hex()
                if len(span.trace_id) != 16 or not any(span.trace_id):
                    problems.append(f"span {span.name!r}: trace id {trace_id!r} is not 16 non-zero bytes")
                    continue
                if len(span.span_id) != 8 or not any(span.span_id):
                    problems.append(f"span {span.name!r}: span id {span_id!r} is not 8 non-zero bytes")
                    continue
                if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
                    problems.append(f"span {span_id}: ends before it starts")
                    continue
                if max(span.start_time_unix_nano, span.end_time_unix_nano) > MAX_NS:
                    problems.append(f"span {span_id}: time is after what prodloop stores (the year 2262)")
                    continue
                attributes = attributes_dict(span.attributes)
                events = [
                    {
                        "name": event.name,
                        "time_ns": event.time_unix_nano,
                        "attributes": attributes_dict(event.attributes),
                    }
                    for event in span.events
                ]
                links = [
                    {
                        "trace_id": link.trace_id.hex(),
                        "span_id": link.span_id.hex(),
                        "attributes": attributes_dict(link.attributes),
                    }
                    for link in span.links
                ]
                parent = span.parent_span_id.hex() if any(span.parent_span_id) else None
                release = attributes.get("prodloop.release")
                join_key = attributes.get("prodloop.join_key")
                record = {
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "parent_span_id": parent,
                    "name": span.name,
                    "kind": _SPAN_KINDS.get(span.kind, "unspecified"),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano or span.start_time_unix_nano,
                    "status_code": _STATUS.get(span.status.code, "unset"),
                    "status_message": span.status.message or None,
                    "service_name": service_name,
                    "scope_name": scope_name,
                    "scope_version": scope_version,
                    "release": None if release is None else str(release),
                    "join_key": None if join_key is None else str(join_key),
                    "attributes": attributes,
                    "resource_attributes": resource,
                    "events": events,
                    "links": links,
                }
                record.update(map_genai(attributes, events))
                records.append(record)
    return records, problems
