"""Map OpenTelemetry GenAI semantic conventions (current and older forms) and OpenInference's
attributes onto prodloop's first-class span columns.

The input is a span's attributes as plain Python values and its events; the output is a dict of
column values. Nothing is dropped: the caller stores every attribute as it came as well.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

#: Operations whose spans are calls of a language model (GenAI `gen_ai.operation.name`).
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion", "llm"})

_OPENINFERENCE_OPERATIONS = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "TOOL": "execute_tool",
    "RETRIEVER": "retrieval",
    "AGENT": "invoke_agent",
    "CHAIN": "chain",
    "RERANKER": "rerank",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluate",
}

_OPENLLMETRY_OPERATIONS = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
    "rerank": "rerank",
}

_SAMPLING_KEYS = {
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.top_k": "top_k",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.stop_sequences": "stop_sequences",
    "gen_ai.request.choice.count": "choice_count",
}

_INDEXED = re.compile(r"^(gen_ai\.prompt|gen_ai\.completion)\.(\d+)\.(.+)$")
_OI_CONTENT = re.compile(r"^contents\.(\d+)\.message_content\.(.+)$")
_OI_INDEXED = re.compile(r"^llm\.(input_messages|output_messages)\.(\d+)\.message\.(.+)$")


def _first(attributes: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _maybe_json(value: Any) -> Any:
    """Structured GenAI attributes travel as JSON strings in OTLP; decode them when they are."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _parts_text(parts: Any) -> str | None:
    """Text of a message's content: a string, or the text parts of a `parts` list."""
    if parts is None:
        return None
    if isinstance(parts, str):
        return parts
    if isinstance(parts, list):
        texts = []
        for part in parts:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                text = part.get("content", part.get("text"))
                if isinstance(text, str) and part.get("type", "text") in (
                    "text",
                    "input_text",
                    "output_text",
                ):
                    texts.append(text)
        return "\n".join(texts) if texts else None
    if isinstance(parts, dict):
        return _parts_text(parts.get("content", parts.get("text")))
    return str(parts)


def _normalise_message(message: Any, default_role: str | None = None) -> dict[str, Any] | None:
    """One message as ``{"role", "content", ...}``, whatever convention it came in."""
    if isinstance(message, str):
        return {"role": default_role or "user", "content": message}
    if not isinstance(message, dict):
        return None
    inner = message.get("message")
    if isinstance(inner, dict):  # `gen_ai.choice` events: {"index", "finish_reason", "message": {...}}
        out = _normalise_message(inner, default_role) or {}
        if "finish_reason" in message:
            out["finish_reason"] = message["finish_reason"]
        return out
    out = {k: v for k, v in message.items() if k not in ("parts", "content")}
    out["role"] = message.get("role") or default_role
    content = message.get("parts", message.get("content"))
    out["content"] = _parts_text(content)
    if isinstance(content, list):
        out["parts"] = content
    return out


def _messages(value: Any, default_role: str | None = None) -> list[dict[str, Any]] | None:
    value = _maybe_json(value)
    if value is None:
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return [{"role": default_role or "user", "content": str(value)}]
    messages = [m for m in (_normalise_message(item, default_role) for item in value) if m]
    return messages or None


def _indexed_messages(attributes: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Flat indexed messages, the older ``gen_ai.prompt.0.role`` and OpenInference's
    ``llm.input_messages.0.message.content``, collected in one pass over the attributes:
    ``{"gen_ai.prompt": [...], "input_messages": [...], ...}``."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in attributes.items():
        if not (key.startswith("gen_ai.") or key.startswith("llm.")):
            continue
        match = _INDEXED.match(key) or _OI_INDEXED.match(key)
        if match:
            found.setdefault(match.group(1), {}).setdefault(int(match.group(2)), {})[match.group(3)] = value
    return {
        group: [_normalise_message(_gather_contents(by_index[i])) or {} for i in sorted(by_index)]
        for group, by_index in found.items()
    }


def _gather_contents(fields: dict[str, Any]) -> dict[str, Any]:
    """OpenInference writes a message of several parts as ``contents.M.message_content.{type,text,…}``;
    turn those keys into a ``parts`` list like the GenAI conventions' own."""
    parts: dict[int, dict[str, Any]] = {}
    message: dict[str, Any] = {}
    for key, value in fields.items():
        match = _OI_CONTENT.match(key)
        if match:
            parts.setdefault(int(match.group(1)), {})[match.group(2)] = value
        else:
            message[key] = value
    if parts and "content" not in message:
        message["parts"] = [
            {"type": part.get("type", "text"), "content": part.get("text"), **part}
            for _, part in sorted(parts.items())
        ]
    return message


def _event_messages(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages carried as span events: ``gen_ai.{system,user,assistant,tool}.message``, ``gen_ai.choice``,
    and the oldest form ``gen_ai.content.prompt`` / ``gen_ai.content.completion``."""
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for event in events:
        name = event.get("name", "")
        attrs = event.get("attributes") or {}
        if name in (
            "gen_ai.system.message",
            "gen_ai.user.message",
            "gen_ai.assistant.message",
            "gen_ai.tool.message",
        ):
            role = name.split(".")[1]
            body = _first(attrs, "content", "gen_ai.event.content", "body")
            body = _maybe_json(body)
            message = _normalise_message(body if isinstance(body, dict) else {"content": body}, role)
            if message:
                message["role"] = attrs.get("role") or message.get("role") or role
                inputs.append(message)
        elif name == "gen_ai.choice":
            body = _maybe_json(_first(attrs, "message", "gen_ai.event.content", "content", "body"))
            message = _normalise_message(body if isinstance(body, dict) else {"content": body}, "assistant")
            if message:
                if "finish_reason" in attrs:
                    message["finish_reason"] = attrs["finish_reason"]
                outputs.append(message)
        elif name == "gen_ai.content.prompt":
            inputs.extend(_messages(attrs.get("gen_ai.prompt"), "user") or [])
        elif name == "gen_ai.content.completion":
            outputs.extend(_messages(attrs.get("gen_ai.completion"), "assistant") or [])
    return inputs, outputs


def _input_text(messages: list[dict[str, Any]] | None) -> str | None:
    """The text a person sent: the last user message, else the last message."""
    if not messages:
        return None
    for message in reversed(messages):
        if message.get("role") == "user" and message.get("content"):
            return str(message["content"])
    content = messages[-1].get("content")
    return None if content is None else str(content)


def _output_text(messages: list[dict[str, Any]] | None) -> str | None:
    if not messages:
        return None
    content = messages[0].get("content")
    return None if content is None else str(content)


#: Prefixes of every attribute that the mapping reads; a span with none of them maps to nothing.
_READ_PREFIXES = ("gen_ai.", "llm.", "openinference.", "input.", "output.", "session.", "tool.", "prodloop.")
_NOTHING: dict[str, Any] = {
    "operation": None,
    "provider": None,
    "request_model": None,
    "response_model": None,
    "input_tokens": None,
    "output_tokens": None,
    "temperature": None,
    "top_p": None,
    "max_tokens": None,
    "sampling": None,
    "conversation_id": None,
    "tool_name": None,
    "finish_reasons": None,
    "input_messages": None,
    "output_messages": None,
    "input_text": None,
    "output_text": None,
}


def map_genai(attributes: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Column values for one span, from its attributes and events."""
    if not events and not any(key.startswith(_READ_PREFIXES) for key in attributes):
        return dict(_NOTHING)
    a = attributes
    operation = _first(a, "gen_ai.operation.name")
    oi_kind = a.get("openinference.span.kind")
    request_type = a.get("llm.request.type")  # OpenLLMetry
    if operation is None and isinstance(request_type, str):
        operation = _OPENLLMETRY_OPERATIONS.get(request_type.lower(), request_type.lower())
    if operation is None and isinstance(oi_kind, str):
        operation = _OPENINFERENCE_OPERATIONS.get(oi_kind.upper(), oi_kind.lower())

    sampling = {short: a[key] for key, short in _SAMPLING_KEYS.items() if key in a}
    invocation = _maybe_json(a.get("llm.invocation_parameters"))
    if isinstance(invocation, dict):
        for key in (
            "temperature",
            "top_p",
            "top_k",
            "max_tokens",
            "frequency_penalty",
            "presence_penalty",
            "seed",
        ):
            if key in invocation and key not in sampling:
                sampling[key] = invocation[key]

    input_messages = _messages(a.get("gen_ai.input.messages"))
    output_messages = _messages(a.get("gen_ai.output.messages"), "assistant")
    system = _messages(a.get("gen_ai.system_instructions"), "system")
    if input_messages is None or output_messages is None:
        indexed = _indexed_messages(a)
        if input_messages is None:
            input_messages = indexed.get("gen_ai.prompt") or indexed.get("input_messages")
        if output_messages is None:
            output_messages = indexed.get("gen_ai.completion") or indexed.get("output_messages")
    if (input_messages is None or output_messages is None) and events:
        event_inputs, event_outputs = _event_messages(events)
        input_messages = input_messages or event_inputs or None
        output_messages = output_messages or event_outputs or None
    if system and input_messages is not None:
        input_messages = system + input_messages

    input_text = _input_text(input_messages)
    output_text = _output_text(output_messages)
    if input_text is None:
        input_text = _as_str(_first(a, "input.value", "prodloop.input"))
    if output_text is None:
        output_text = _as_str(_first(a, "output.value", "prodloop.output"))

    finish = _maybe_json(a.get("gen_ai.response.finish_reasons"))
    if isinstance(finish, str):
        finish = [finish]

    return {
        "operation": _as_str(operation),
        "provider": _as_str(_first(a, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")),
        "request_model": _as_str(_first(a, "gen_ai.request.model", "llm.model_name")),
        "response_model": _as_str(_first(a, "gen_ai.response.model", "llm.model_name")),
        "input_tokens": _as_int(
            _first(a, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
        ),
        "output_tokens": _as_int(
            _first(
                a,
                "gen_ai.usage.output_tokens",
                "gen_ai.usage.completion_tokens",
                "llm.token_count.completion",
            )
        ),
        "temperature": _as_float(sampling.get("temperature")),
        "top_p": _as_float(sampling.get("top_p")),
        "max_tokens": _as_int(sampling.get("max_tokens")),
        "sampling": sampling or None,
        "conversation_id": _as_str(_first(a, "gen_ai.conversation.id", "session.id")),
        "tool_name": _as_str(_first(a, "gen_ai.tool.name", "tool.name")),
        "finish_reasons": finish if isinstance(finish, list) else None,
        "input_messages": input_messages,
        "output_messages": output_messages,
        "input_text": input_text,
        "output_text": output_text,
    }


def is_llm_span(columns: dict[str, Any]) -> bool:
    """Whether a span (as mapped columns) is a call of a language model."""
    operation = columns.get("operation")
    if operation in LLM_OPERATIONS:
        return True
    return operation is None and bool(columns.get("request_model") or columns.get("response_model"))
