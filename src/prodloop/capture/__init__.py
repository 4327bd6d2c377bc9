"""Capture: what happened in production (traces, over OTLP or native JSON) and what users and the
business said about it (signals)."""

from prodloop.capture.native import native_span_records, new_span_id, new_trace_id
from prodloop.capture.otlp import encode_response, parse_request, span_records
from prodloop.capture.queries import (
    TraceFilter,
    distinct_values,
    get_trace,
    list_features,
    list_traces,
    matching_traces,
    trace_summaries,
)
from prodloop.capture.shapes import (
    SignalBatch,
    SignalBatchResult,
    SignalIn,
    SpanIn,
    TraceBatch,
    TraceBatchResult,
    TraceIn,
)
from prodloop.capture.signals import feature_coverage, record_signals
from prodloop.capture.traces import ingest_otlp, ingest_traces, write_spans

__all__ = [
    "SignalBatch",
    "SignalBatchResult",
    "SignalIn",
    "SpanIn",
    "TraceBatch",
    "TraceBatchResult",
    "TraceFilter",
    "TraceIn",
    "distinct_values",
    "encode_response",
    "feature_coverage",
    "get_trace",
    "ingest_otlp",
    "ingest_traces",
    "list_features",
    "list_traces",
    "matching_traces",
    "native_span_records",
    "new_span_id",
    "new_trace_id",
    "parse_request",
    "record_signals",
    "span_records",
    "trace_summaries",
    "write_spans",
]
