"""The GenAI mapping: spans as real instrumentations emit them (OpenTelemetry GenAI conventions, current
and older forms, and OpenInference) become the same first-class columns."""

from __future__ import annotations

import json
from typing import Any

from prodloop.capture.genai import is_llm_span, map_genai


def _event(name: str, **attributes: Any) -> dict[str, Any]:
    return {"name": name, "time_ns": 1_700_000_000_000_000_000, "attributes": attributes}


# Current OpenTelemetry GenAI conventions (gen_ai.provider.name, gen_ai.input.messages with parts)

CURRENT_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.request.temperature": 0.3,
    "gen_ai.request.top_p": 0.9,
    "gen_ai.request.top_k": 40.0,
    "gen_ai.request.max_tokens": 256,
    "gen_ai.request.frequency_penalty": 0.0,
    "gen_ai.request.presence_penalty": 0.5,
    "gen_ai.request.seed": 42,
    "gen_ai.request.stop_sequences": ["\n\n", "END"],
    "gen_ai.request.choice.count": 1,
    "gen_ai.response.id": "chatcmpl-9J3uIL87gldCFtiIbyaOvTeYBRA3l",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.usage.input_tokens": 97,
    "gen_ai.usage.output_tokens": 52,
    "gen_ai.conversation.id": "conv_5j66UpCpwteGg4YSxUnt7lPY",
    "server.address": "api.openai.com",
    "server.port": 443,
    "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You are a weather assistant."}]),
    "gen_ai.input.messages": json.dumps(
        [
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool_call",
                        "id": "call_VSPygqK",
                        "name": "get_weather",
                        "arguments": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": "call_VSPygqK", "response": "rainy, 57°F"}],
            },
        ]
    ),
    "gen_ai.output.messages": json.dumps(
        [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "It is rainy and 57°F in Paris."}],
                "finish_reason": "stop",
            }
        ]
    ),
}


def test_current_chat_span_maps_every_column() -> None:
    columns = map_genai(CURRENT_CHAT, [])
    assert columns["operation"] == "chat"
    assert columns["provider"] == "openai"
    assert columns["request_model"] == "gpt-4o"
    assert columns["response_model"] == "gpt-4o-2024-08-06"
    assert columns["input_tokens"] == 97 and columns["output_tokens"] == 52
    assert columns["temperature"] == 0.3 and columns["top_p"] == 0.9 and columns["max_tokens"] == 256
    assert columns["sampling"] == {
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40.0,
        "max_tokens": 256,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.5,
        "seed": 42,
        "stop_sequences": ["\n\n", "END"],
        "choice_count": 1,
    }
    assert columns["conversation_id"] == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert columns["finish_reasons"] == ["stop"]
    assert columns["tool_name"] is None
    assert is_llm_span(columns)


def test_current_messages_keep_roles_parts_and_system_instructions() -> None:
    columns = map_genai(CURRENT_CHAT, [])
    messages = columns["input_messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[0]["content"] == "You are a weather assistant."
    assert messages[1]["content"] == "Weather in Paris?"
    # A tool call has no text, but its parts are kept for the trace view.
    assert messages[2]["content"] is None
    assert messages[2]["parts"][0] == {
        "type": "tool_call",
        "id": "call_VSPygqK",
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert messages[3]["parts"][0]["response"] == "rainy, 57°F"
    # The text a person sent is the user's message, not the system prompt or the tool result.
    assert columns["input_text"] == "Weather in Paris?"
    assert columns["output_text"] == "It is rainy and 57°F in Paris."
    assert columns["output_messages"][0]["finish_reason"] == "stop"


def test_text_parts_are_joined_and_other_parts_skipped() -> None:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": "gemini-2.5-flash",
        "gen_ai.input.messages": json.dumps(
            [
                {
                    "role": "user",
                    "parts": [
                        {"type": "text", "content": "What is in this picture?"},
                        {
                            "type": "uri",
                            "modality": "image",
                            "mime_type": "image/png",
                            "uri": "gs://b/cat.png",
                        },
                        {"type": "text", "content": "Answer in one word."},
                    ],
                }
            ]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "reasoning", "content": "It has whiskers..."},
                        {"type": "text", "content": "Cat."},
                    ],
                    "finish_reason": "stop",
                }
            ]
        ),
    }
    columns = map_genai(attributes, [])
    assert columns["input_text"] == "What is in this picture?\nAnswer in one word."
    assert columns["output_text"] == "Cat."
    assert columns["provider"] == "gcp.gemini"


def test_output_that_is_only_a_tool_call_has_no_text() -> None:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4",
        "gen_ai.response.finish_reasons": ["tool_use"],
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "Book it"}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "tool_call", "id": "toolu_01", "name": "book", "arguments": {"id": 7}}
                    ],
                    "finish_reason": "tool_use",
                }
            ]
        ),
    }
    columns = map_genai(attributes, [])
    assert columns["input_text"] == "Book it"
    assert columns["output_text"] is None
    assert columns["output_messages"][0]["parts"][0]["name"] == "book"
    assert columns["finish_reasons"] == ["tool_use"]


def test_zero_tokens_are_zero_not_missing() -> None:
    columns = map_genai({"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 0}, [])
    assert columns["input_tokens"] == 12 and columns["output_tokens"] == 0


def test_tool_execution_span() -> None:
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.call.id": "call_VSPygqK",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Current weather for a city",
    }
    columns = map_genai(attributes, [])
    assert columns["operation"] == "execute_tool"
    assert columns["tool_name"] == "get_weather"
    assert not is_llm_span(columns)


def test_embeddings_span_is_not_an_llm_call() -> None:
    attributes = {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "text-embedding-3-small",
        "gen_ai.usage.input_tokens": 8,
        "gen_ai.embeddings.dimension.count": 1536,
    }
    columns = map_genai(attributes, [])
    assert columns["operation"] == "embeddings" and columns["request_model"] == "text-embedding-3-small"
    assert not is_llm_span(columns)


def test_current_names_win_over_older_ones_sent_alongside() -> None:
    attributes = {
        "gen_ai.provider.name": "azure.ai.openai",
        "gen_ai.system": "openai",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.prompt_tokens": 999,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.completion_tokens": 999,
    }
    columns = map_genai(attributes, [])
    assert columns["provider"] == "azure.ai.openai"
    assert (columns["input_tokens"], columns["output_tokens"]) == (10, 5)


# Older forms: gen_ai.system, prompt/completion tokens, flat indexed messages, message events

OPENLLMETRY_CHAT = {
    "llm.request.type": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-3.5-turbo",
    "gen_ai.request.temperature": 0.7,
    "gen_ai.request.max_tokens": 100,
    "gen_ai.response.model": "gpt-3.5-turbo-0125",
    "gen_ai.usage.prompt_tokens": 25,
    "gen_ai.usage.completion_tokens": 9,
    "llm.usage.total_tokens": 34,
    "llm.is_streaming": False,
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "You are terse.",
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": "Tell me a joke about OpenTelemetry",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "Why did the span break up? Too many attributes.",
    "gen_ai.completion.0.finish_reason": "stop",
}


def test_older_flat_prompt_and_completion_attributes() -> None:
    columns = map_genai(OPENLLMETRY_CHAT, [])
    assert columns["provider"] == "openai"
    assert columns["request_model"] == "gpt-3.5-turbo" and columns["response_model"] == "gpt-3.5-turbo-0125"
    assert columns["input_tokens"] == 25 and columns["output_tokens"] == 9
    assert columns["temperature"] == 0.7 and columns["max_tokens"] == 100
    assert [m["role"] for m in columns["input_messages"]] == ["system", "user"]
    assert columns["input_text"] == "Tell me a joke about OpenTelemetry"
    assert columns["output_text"] == "Why did the span break up? Too many attributes."
    assert columns["output_messages"][0]["finish_reason"] == "stop"
    assert is_llm_span(columns)


def test_flat_messages_are_ordered_by_number_not_by_text() -> None:
    attributes: dict[str, Any] = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4"}
    for i in range(12):
        attributes[f"gen_ai.prompt.{i}.role"] = "user" if i % 2 == 0 else "assistant"
        attributes[f"gen_ai.prompt.{i}.content"] = f"turn {i}"
    columns = map_genai(attributes, [])
    assert [m["content"] for m in columns["input_messages"]] == [f"turn {i}" for i in range(12)]
    assert columns["input_text"] == "turn 10"  # the last user turn, not "turn 8"


def test_openllmetry_embedding_span_is_not_an_llm_call() -> None:
    """OpenLLMetry names the operation in ``llm.request.type``; an embedding call must not count as
    the trace's model or add its tokens to the trace's LLM usage."""
    attributes = {
        "llm.request.type": "embedding",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "text-embedding-ada-002",
        "gen_ai.response.model": "text-embedding-ada-002",
        "gen_ai.usage.prompt_tokens": 7,
        "llm.usage.total_tokens": 7,
        "gen_ai.prompt.0.content": "refund policy",
    }
    assert not is_llm_span(map_genai(attributes, []))


def test_message_events_with_content_attributes() -> None:
    events = [
        _event("gen_ai.system.message", **{"gen_ai.system": "openai", "content": "You are terse."}),
        _event("gen_ai.user.message", **{"gen_ai.system": "openai", "content": "What's 2+2?"}),
        _event("gen_ai.assistant.message", **{"gen_ai.system": "openai", "content": "4"}),
        _event("gen_ai.user.message", **{"gen_ai.system": "openai", "content": "And times 3?"}),
        _event(
            "gen_ai.choice",
            **{
                "gen_ai.system": "openai",
                "index": 0,
                "finish_reason": "stop",
                "message": json.dumps({"role": "assistant", "content": "12"}),
            },
        ),
    ]
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 1,
    }
    columns = map_genai(attributes, events)
    assert [m["role"] for m in columns["input_messages"]] == ["system", "user", "assistant", "user"]
    assert columns["input_text"] == "And times 3?"
    assert columns["output_text"] == "12"
    assert columns["output_messages"][0]["finish_reason"] == "stop"
    assert columns["provider"] == "openai"


def test_message_events_with_json_event_content() -> None:
    """Azure AI Inference writes each event's body as JSON in ``gen_ai.event.content``."""
    system = "az.ai.inference"
    events = [
        _event(
            "gen_ai.user.message",
            **{
                "gen_ai.system": system,
                "gen_ai.event.content": json.dumps({"role": "user", "content": "Hola"}),
            },
        ),
        _event(
            "gen_ai.choice",
            **{
                "gen_ai.system": system,
                "gen_ai.event.content": json.dumps(
                    {"finish_reason": "stop", "index": 0, "message": {"content": "¡Hola! ¿Qué tal?"}}
                ),
            },
        ),
    ]
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.system": system, "gen_ai.request.model": "Phi-4"}
    columns = map_genai(attributes, events)
    assert columns["input_text"] == "Hola"
    assert columns["output_text"] == "¡Hola! ¿Qué tal?"
    assert columns["output_messages"][0]["role"] == "assistant"
    assert columns["output_messages"][0]["finish_reason"] == "stop"


def test_oldest_content_prompt_and_completion_events() -> None:
    events = [
        _event("gen_ai.content.prompt", **{"gen_ai.prompt": "user: What is LLM observability?"}),
        _event("gen_ai.content.completion", **{"gen_ai.completion": "Watching what your LLM app does."}),
    ]
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 14,
        "gen_ai.usage.output_tokens": 6,
    }
    columns = map_genai(attributes, events)
    assert columns["input_text"] == "user: What is LLM observability?"
    assert columns["output_text"] == "Watching what your LLM app does."


def test_oldest_content_events_with_json_messages() -> None:
    events = [
        _event(
            "gen_ai.content.prompt",
            **{
                "gen_ai.prompt": json.dumps(
                    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
                )
            },
        ),
        _event(
            "gen_ai.content.completion",
            **{"gen_ai.completion": json.dumps([{"role": "assistant", "content": "Hello"}])},
        ),
    ]
    columns = map_genai({"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4"}, events)
    assert [m["role"] for m in columns["input_messages"]] == ["system", "user"]
    assert columns["input_text"] == "Hi" and columns["output_text"] == "Hello"


def test_attributes_win_over_events_when_both_are_sent() -> None:
    attributes = {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "attr"}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "out"}]}]
        ),
    }
    events = [
        _event("gen_ai.user.message", content="event"),
        _event("gen_ai.choice", message='{"content": "e"}'),
    ]
    columns = map_genai(attributes, events)
    assert columns["input_text"] == "attr" and columns["output_text"] == "out"


# OpenInference (Arize Phoenix instrumentations)

OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "openai",
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.invocation_parameters": json.dumps(
        {"model": "gpt-4o-mini", "temperature": 0.1, "max_tokens": 200, "top_p": 1}
    ),
    "input.value": json.dumps({"messages": [{"role": "user", "content": "Hi"}], "model": "gpt-4o-mini"}),
    "input.mime_type": "application/json",
    "output.value": json.dumps({"id": "chatcmpl-1", "choices": [{"message": {"content": "Hello!"}}]}),
    "output.mime_type": "application/json",
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "Be brief.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.content": "Hi",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "Hello!",
    "llm.token_count.prompt": 12,
    "llm.token_count.completion": 3,
    "llm.token_count.total": 15,
    "session.id": "sess-42",
}


def test_openinference_llm_span() -> None:
    columns = map_genai(OPENINFERENCE_LLM, [])
    assert columns["operation"] == "chat"
    assert columns["provider"] == "openai"
    assert columns["request_model"] == columns["response_model"] == "gpt-4o-mini-2024-07-18"
    assert columns["input_tokens"] == 12 and columns["output_tokens"] == 3
    assert columns["temperature"] == 0.1 and columns["max_tokens"] == 200 and columns["top_p"] == 1.0
    assert columns["sampling"] == {"temperature": 0.1, "max_tokens": 200, "top_p": 1}
    assert columns["conversation_id"] == "sess-42"
    assert [m["role"] for m in columns["input_messages"]] == ["system", "user"]
    # The messages give the text; input.value holds the raw request JSON.
    assert columns["input_text"] == "Hi"
    assert columns["output_text"] == "Hello!"
    assert is_llm_span(columns)


def test_openinference_message_contents_lists() -> None:
    """A message with several parts uses ``message.contents.N.message_content.*`` instead of ``content``."""
    prefix = "llm.input_messages.0.message"
    attributes = {
        **{k: v for k, v in OPENINFERENCE_LLM.items() if not k.startswith("llm.input_messages")},
        f"{prefix}.role": "user",
        f"{prefix}.contents.0.message_content.type": "text",
        f"{prefix}.contents.0.message_content.text": "Describe this image.",
        f"{prefix}.contents.1.message_content.type": "image",
        f"{prefix}.contents.1.message_content.image.image.url": "https://example.com/cat.png",
        "input.value": json.dumps(
            {
                "model": "gpt-4o-mini",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Describe this image."},
                            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                        ],
                    }
                ],
            }
        ),
    }
    columns = map_genai(attributes, [])
    assert columns["input_text"] == "Describe this image."


def test_openinference_chain_span_with_plain_text_values() -> None:
    attributes = {
        "openinference.span.kind": "CHAIN",
        "input.value": "How do I reset my password?",
        "output.value": "Open Settings, then Security.",
        "session.id": "s-1",
    }
    columns = map_genai(attributes, [])
    assert columns["operation"] == "chain"
    assert columns["input_text"] == "How do I reset my password?"
    assert columns["output_text"] == "Open Settings, then Security."
    assert not is_llm_span(columns)


def test_openinference_tool_retriever_and_embedding_kinds() -> None:
    tool = map_genai(
        {"openinference.span.kind": "TOOL", "tool.name": "search_docs", "input.value": '{"query": "reset"}'},
        [],
    )
    assert tool["operation"] == "execute_tool" and tool["tool_name"] == "search_docs"
    assert tool["input_text"] == '{"query": "reset"}'
    assert map_genai({"openinference.span.kind": "RETRIEVER"}, [])["operation"] == "retrieval"
    embedding = map_genai({"openinference.span.kind": "EMBEDDING", "embedding.model_name": "bge-small"}, [])
    assert embedding["operation"] == "embeddings" and not is_llm_span(embedding)
    assert map_genai({"openinference.span.kind": "agent"}, [])["operation"] == "invoke_agent"


def test_a_span_without_genai_attributes_maps_to_nothing() -> None:
    columns = map_genai({"http.request.method": "POST", "url.path": "/answer"}, [])
    assert all(value is None for value in columns.values()), columns
    assert not is_llm_span(columns)


def test_spans_without_genai_attributes_map_to_the_same_empty_columns() -> None:
    """Spans with nothing to map take a shortcut; it must give exactly what the full mapping gives."""
    shortcut = map_genai({"http.method": "GET", "db.system": "postgresql"}, [])
    full = map_genai({"gen_ai.unrelated": "x"}, [])
    assert shortcut == full
    assert all(value is None for value in shortcut.values())
