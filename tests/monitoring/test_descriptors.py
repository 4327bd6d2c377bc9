"""Descriptors of LLM inputs and outputs per trace, read from the store, and drift on each."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from scipy.spatial.distance import jensenshannon

from prodloop.capture import SpanIn, TraceIn, ingest_traces
from prodloop.errors import ValidationFailed
from prodloop.monitoring.descriptors import (
    DESCRIPTORS,
    REFUSAL_PATTERNS,
    costs,
    descriptor_drift,
    detect_language,
    is_refusal,
    json_validity,
    refusal_matches,
    trace_descriptors,
)
from prodloop.monitoring.pricing import MODEL_PRICES, ModelPrice, price_for
from prodloop.server.auth import ensure_project

T0 = datetime(2024, 3, 1, tzinfo=UTC)
FEATURE = "support-assistant"


def tid(n: int) -> str:
    return f"{n + 1:032x}"


def make_trace(
    n: int,
    start: datetime,
    duration_ms: float,
    *,
    input: str | None,
    output: str | None,
    model: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    tools: int = 0,
    error: bool = False,
    release: str | None = "v1",
    feature: str = FEATURE,
) -> TraceIn:
    """A root span with the input and output, an LLM span, and ``tools`` tool spans inside it."""
    children = [
        SpanIn.model_validate(
            dict(
                name="execute_tool lookup_order",
                operation="execute_tool",
                tool_name="lookup_order",
                start_time=start + timedelta(milliseconds=1 + i),
                duration_ms=1,
            )
        )
        for i in range(tools)
    ]
    if model is not None or input_tokens is not None:
        children.append(
            SpanIn.model_validate(
                dict(
                    name="chat",
                    operation="chat",
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    status="error" if error else "ok",
                    start_time=start + timedelta(milliseconds=duration_ms / 4),
                    duration_ms=duration_ms / 2,
                )
            )
        )
    return TraceIn.model_validate(
        dict(
            trace_id=tid(n),
            feature=feature,
            release=release,
            name="support.answer",
            start_time=start,
            duration_ms=duration_ms,
            input=input,
            output=output,
            spans=children,
        )
    )


ENGLISH = "Where is my order? It has not arrived yet."
GERMAN = "Wo ist meine Bestellung? Sie ist noch nicht angekommen."
FRENCH = "Où est ma commande ? Elle n'est pas encore arrivée et j'attends depuis deux semaines."
SPANISH = "¿Dónde está mi pedido? Todavía no ha llegado y lo pagué hace dos semanas."


def hand_made(engine: sa.Engine) -> int:
    """Traces A-E in the window [T0, T0 + 1 day), and three that the queries must leave out."""
    pid = ensure_project(engine, "shop")
    batch = [
        # A: English, a tool call, a dated OpenAI snapshot.
        make_trace(
            0,
            T0 + timedelta(hours=1),
            1500,
            input=ENGLISH,
            output="Your order 1234 ships today.",
            model="gpt-4o-mini-2024-07-18",
            input_tokens=1000,
            output_tokens=500,
            tools=1,
        ),
        # B: German, a refusal, two tool calls, release v2, a dated Anthropic snapshot.
        make_trace(
            1,
            T0 + timedelta(hours=2),
            800,
            input=GERMAN,
            output="I'm sorry, but I can't help with that.",
            model="claude-3-5-haiku-20241022",
            input_tokens=2000,
            output_tokens=100,
            tools=2,
            release="v2",
        ),
        # C: French, valid JSON, a model without a price, a failed LLM call.
        make_trace(
            2,
            T0 + timedelta(hours=3),
            250,
            input=FRENCH,
            output='{"intent": "refund", "confidence": 0.9}',
            model="acme-local-7b",
            input_tokens=10,
            output_tokens=20,
            error=True,
        ),
        # D: Spanish, broken JSON, no model and no tokens.
        make_trace(3, T0 + timedelta(hours=4), 100, input=SPANISH, output='{"intent": "refund",'),
        # E: no text at all; only prompt tokens reported.
        make_trace(
            4, T0 + timedelta(hours=5), 2000, input=None, output=None, model="gpt-4o", input_tokens=300
        ),
        # Left out: before the window, another feature, another project.
        make_trace(5, T0 - timedelta(minutes=1), 10, input=ENGLISH, output="x"),
        make_trace(6, T0 + timedelta(hours=1), 10, input=ENGLISH, output="x", feature="billing-bot"),
    ]
    ingest_traces(engine, pid, batch)
    other = ensure_project(engine, "other-shop")
    ingest_traces(engine, other, [make_trace(7, T0 + timedelta(hours=1), 10, input=ENGLISH, output="x")])
    return pid


def assert_column(actual: np.ndarray, expected: list[Any]) -> None:
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, np.array(expected, dtype=np.float64), rtol=1e-12, equal_nan=True)


NAN = math.nan


def test_descriptors_of_hand_made_traces(engine: sa.Engine) -> None:
    pid = hand_made(engine)
    d = trace_descriptors(engine, pid, FEATURE, since=T0, until=T0 + timedelta(days=1))

    assert list(d.trace_ids) == [tid(n) for n in range(5)]
    assert list(d.start_ns) == [int((T0 + timedelta(hours=h)).timestamp()) * 10**9 for h in range(1, 6)]
    assert list(d.columns) == list(DESCRIPTORS)
    c = d.columns
    assert_column(c["input_chars"], [42, 55, 85, 73, NAN])
    assert_column(c["input_words"], [9, 9, 15, 14, NAN])  # the lone "?" counts as a word
    assert_column(c["output_chars"], [28, 38, 39, 20, NAN])
    assert_column(c["output_words"], [5, 8, 4, 2, NAN])
    assert_column(c["refusal"], [0, 1, 0, 0, NAN])
    assert_column(c["json_valid"], [NAN, NAN, 1, 0, NAN])
    assert c["language"].dtype == object
    assert list(c["language"]) == ["en", "de", "fr", "es", None]
    assert_column(c["tool_calls"], [1, 2, 0, 0, 0])
    assert_column(c["uses_tool"], [1, 1, 0, 0, 0])
    assert_column(c["latency_ms"], [1500, 800, 250, 100, 2000])
    assert_column(c["input_tokens"], [1000, 2000, 10, NAN, 300])
    assert_column(c["output_tokens"], [500, 100, 20, NAN, NAN])
    # gpt-4o-mini 0.15 / 0.60, claude-3-5-haiku 0.80 / 4.00, gpt-4o 2.50 / 10.00 USD per 1M tokens.
    assert_column(
        c["cost_usd"],
        [1000 * 0.15e-6 + 500 * 0.60e-6, 2000 * 0.80e-6 + 100 * 4.00e-6, NAN, NAN, 300 * 2.50e-6],
    )
    assert_column(c["error"], [0, 0, 1, 0, 0])

    rows = d.to_rows()
    assert rows[1] == {
        "trace_id": tid(1),
        "start_time": "2024-03-01T02:00:00Z",
        "input_chars": 55,
        "input_words": 9,
        "output_chars": 38,
        "output_words": 8,
        "refusal": True,
        "json_valid": None,
        "language": "de",
        "tool_calls": 2,
        "uses_tool": True,
        "latency_ms": 800.0,
        "input_tokens": 2000,
        "output_tokens": 100,
        "cost_usd": pytest.approx(0.002),
        "error": False,
    }


def test_filters_by_release_and_trace_ids_and_picks_columns(engine: sa.Engine) -> None:
    pid = hand_made(engine)
    v2 = trace_descriptors(engine, pid, FEATURE, release="v2", columns=["tool_calls", "refusal"])
    assert list(v2.trace_ids) == [tid(1)]
    assert list(v2.columns) == ["tool_calls", "refusal"]
    assert_column(v2.columns["tool_calls"], [2])

    picked = trace_descriptors(engine, pid, FEATURE, trace_ids=[tid(3).upper(), tid(0), tid(6)])
    assert list(picked.trace_ids) == [tid(0), tid(3)]  # tid(6) is another feature's
    # Without a window every trace of the feature counts, the one before T0 included.
    assert len(trace_descriptors(engine, pid, FEATURE, columns=["error"])) == 6
    nothing = trace_descriptors(engine, pid, "no-such-feature")
    assert len(nothing) == 0 and nothing.columns["language"].shape == (0,)

    with pytest.raises(ValidationFailed, match=r"unknown descriptor 'length'.*input_chars"):
        trace_descriptors(engine, pid, FEATURE, columns=["length"])
    with pytest.raises(ValidationFailed, match="since must be before until"):
        trace_descriptors(engine, pid, FEATURE, since=T0, until=T0)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("I'm sorry, but I can't help with that.", "apology_then_cannot"),
        ("I\u2019m afraid I can\u2019t do that.", "apology_then_cannot"),  # curly apostrophes
        ("I am sorry, I couldn't find your booking.", "apology_then_cannot"),
        ("Sorry, I can't assist with that request.", "sorry_cannot"),
        ("I cannot help with requests like this one.", "cannot_help"),
        ("Unfortunately I won't provide instructions for that.", "cannot_help"),
        ("I am unable to answer questions about medication.", "unable_to"),
        ("As an AI language model, I have no personal opinions.", "as_an_ai"),
        ("I must decline this request.", "must_decline"),
        ("Writing that would go against my guidelines.", "against_policy"),
        ("This request violates our content policy.", "against_policy"),
        ("I'm not sure about that one. Please check the manual.", "not_sure"),
        ("I don't have details about the Acme Vault yet.", "no_information"),
        ("I do not have any information on that product.", "no_information"),
        ("I couldn't find any information about that in our help center.", "could_not_find"),
    ],
)
def test_refusal_patterns_match_refusals_and_hedges(text: str, pattern: str) -> None:
    assert is_refusal(text) is True
    assert is_refusal(text.upper()) is True  # case does not matter
    assert pattern in refusal_matches(text)


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry for the wait. Your order 1234 ships today.",
        "Sorry for the trouble! Restarting the device fixes most problems.",
        "I can help with that: open Settings > Billing.",
        "Sure, I can do that. Your refund is on its way.",
        "The AI model in the thermostat learns your schedule.",
        "We cannot ship to PO boxes, so please give a street address.",
        "You can't change an order after one hour, but you can cancel it.",
        "Are you sure you want to cancel? Reply yes to confirm.",
        "I'm sure this will fix it.",
        "I don't have to restart the router, do I?",
        "",
    ],
)
def test_refusal_patterns_leave_ordinary_answers_alone(text: str) -> None:
    assert is_refusal(text) is False
    assert refusal_matches(text) == []


def test_refusal_patterns_are_documented_and_overridable() -> None:
    assert len(REFUSAL_PATTERNS) >= 8
    assert is_refusal(None) is None
    assert is_refusal("Computer says no.", patterns=[r"\bcomputer says no\b"]) is True
    assert is_refusal("I cannot help with that.", patterns={"custom": r"computer says no"}) is False
    with pytest.raises(ValidationFailed, match="not a valid regular expression"):
        is_refusal("x", patterns=["(unclosed"])


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("My smart lock will not pair with the app after the last update.", "en"),
        ("Mein Thermostat zeigt seit gestern einen Fehler an und heizt nicht mehr.", "de"),
        ("Ma caméra ne se connecte plus au réseau depuis la mise à jour.", "fr"),
        ("Mi cámara no se conecta a la red desde la última actualización.", "es"),
        ("ok", "und"),
        ("   ", "und"),
        (None, None),
    ],
)
def test_language_of_clear_sentences(text: str | None, language: str | None) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ('{"a": 1, "b": [true, null]}', True),
        ('  [1, 2, "three"]\n', True),
        ("{}", True),
        ('{"a": 1,}', False),  # trailing comma
        ("{'a': 1}", False),  # single quotes are not JSON
        ('{"a": NaN}', False),  # NaN is not JSON
        ('```json\n{"a": 1}\n```', False),  # a fenced block breaks a JSON parser
        ("Your order ships today.", None),
        ("", None),
        (None, None),
    ],
)
def test_json_validity(text: str | None, valid: bool | None) -> None:
    assert json_validity(text) is valid


def test_cost_from_the_price_table() -> None:
    assert price_for("gpt-4o-mini") == ModelPrice(0.15, 0.60)
    assert price_for("gpt-4o-mini-2024-07-18") == MODEL_PRICES["gpt-4o-mini"]
    assert price_for("claude-3-5-sonnet-20241022") == ModelPrice(3.0, 15.0)
    assert price_for("claude-3-5-haiku-latest") == ModelPrice(0.80, 4.0)
    assert price_for("openai/gpt-4.1-mini") == ModelPrice(0.40, 1.60)
    assert price_for("acme-local-7b") is None
    assert price_for(None) is None
    # The caller's prices win over the table and add models.
    assert price_for("gpt-4o", {"gpt-4o": (1.0, 2.0)}) == ModelPrice(1.0, 2.0)
    assert price_for("acme-local-7b", {"acme-local-7b": ModelPrice(0.01, 0.02)}) == ModelPrice(0.01, 0.02)
    with pytest.raises(ValidationFailed, match="must not be negative"):
        price_for("gpt-4o", {"gpt-4o": (-1.0, 2.0)})
    with pytest.raises(ValidationFailed, match="must be \\(input, output\\)"):
        price_for("gpt-4o", {"gpt-4o": "cheap"})  # type: ignore[dict-item]

    cost = costs(
        ["gpt-4o", "gpt-4o", "acme-local-7b", None, "acme-local-7b"],
        np.array([1_000_000, 2000, 1000, 1000, NAN]),
        np.array([1_000_000, NAN, 1000, 1000, NAN]),
        prices={"acme-local-7b": (0.5, 1.5)},
    )
    assert_column(cost, [12.50, 2000 * 2.5e-6, 1000 * 0.5e-6 + 1000 * 1.5e-6, NAN, NAN])


# --------------------------------------------------------------------------------------------------
# Drift on descriptors

WORDS = "the order device app account refund battery light door camera reset update".split()


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _window(
    rng: random.Random,
    first: int,
    start: datetime,
    count: int,
    long_answers: bool,
    refusal_rate: float,
    model: str = "gpt-4o-mini",
) -> list[TraceIn]:
    """``count`` English traces spread over one day; answer length, refusal rate and model as asked,
    the rest from the same distributions whatever the window."""
    batch = []
    for i in range(count):
        question = "Please help me with my " + _sentence(rng, rng.randint(4, 14))
        words = rng.randint(30, 60) if long_answers else rng.randint(8, 20)
        answer = _sentence(rng, words)
        if rng.random() < refusal_rate:
            answer = "I'm sorry, but I can't help with that. " + answer
        batch.append(
            make_trace(
                first + i,
                start + timedelta(seconds=86_000 * i / count),
                rng.lognormvariate(6.5, 0.3),
                input=question,
                output=answer,
                model=model,
                input_tokens=rng.randint(300, 900),
                output_tokens=rng.randint(40, 160),
                tools=int(rng.random() < 0.3),
                error=rng.random() < 0.02,
            )
        )
    return batch


DAY1, DAY2, DAY3 = T0, T0 + timedelta(days=1), T0 + timedelta(days=2)


def test_descriptor_drift_flags_longer_answers_and_more_refusals(sqlite_engine: sa.Engine) -> None:
    rng = random.Random(7)
    pid = ensure_project(sqlite_engine, "shop")
    ingest_traces(sqlite_engine, pid, _window(rng, 0, DAY1, 1100, long_answers=False, refusal_rate=0.05))
    # The current window also runs on a model a third cheaper: a cost drift of about $0.00005 a call.
    current = _window(rng, 5000, DAY2, 1100, long_answers=True, refusal_rate=0.4, model="gpt-4.1-nano")
    ingest_traces(sqlite_engine, pid, current)

    report = descriptor_drift(sqlite_engine, pid, FEATURE, reference=(DAY1, DAY2), current=(DAY2, DAY3))

    assert (report.n_reference, report.n_current) == (1100, 1100)
    by_name = {c.column: c for c in report.columns}
    # json_valid has no value (no answer looks like JSON): left out rather than tested on nothing.
    assert set(by_name) == set(DESCRIPTORS) - {"json_valid"}
    drifted = {name for name, c in by_name.items() if c.result.drift}
    assert drifted == {"output_chars", "output_words", "refusal", "cost_usd"}
    assert by_name["refusal"].type == "categorical"
    assert by_name["language"].type == "categorical"
    assert by_name["output_chars"].type == "numeric"
    assert report.share_drifted == pytest.approx(4 / 13)
    assert report.dataset_drift is False
    # The refusal verdict is Jensen-Shannon on the shares of refusing answers (over 1,000 rows).
    described = {
        side: trace_descriptors(sqlite_engine, pid, FEATURE, since=a, until=b, columns=["refusal"])
        for side, (a, b) in {"ref": (DAY1, DAY2), "cur": (DAY2, DAY3)}.items()
    }
    shares = {side: float(d.columns["refusal"].mean()) for side, d in described.items()}
    assert shares["ref"] < 0.1 < 0.3 < shares["cur"]
    expected = jensenshannon([1 - shares["ref"], shares["ref"]], [1 - shares["cur"], shares["cur"]])
    assert by_name["refusal"].result.test == "jensenshannon"
    assert by_name["refusal"].result.statistic == pytest.approx(expected)

    # A release as the reference: every trace of v1 (all of them here) against the current window.
    by_release = descriptor_drift(
        sqlite_engine, pid, FEATURE, reference="v1", current=(DAY2, DAY3), columns=["refusal", "latency_ms"]
    )
    assert by_release.n_reference == 2200
    assert [c.column for c in by_release.columns] == ["refusal", "latency_ms"]


def test_no_descriptor_drifts_between_windows_of_one_distribution(sqlite_engine: sa.Engine) -> None:
    rng = random.Random(11)
    pid = ensure_project(sqlite_engine, "shop")
    ingest_traces(sqlite_engine, pid, _window(rng, 0, DAY1, 1100, long_answers=False, refusal_rate=0.1))
    ingest_traces(sqlite_engine, pid, _window(rng, 5000, DAY2, 1100, long_answers=False, refusal_rate=0.1))

    report = descriptor_drift(sqlite_engine, pid, FEATURE, reference=(DAY1, DAY2), current=(DAY2, DAY3))

    assert [c.column for c in report.columns if c.result.drift] == []
    assert report.share_drifted == 0.0 and report.dataset_drift is False


def test_descriptor_drift_says_what_is_wrong(sqlite_engine: sa.Engine) -> None:
    pid = hand_made(sqlite_engine)
    with pytest.raises(ValidationFailed, match="no traces of feature 'support-assistant' in the current"):
        descriptor_drift(sqlite_engine, pid, FEATURE, reference=(T0, DAY2), current=(DAY2, DAY3))
    with pytest.raises(ValidationFailed, match="no traces of feature 'nope' in the reference"):
        descriptor_drift(sqlite_engine, pid, "nope", reference=(T0, DAY2), current=(T0, DAY2))
    with pytest.raises(ValidationFailed, match="'json_valid' has no values in the reference"):
        descriptor_drift(
            sqlite_engine,
            pid,
            FEATURE,
            reference=(T0 - timedelta(days=1), T0),
            current=(T0, DAY2),
            columns=["json_valid"],
        )
    with pytest.raises(ValidationFailed, match="current window must be a \\(since, until\\) pair"):
        descriptor_drift(sqlite_engine, pid, FEATURE, reference=(T0, DAY2), current="v1")  # type: ignore[arg-type]
