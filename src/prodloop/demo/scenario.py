"""The demo scenario, generated without touching the store: a customer-support assistant over 30 days.

What happens (for the default 30 days; other lengths scale the days):

- Acme Home's support assistant (feature ``support-assistant``) answers about 700 customer messages a
  day, more on weekdays and in working hours. Each answer is one trace: a root span ``support.answer``
  with the message and the answer, a retrieval span, sometimes a tool span, and an LLM span.
- Day 10: a prompt change ships as release ``support-v2`` (before: ``support-v1``). Answers get shorter
  and offer a hand-off; the handled rate moves a little.
- Day 20: the Acme Vault smart lock launches. Questions about it grow to about 40% of the traffic. The
  help center knows nothing about it, so retrieval returns unrelated articles and most answers are
  hedges or instructions for other devices. Latency does not change; the handled rate (the ``resolved``
  outcome that the helpdesk reports, hours to days later, by ticket id) falls from about 70% to 50%.
- Signals: explicit feedback on about 1% of traces, implicit signals (copy, regenerate, abandon, and
  edits of e-mail drafts by agents), and late outcomes; outcomes not yet reported at ``end`` are absent.
- About 1% of traces never reach the store (an exporter dropped them); their outcomes still arrive.

Everything comes from one :class:`random.Random` seeded with the arguments: the same arguments give the
same traces, ids, texts and values.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prodloop.capture.shapes import SignalIn, SpanIn, TraceIn
from prodloop.demo.catalog import ARTICLES, INTENT_WEIGHTS, TOPICS, Topic
from prodloop.demo.conversation import (
    FALLBACK_ANSWER,
    assistant_answer,
    corrected_answer,
    customer_message,
    prompt_messages,
    tool_call,
)
from prodloop.demo.launch import INTENT as LAUNCH_INTENT
from prodloop.demo.launch import VAULT_TOPICS
from prodloop.demo.signals import ticket_signals
from prodloop.demo.slots import Slots

FEATURE = "support-assistant"
RELEASES = ("support-v1", "support-v2")
REQUEST_MODEL = "gpt-4o-mini"
MODEL = "gpt-4o-mini-2024-07-18"
#: Share of the traffic about the new product once its launch has ramped up.
LAUNCH_PEAK_SHARE = 0.40

_HOUR_WEIGHTS = (3, 2, 1.5, 1, 1, 1, 1.5, 3, 5, 6.5, 7, 7, 7.5, 8, 8.5, 8.5, 8, 7.5, 7, 6.5, 6, 5, 4.5, 3.5)
_WEEKDAY_WEIGHTS = (1.12, 1.08, 1.04, 1.0, 0.96, 0.72, 0.66)
_CHANNELS = ("web", "app", "email")
_CHANNEL_WEIGHTS = (0.62, 0.27, 0.11)
_LOCALES = ("en-US", "en-US", "en-US", "en-GB", "en-CA", "en-IE")
_QUALITY = ("good", "partial", "bad")
#: Answer quality for requests the help center covers, by release and by whether retrieval found the article.
_KNOWN_QUALITY = {
    ("support-v1", True): (0.78, 0.15, 0.07),
    ("support-v1", False): (0.25, 0.40, 0.35),
    ("support-v2", True): (0.81, 0.13, 0.06),
    ("support-v2", False): (0.27, 0.40, 0.33),
}
_LAUNCH_QUALITY = (0.02, 0.2, 0.78)
_RETRIEVAL_HIT = 0.92
_ERROR_RATE = 0.005
_LOST_RATE = 0.012


@dataclass(frozen=True)
class Ticket:
    """The ground truth of one support request, which the store never sees."""

    ticket: str
    trace_id: str
    day: int
    intent: str
    topic: str
    release: str
    #: good, partial, bad, or error (the model call failed).
    quality: str
    #: Whether the assistant's answer resolved the ticket (what the ``resolved`` outcome reports).
    handled: bool
    #: True when the trace never reached the store (its outcomes arrive anyway).
    lost: bool


@dataclass(frozen=True)
class DemoTrace:
    """A native trace and the span id of its root, so that a reload stores no span twice."""

    trace: TraceIn
    root_span_id: str


@dataclass(frozen=True)
class DemoScenario:
    seed: int
    start: datetime
    end: datetime
    days: int
    traces: list[DemoTrace]
    signals: list[SignalIn]
    tickets: list[Ticket]


def default_end() -> datetime:
    """Today's midnight, UTC: the end of the last day of the default scenario."""
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def prompt_change_day(days: int) -> int:
    """The day (from 0) on which ``support-v2`` replaces ``support-v1``: day 10 of 30."""
    return max(1, round(days / 3))


def launch_day(days: int) -> int:
    """The day (from 0) on which the Acme Vault launches: day 20 of 30."""
    return max(1, round(days * 2 / 3))


def launch_share(day: int, days: int) -> float:
    """The share of requests about the new product on ``day``: a trickle of pre-order questions in
    the days before the launch, then a ramp to :data:`LAUNCH_PEAK_SHARE` within a week (of 30 days)."""
    start = launch_day(days)
    if day < start:
        return 0.003 if day >= start - 3 else 0.0
    ramp = max(1, round(days * 7 / 30))
    return 0.07 + (LAUNCH_PEAK_SHARE - 0.07) * min(1.0, (day - start) / ramp)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _daily_counts(rng: random.Random, start: datetime, days: int, per_day: int) -> list[int]:
    weights = [
        _WEEKDAY_WEIGHTS[(start + timedelta(days=d)).weekday()]
        * (1 + 0.4 * launch_share(d, days))
        * (1 + rng.gauss(0, 0.04))
        for d in range(days)
    ]
    scale = days * per_day / sum(weights)
    return [round(w * scale) for w in weights]


def _seconds_of_day(rng: random.Random, count: int) -> list[float]:
    hours = rng.choices(range(24), weights=_HOUR_WEIGHTS, k=count)
    return sorted(h * 3600 + rng.random() * 3600 for h in hours)


def _intent_mix(rng: random.Random, day: int, days: int) -> tuple[list[str], list[float]]:
    share = launch_share(day, days)
    intents = [*INTENT_WEIGHTS, LAUNCH_INTENT]
    weights = [w * (1 - share) * (1 + rng.gauss(0, 0.06)) for w in INTENT_WEIGHTS.values()]
    return intents, [*weights, share]


_TOPICS_BY_INTENT: dict[str, tuple[Topic, ...]] = {
    intent: tuple(t for t in (*TOPICS, *VAULT_TOPICS) if t.intent == intent)
    for intent in (*INTENT_WEIGHTS, LAUNCH_INTENT)
}


def _topic(rng: random.Random, intent: str, day: int, days: int) -> Topic:
    topics = _TOPICS_BY_INTENT[intent]
    if intent == LAUNCH_INTENT and day < launch_day(days):
        return topics[-1]  # before the launch, only pre-order questions
    # The first topics of an intent are its most common requests.
    return rng.choices(topics, weights=[1 / (1 + 0.3 * i) for i in range(len(topics))])[0]


def _router_label(rng: random.Random, intent: str) -> str:
    """The intent the assistant's router predicted: right for most known requests, and never the new
    product, which its label set does not have."""
    if intent == LAUNCH_INTENT:
        return rng.choices(
            ("bug_report", "account_access", "order_status", "other"), weights=(45, 12, 8, 35)
        )[0]
    if rng.random() < 0.93:
        return intent
    return rng.choice([*INTENT_WEIGHTS, "other"])


def _retrieved(rng: random.Random, topic: Topic, hit: bool) -> tuple[list[str], list[float]]:
    """Four article ids and their similarity scores."""
    ids = list(ARTICLES)
    if topic.article is None:
        chosen = list(topic.misleading)
        top = rng.uniform(0.38, 0.58)
    elif hit:
        chosen = [topic.article]
        top = rng.uniform(0.74, 0.92)
    else:
        chosen = []
        top = rng.uniform(0.45, 0.66)
    while len(chosen) < 4:
        pick = rng.choice(ids)
        if pick not in chosen and pick != topic.article:
            chosen.append(pick)
    scores = [top]
    while len(scores) < 4:
        scores.append(scores[-1] - rng.uniform(0.01, 0.05))
    return chosen, [round(score, 4) for score in scores]


@dataclass(frozen=True)
class _Context:
    days: int
    end: datetime
    customers: list[str]


@dataclass(frozen=True)
class _Request:
    """One customer request and what the assistant did with it, before it becomes spans."""

    release: str
    topic: Topic
    slots: Slots
    customer: str
    message: str
    trace_id: str
    span_ids: dict[str, str]
    article_ids: list[str]
    scores: list[float]
    error: str | None
    quality: str
    answer: str
    call: tuple[dict[str, Any], dict[str, Any]] | None
    times: dict[str, tuple[float, float]]
    arrived: datetime

    def at(self, seconds: float) -> datetime:
        return self.arrived + timedelta(microseconds=round(seconds * 1e6))

    def start(self, span: str) -> datetime:
        return self.at(self.times[span][0])

    def end(self, span: str) -> datetime:
        return self.at(self.times[span][1])


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits) or 1:0{bits // 4}x}"  # OpenTelemetry ids are never all zero


def _timeline(rng: random.Random, error: str | None, tool: bool) -> dict[str, tuple[float, float]]:
    """Start and end of each span in seconds after the request arrived. The total is lognormal with a
    median of about 1.5 s, the same every day: nothing in latency shows the decay."""
    if error == "timeout":
        total = 30.0 + rng.uniform(0.0, 0.05)
    else:
        total = min(12.0, max(0.45, math.exp(rng.gauss(math.log(1.5), 0.33))))
    retrieval_start = rng.uniform(0.003, 0.009)
    retrieval_end = retrieval_start + total * rng.uniform(0.08, 0.15)
    spans = {"retrieval": (retrieval_start, retrieval_end)}
    llm_start = retrieval_end + rng.uniform(0.001, 0.004)
    if tool:
        tool_end = llm_start + total * rng.uniform(0.06, 0.14)
        spans["tool"] = (llm_start, tool_end)
        llm_start = tool_end + rng.uniform(0.001, 0.004)
    llm_end = total - rng.uniform(0.004, 0.015)
    if error == "rate_limit":
        llm_end = llm_start + rng.uniform(0.05, 0.2)
        total = llm_end + rng.uniform(0.004, 0.015)
    spans["llm"] = (llm_start, llm_end)
    spans["root"] = (0.0, total)
    return spans


def _resolution(rng: random.Random, intent: str, quality: str) -> bool:
    chance = {"good": 0.84, "partial": 0.42, "bad": 0.12, "error": 0.08}[quality]
    chance += {"bug_report": -0.06, "account_access": 0.03, "order_status": 0.02}.get(intent, 0.0)
    return rng.random() < chance


def _request(
    rng: random.Random, day: int, days: int, arrived: datetime, intent: str, customer: str
) -> _Request:
    release = RELEASES[day >= prompt_change_day(days)]
    topic = _topic(rng, intent, day, days)
    slots = Slots(rng)
    message = customer_message(topic, slots, rng)
    trace_id = _hex(rng, 128)
    span_ids = {name: _hex(rng, 64) for name in ("root", "retrieval", "tool", "llm")}
    hit = rng.random() < _RETRIEVAL_HIT
    article_ids, scores = _retrieved(rng, topic, hit)
    error = None
    if rng.random() < _ERROR_RATE:
        error = rng.choice(("timeout", "timeout", "rate_limit", "rate_limit", "rate_limit"))
    if error:
        quality = "error"
    elif topic.article is None:
        quality = rng.choices(_QUALITY, weights=_LAUNCH_QUALITY)[0]
    else:
        quality = rng.choices(_QUALITY, weights=_KNOWN_QUALITY[release, hit])[0]
    answer = FALLBACK_ANSWER if error else assistant_answer(topic, quality, release, slots, rng)
    call = tool_call(topic.tool, slots, customer) if topic.tool else None
    times = _timeline(rng, error, call is not None)
    return _Request(
        release=release,
        topic=topic,
        slots=slots,
        customer=customer,
        message=message,
        trace_id=trace_id,
        span_ids=span_ids,
        article_ids=article_ids,
        scores=scores,
        error=error,
        quality=quality,
        answer=answer,
        call=call,
        times=times,
        arrived=arrived,
    )


# Spans and traces are validated from dicts: mypy, without pydantic's plugin, takes their optional
# fields for required arguments.
def _llm_span(rng: random.Random, r: _Request) -> SpanIn:
    tool_result = (r.topic.tool, r.call[1]) if r.topic.tool and r.call else None
    messages = prompt_messages(r.release, r.article_ids, r.message, tool_result)
    return SpanIn.model_validate(
        dict(
            span_id=r.span_ids["llm"],
            parent_span_id=r.span_ids["root"],
            name=f"chat {REQUEST_MODEL}",
            kind="client",
            status="error" if r.error else "ok",
            status_message=_ERROR_MESSAGES[r.error] if r.error else None,
            start_time=r.start("llm"),
            end_time=r.end("llm"),
            operation="chat",
            provider="openai",
            model=REQUEST_MODEL,
            response_model=None if r.error else MODEL,
            input=messages,
            output=None if r.error else r.answer,
            # About four characters a token, as for English text.
            input_tokens=sum(len(m["content"]) for m in messages) // 4 + rng.randint(8, 20),
            output_tokens=None if r.error else max(12, round(len(r.answer) / 4 * rng.uniform(0.9, 1.1))),
            attributes={
                "gen_ai.request.temperature": 0.3,
                "gen_ai.request.top_p": 1.0,
                "gen_ai.request.max_tokens": 400,
                "gen_ai.response.finish_reasons": ["error" if r.error else "stop"],
                "gen_ai.response.id": f"chatcmpl-{_hex(rng, 96)}",
                "prodloop.prompt.name": "support-answer",
                "prodloop.prompt.version": 3 if r.release == RELEASES[0] else 4,
            },
        )
    )


def _spans(rng: random.Random, r: _Request) -> list[SpanIn]:
    """Retrieval, then the tool call if the topic has one, then the model call: children of the root."""
    spans = [
        SpanIn.model_validate(
            dict(
                span_id=r.span_ids["retrieval"],
                parent_span_id=r.span_ids["root"],
                name="retrieve help-center",
                kind="client",
                status="ok",
                start_time=r.start("retrieval"),
                end_time=r.end("retrieval"),
                operation="retrieval",
                attributes={
                    "retrieval.index": "help-center-2024-05",
                    "retrieval.embedding_model": "text-embedding-3-small",
                    "retrieval.top_k": 4,
                    "retrieval.document_ids": r.article_ids,
                    "retrieval.scores": r.scores,
                },
            )
        )
    ]
    if r.topic.tool and r.call:
        spans.append(
            SpanIn.model_validate(
                dict(
                    span_id=r.span_ids["tool"],
                    parent_span_id=r.span_ids["root"],
                    name=f"execute_tool {r.topic.tool}",
                    status="ok",
                    start_time=r.start("tool"),
                    end_time=r.end("tool"),
                    operation="execute_tool",
                    tool_name=r.topic.tool,
                    input=json.dumps(r.call[0]),
                    output=json.dumps(r.call[1], ensure_ascii=False),
                    attributes={"gen_ai.tool.call.id": f"call_{_hex(rng, 96)}"},
                )
            )
        )
    spans.append(_llm_span(rng, r))
    return spans


def _ticket(
    rng: random.Random, ctx: _Context, day: int, arrived: datetime, ticket: str, intent: str
) -> tuple[DemoTrace, Ticket, list[SignalIn]]:
    """One support request: its trace, its ground truth and its signals."""
    r = _request(rng, day, ctx.days, arrived, intent, rng.choice(ctx.customers))
    channel = rng.choices(_CHANNELS, weights=_CHANNEL_WEIGHTS)[0]
    trace = TraceIn.model_validate(
        dict(
            trace_id=r.trace_id,
            feature=FEATURE,
            release=r.release,
            join_key=ticket,
            name="support.answer",
            status="error" if r.error else "ok",
            start_time=r.start("root"),
            end_time=r.end("root"),
            input=r.message,
            output=r.answer,
            conversation_id=f"conv_{_hex(rng, 48)}",
            attributes={
                "enduser.id": r.customer,
                "support.channel": channel,
                "support.locale": rng.choice(_LOCALES),
                "support.route": _router_label(rng, intent),
                "http.route": "/v1/support/answer",
            },
            spans=_spans(rng, r),
        )
    )
    handled = _resolution(rng, intent, r.quality)
    lost = rng.random() < _LOST_RATE
    truth = Ticket(ticket, r.trace_id, day, intent, r.topic.key, r.release, r.quality, handled, lost)
    signals = ticket_signals(
        rng,
        truth,
        ended=r.end("root"),
        channel=channel,
        customer=r.customer,
        answer=r.answer,
        correction=corrected_answer(r.topic, r.slots),
        horizon=ctx.end,
    )
    return DemoTrace(trace, r.span_ids["root"]), truth, signals


_ERROR_MESSAGES = {
    "timeout": "APITimeoutError: Request timed out.",
    "rate_limit": "RateLimitError: Error code: 429 - Rate limit reached for gpt-4o-mini on tokens per min.",
}


def generate_scenario(
    seed: int = 7, days: int = 30, traces_per_day: int = 700, end: datetime | None = None
) -> DemoScenario:
    """Generate the scenario; the same arguments give identical output."""
    if days < 1 or traces_per_day < 1:
        raise ValueError("the demo needs at least 1 day and 1 trace per day")
    end = default_end() if end is None else _utc(end)
    start = end - timedelta(days=days)
    rng = random.Random(f"prodloop-demo:{seed}:{end.isoformat()}:{days}:{traces_per_day}")
    ctx = _Context(days, end, [f"cus_{_hex(rng, 40)}" for _ in range(max(20, days * traces_per_day // 2))])
    traces: list[DemoTrace] = []
    signals: list[SignalIn] = []
    tickets: list[Ticket] = []
    number = rng.randrange(180_000, 420_000)
    for day, count in enumerate(_daily_counts(rng, start, days, traces_per_day)):
        intents, weights = _intent_mix(rng, day, days)
        day_start = start + timedelta(days=day)
        for second in _seconds_of_day(rng, count):
            number += 1 + (rng.random() < 0.3) * rng.randint(1, 3)  # other channels take numbers too
            intent = rng.choices(intents, weights=weights)[0]
            arrived = day_start + timedelta(microseconds=round(second * 1e6))
            trace, truth, ticket_signals_ = _ticket(rng, ctx, day, arrived, f"T-{number}", intent)
            tickets.append(truth)
            signals.extend(ticket_signals_)
            if not truth.lost:
                traces.append(trace)
    signals.sort(key=lambda s: (s.timestamp, s.id))
    return DemoScenario(seed, start, end, days, traces, signals, tickets)
