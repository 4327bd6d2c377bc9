"""The API shapes of capture: native traces, spans and signals (Pydantic v2).

The OpenAPI spec of the server is generated from these models, and the SDK sends them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")

Message = dict[str, Any]
TextOrMessages = str | list[Message] | None


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def check_trace_id(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.lower()
    if not _TRACE_ID.match(value) or value == "0" * 32:
        raise ValueError(
            f"trace_id {value!r} must be 32 hex characters, not all zero (an OpenTelemetry trace id)"
        )
    return value


def check_span_id(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.lower()
    if not _SPAN_ID.match(value) or value == "0" * 16:
        raise ValueError(
            f"span id {value!r} must be 16 hex characters, not all zero (an OpenTelemetry span id)"
        )
    return value


class _Timed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_time: datetime | None = Field(None, description="ISO 8601 or Unix seconds; default: now.")
    end_time: datetime | None = None
    duration_ms: float | None = Field(None, ge=0, description="Used when end_time is not given.")

    @field_validator("start_time", "end_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _ordered(self) -> _Timed:
        if self.start_time and self.end_time and self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self


class SpanIn(_Timed):
    """One span of a native trace."""

    span_id: str | None = Field(None, description="16 hex characters; generated when absent.")
    parent_span_id: str | None = None
    name: str = Field(..., min_length=1, max_length=500)
    kind: Literal["internal", "server", "client", "producer", "consumer"] = "internal"
    status: Literal["ok", "error", "unset"] = "unset"
    status_message: str | None = None
    operation: str | None = Field(
        None, description="GenAI operation, such as chat, embeddings, execute_tool."
    )
    provider: str | None = None
    model: str | None = Field(None, description="The requested model.")
    response_model: str | None = Field(None, description="The model that served the call, if different.")
    input: TextOrMessages = None
    output: TextOrMessages = None
    input_tokens: int | None = Field(None, ge=0)
    output_tokens: int | None = Field(None, ge=0)
    tool_name: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("span_id", "parent_span_id")
    @classmethod
    def _span_ids(cls, value: str | None) -> str | None:
        return check_span_id(value)


class TraceIn(_Timed):
    """A trace sent without OpenTelemetry: its own fields describe the root span, and ``spans`` add
    the spans below it (a span without ``parent_span_id`` is a child of the root)."""

    trace_id: str | None = Field(None, description="32 hex characters; generated when absent.")
    feature: str | None = Field(None, max_length=200, description="The production feature (service name).")
    release: str | None = Field(None, max_length=200, description="The behavioural version that served it.")
    join_key: str | None = Field(None, max_length=200, description="Business key that later outcomes name.")
    name: str = Field("trace", min_length=1, max_length=500)
    status: Literal["ok", "error", "unset"] = "unset"
    operation: str | None = None
    provider: str | None = None
    model: str | None = None
    response_model: str | None = None
    input: TextOrMessages = None
    output: TextOrMessages = None
    input_tokens: int | None = Field(None, ge=0)
    output_tokens: int | None = Field(None, ge=0)
    conversation_id: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    spans: list[SpanIn] = Field(default_factory=list)

    @field_validator("trace_id")
    @classmethod
    def _trace_ids(cls, value: str | None) -> str | None:
        return check_trace_id(value)

    @model_validator(mode="after")
    def _unique_spans(self) -> TraceIn:
        ids = [s.span_id for s in self.spans if s.span_id]
        if len(ids) != len(set(ids)):
            raise ValueError("spans: span ids repeat")
        return self


class TraceBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    traces: list[TraceIn] = Field(..., min_length=1)


class TraceBatchResult(BaseModel):
    accepted: int = Field(..., description="Traces in the request.")
    spans_stored: int = Field(..., description="Spans that were new (a resent span is not stored twice).")
    trace_ids: list[str]


SignalKind = Literal["explicit", "implicit", "outcome"]
EXPLICIT_NAMES = ("thumbs", "rating", "correction")
IMPLICIT_NAMES = ("regenerate", "copy", "abandon", "edit")


class SignalIn(BaseModel):
    """A piece of feedback or a business outcome about one trace.

    Attach it by ``trace_id`` or by ``join_key`` (the business key a trace carried as
    ``prodloop.join_key``); it may arrive before or long after its trace.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None, max_length=200, description="Your id for the signal: a resent one is stored once."
    )
    trace_id: str | None = None
    join_key: str | None = Field(None, max_length=200)
    kind: SignalKind
    name: str = Field(..., min_length=1, max_length=200)
    value: bool | int | float | str | None = None
    text: str | None = Field(None, description="Correction text, or the user's edited text for `edit`.")
    user_id: str | None = Field(None, max_length=200)
    timestamp: datetime | None = Field(None, description="When it happened; default: when it arrived.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trace_id")
    @classmethod
    def _trace_ids(cls, value: str | None) -> str | None:
        return check_trace_id(value)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="before")
    @classmethod
    def _sugar(cls, data: Any) -> Any:
        # `thumbs_up` / `thumbs_down` are the same signal as `thumbs` with value up / down.
        if isinstance(data, dict) and data.get("name") in ("thumbs_up", "thumbs_down"):
            data = {**data, "kind": data.get("kind", "explicit"), "name": "thumbs", "value": data["name"][7:]}
        return data

    @model_validator(mode="after")
    def _rules(self) -> SignalIn:
        if self.trace_id is None and self.join_key is None:
            raise ValueError("a signal needs trace_id or join_key to say which trace it is about")
        if self.kind == "explicit":
            if self.name not in EXPLICIT_NAMES:
                raise ValueError(
                    f"explicit signal name {self.name!r} is not one of {', '.join(EXPLICIT_NAMES)}"
                )
            if self.name == "thumbs" and self.value not in ("up", "down"):
                raise ValueError(f"thumbs value {self.value!r} must be 'up' or 'down'")
            if self.name == "rating" and (
                isinstance(self.value, bool) or not isinstance(self.value, int) or not 1 <= self.value <= 5
            ):
                raise ValueError(f"rating value {self.value!r} must be a whole number from 1 to 5")
            if self.name == "correction" and not self.text:
                raise ValueError("a correction needs `text`: what the answer should have been")
        elif self.kind == "implicit":
            if self.name not in IMPLICIT_NAMES:
                raise ValueError(
                    f"implicit signal name {self.name!r} is not one of {', '.join(IMPLICIT_NAMES)}"
                )
            if self.name == "edit" and self.text is None:
                raise ValueError("an edit signal needs `text`: the user's edited version of the output")
        elif self.value is None:
            raise ValueError(f"outcome {self.name!r} needs a value, such as true, false, a number or a label")
        return self


class SignalBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signals: list[SignalIn] = Field(..., min_length=1)


class SignalBatchResult(BaseModel):
    accepted: int = Field(..., description="Signals stored by this request.")
    duplicates: int = Field(..., description="Signals whose id was already stored; not stored again.")
    joined: int = Field(..., description="Stored signals whose trace is already known.")
    waiting: int = Field(..., description="Stored signals whose trace has not arrived yet.")
