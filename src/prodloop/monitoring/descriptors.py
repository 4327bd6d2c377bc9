"""Descriptors of LLM inputs and outputs, computed per trace, and drift on each.

A descriptor is a number or a label that says something about one trace: how long the question and the
answer were, whether the answer refused or hedged, whether it was valid JSON, what language the user wrote
in, how many tools the assistant called, how long it took, how many tokens it used and what it cost,
whether it failed. Their distributions move when the world does: after a launch, users ask about a
product the assistant knows nothing of, and the share of hedging answers climbs while latency and error
dashboards stay flat. :func:`descriptor_drift` compares them between a reference and a current window.

The descriptors (:data:`DESCRIPTORS` gives each one's kind):

``input_chars``, ``input_words``, ``output_chars``, ``output_words``
    Length of the trace's input (the user's message) and output (the answer), in Unicode characters and
    in whitespace-separated words. NaN when the trace has no such text.
``refusal``
    1 when the output matches one of :data:`REFUSAL_PATTERNS` (refusals and hedges such as "I'm sorry,
    but I can't", "I cannot help with", "as an AI", "I'm not sure", "I couldn't find any information"),
    else 0; NaN without an output.
``json_valid``
    For outputs that look like JSON (they start with ``{`` or ``[``, or are a Markdown code block tagged
    ``json``): 1 when the whole output parses as strict JSON (RFC 8259), else 0. A JSON answer wrapped in
    a Markdown fence counts as invalid, because a parser that expects JSON fails on it. NaN for outputs
    that do not look like JSON (prose) and for traces without one.
``language``
    ISO 639-1 code of the input's language (``en``, ``de``, ...), identified offline by py3langid (a
    naive Bayes model over byte n-grams, deterministic) on the first 1,000 characters; ``und``
    (undetermined) when the text is too short or mixed to tell with a probability of at least 0.5;
    ``None`` without an input.
``tool_calls``, ``uses_tool``
    Number of ``execute_tool`` spans in the trace, and 1 when there is at least one.
``latency_ms``
    The trace's duration: its last span's end minus its first span's start.
``input_tokens``, ``output_tokens``
    Tokens the trace's LLM calls used, as the spans reported them; NaN when they did not.
``cost_usd``
    Tokens priced by the model's list price (:mod:`prodloop.monitoring.pricing`, overridable with
    ``prices=``). A missing token count counts as zero when the other is known (a failed call that
    reported only its prompt); NaN when the model has no known price or neither count is known.
``error``
    1 when any span of the trace failed.

Numeric descriptors are float64 arrays with NaN for missing values; binary ones are float64 arrays of
1.0 and 0.0 with NaN where the descriptor does not apply; ``language`` is an object array of strings with
``None`` for missing. For drift the binary ones are compared as categorical columns of True/False (a
two-proportion Z test on small references, Jensen-Shannon on large ones, as Evidently does).
``cost_usd`` is compared in millionths of a dollar: the normed Wasserstein distance divides by the
reference's standard deviation but by no less than 0.001 (Evidently's floor), and the cost of one call is
often a fraction of a cent, so in dollars a move to a model a third cheaper would stay under the
threshold. Every registered test is otherwise indifferent to the unit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import sqlalchemy as sa

from prodloop.capture.queries import iso, to_ns
from prodloop.errors import ValidationFailed
from prodloop.monitoring.pricing import PriceLike, price_for, price_table
from prodloop.store import read_transaction
from prodloop.store.schema import spans, traces

if TYPE_CHECKING:
    from prodloop.monitoring.drift import DriftReport

#: Every descriptor and its kind: "numeric", "binary" or "categorical".
DESCRIPTORS: Mapping[str, str] = {
    "input_chars": "numeric",
    "input_words": "numeric",
    "output_chars": "numeric",
    "output_words": "numeric",
    "refusal": "binary",
    "json_valid": "binary",
    "language": "categorical",
    "tool_calls": "numeric",
    "uses_tool": "binary",
    "latency_ms": "numeric",
    "input_tokens": "numeric",
    "output_tokens": "numeric",
    "cost_usd": "numeric",
    "error": "binary",
}

#: The column type each descriptor is tested as by the drift library (binary descriptors are categorical).
DRIFT_COLUMN_TYPES: Mapping[str, str] = {
    name: "numeric" if kind == "numeric" else "categorical" for name, kind in DESCRIPTORS.items()
}

_APOS = "(?:'|\u2019)"  # a straight or a curly apostrophe
_I_AM = rf"I(?:{_APOS}m| am)"
_CANT = rf"(?:can{_APOS}t|cannot|can not|won{_APOS}t|will not|couldn{_APOS}t|could not)"
_UNABLE = rf"(?:{_I_AM} (?:unable|not able) to|{_I_AM} not in a position to)"

#: Refusal and hedge patterns (case-insensitive regular expressions, curly or straight apostrophes), by
#: name. A refusal declines to answer; a hedge answers that it does not know. Either one in the output
#: makes ``refusal`` 1. Apologies that go on to help ("I'm sorry for the wait, your order ...") and
#: statements about what the *user* or a product cannot do do not match.
REFUSAL_PATTERNS: Mapping[str, str] = {
    # "I'm sorry, but I can't help with that", "I'm afraid I cannot do that", "I am sorry, I couldn't find…"
    "apology_then_cannot": rf"\b{_I_AM} (?:very |so |really )?(?:sorry|afraid),? (?:but )?"
    rf"(?:I {_CANT}\b|{_UNABLE}\b)",
    # "Sorry, I can't assist with that request."
    "sorry_cannot": rf"\bsorry,? (?:but )?(?:I {_CANT}|{_UNABLE}) (?:help|assist|do|provide|answer|comply)",
    # "I cannot help with that", "I can't assist you with this", "I won't provide instructions"
    "cannot_help": rf"\bI {_CANT} (?:help|assist|comply|fulfil|fulfill|provide|answer|support|do that)\b",
    # "I'm unable to help", "I am not able to provide that"
    "unable_to": rf"\b{_UNABLE} (?:help|assist|comply|fulfil|fulfill|provide|answer|share|do that)\b",
    # "As an AI language model, I ...", "as an AI assistant"
    "as_an_ai": r"\bas an AI\b",
    # "I must decline", "I have to refuse"
    "must_decline": r"\bI (?:must|have to|need to|will have to) (?:decline|refuse)\b",
    # "that goes against my guidelines", "violates our content policy"
    "against_policy": r"\b(?:against|violates?|violating) (?:my|our|the) (?:\w+ )?"
    r"(?:guidelines|polic(?:y|ies))\b",
    # Hedges: "I'm not sure about that", "I am not certain"
    "not_sure": rf"\b{_I_AM} not (?:sure|certain)\b",
    # "I don't have information about that", "I do not have any details on…",
    # "I don't have specific instructions"
    "no_information": rf"\bI (?:don{_APOS}t|do not) have (?:any |enough |specific |the |much |more )?"
    r"(?:information|details|instructions|data|knowledge)\b",
    # "I couldn't find any information about that", "I could not find anything on…"
    "could_not_find": rf"\bI {_CANT} find (?:any |specific |the |relevant )?"
    r"(?:information|details|instructions|anything|answers?)\b",
}

#: cost_usd is handed to the drift tests in millionths of a dollar (see the module docstring).
_COST_SCALE = 1e6
_LANGUAGE_MIN_PROBABILITY = 0.5
_LANGUAGE_MAX_CHARS = 1000
UNDETERMINED = "und"


def _refusal_regex(patterns: Mapping[str, str] | Sequence[str] | None) -> re.Pattern[str]:
    chosen = REFUSAL_PATTERNS if patterns is None else patterns
    sources = list(chosen.values()) if isinstance(chosen, Mapping) else list(chosen)
    if not sources:
        raise ValidationFailed("refusal_patterns is empty: give at least one pattern, or leave it out")
    try:
        return re.compile("|".join(f"(?:{s})" for s in sources), re.IGNORECASE)
    except re.error as exc:
        raise ValidationFailed(f"a refusal pattern is not a valid regular expression: {exc}") from exc


_DEFAULT_REFUSAL = _refusal_regex(None)


def refusal_matches(text: str, patterns: Mapping[str, str] | None = None) -> list[str]:
    """Names of the refusal patterns that ``text`` matches (``patterns`` defaults to
    :data:`REFUSAL_PATTERNS`): to see why an output counts as a refusal."""
    chosen = REFUSAL_PATTERNS if patterns is None else patterns
    return [name for name, source in chosen.items() if re.search(source, text, re.IGNORECASE)]


def is_refusal(text: str | None, patterns: Mapping[str, str] | Sequence[str] | None = None) -> bool | None:
    """Whether ``text`` refuses or hedges (matches a pattern); ``None`` for no text."""
    if text is None:
        return None
    regex = _DEFAULT_REFUSAL if patterns is None else _refusal_regex(patterns)
    return regex.search(text) is not None


def json_validity(text: str | None) -> bool | None:
    """Whether ``text`` is valid JSON, for text that looks like JSON; ``None`` for prose or no text."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return False
        return True
    if stripped.startswith("```") and stripped[3:7].lower() == "json":
        return False
    return None


@functools.cache
def _language_identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(
        MODEL_FILE, norm_probs=True, min_confidence=_LANGUAGE_MIN_PROBABILITY
    )


def detect_language(text: str | None) -> str | None:
    """ISO 639-1 code of ``text``'s language, ``"und"`` when it cannot be told, ``None`` for no text."""
    if text is None:
        return None
    if not text.strip():
        return UNDETERMINED
    language, _probability = _language_identifier().classify(text[:_LANGUAGE_MAX_CHARS])
    return str(language)


def _float(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _flags(values: Sequence[bool | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def text_lengths(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Characters and whitespace-separated words of each text; NaN for no text."""
    chars = _float([None if t is None else len(t) for t in texts])
    words = _float([None if t is None else len(t.split()) for t in texts])
    return chars, words


def refusals(
    texts: Sequence[str | None], patterns: Mapping[str, str] | Sequence[str] | None = None
) -> np.ndarray:
    """1.0 where a text refuses or hedges, 0.0 where it does not, NaN for no text."""
    regex = _DEFAULT_REFUSAL if patterns is None else _refusal_regex(patterns)
    return _flags([None if t is None else regex.search(t) is not None for t in texts])


def languages(texts: Sequence[str | None]) -> np.ndarray:
    """The language of each text (see :func:`detect_language`), as an object array; each distinct text
    is identified once."""
    seen: dict[str, str | None] = {}
    out = np.empty(len(texts), dtype=object)
    for i, text in enumerate(texts):
        if text is None:
            out[i] = None
            continue
        language = seen.get(text)
        if language is None:
            language = seen[text] = detect_language(text)
        out[i] = language
    return out


def costs(
    models: Sequence[str | None],
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    prices: Mapping[str, PriceLike] | None = None,
) -> np.ndarray:
    """USD per trace from its model's price (see :mod:`prodloop.monitoring.pricing`); NaN when the model
    has no price or neither token count is known."""
    table = price_table(prices)
    found = {m: price_for(m, table) for m in set(models)}
    input_price = _float([None if (p := found[m]) is None else p.input_per_million for m in models])
    output_price = _float([None if (p := found[m]) is None else p.output_per_million for m in models])
    both_missing = np.isnan(input_tokens) & np.isnan(output_tokens)
    cost = (np.nan_to_num(input_tokens) * input_price + np.nan_to_num(output_tokens) * output_price) / 1e6
    cost[both_missing] = np.nan
    return cost


@dataclass(frozen=True)
class TraceDescriptors:
    """Descriptors of a set of traces, column-wise, oldest trace first.

    ``columns`` maps each descriptor name to an array with one value per trace (see the module
    docstring for types); ``trace_ids`` and ``start_ns`` (nanoseconds since the epoch, UTC) say which
    trace each position is.
    """

    trace_ids: np.ndarray
    start_ns: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.trace_ids)

    def drift_columns(self) -> dict[str, np.ndarray]:
        """The columns as the drift library takes them: binary descriptors become object arrays of
        True/False with None where they do not apply; ``cost_usd`` is given in millionths of a dollar
        (see the module docstring); the others are unchanged."""
        out: dict[str, np.ndarray] = {}
        for name, values in self.columns.items():
            if DESCRIPTORS[name] == "binary":
                flags = np.empty(len(values), dtype=object)
                flags[:] = [None if np.isnan(v) else bool(v) for v in values]
                out[name] = flags
            elif name == "cost_usd":
                out[name] = values * _COST_SCALE
            else:
                out[name] = values
        return out

    def to_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per trace: ``trace_id``, ``start_time`` (ISO 8601) and each descriptor
        (None where missing, binary ones as booleans, counts as integers)."""
        rows: list[dict[str, Any]] = [
            {"trace_id": str(t), "start_time": iso(int(s))}
            for t, s in zip(self.trace_ids, self.start_ns, strict=True)
        ]
        for name, values in self.columns.items():
            kind = DESCRIPTORS[name]
            for row, value in zip(rows, values, strict=True):
                if kind == "categorical":
                    row[name] = value
                elif np.isnan(value):
                    row[name] = None
                elif kind == "binary":
                    row[name] = bool(value)
                elif name in _COUNTS:
                    row[name] = int(value)
                else:
                    row[name] = float(value)
        return rows


_COUNTS = frozenset(
    {
        "input_chars",
        "input_words",
        "output_chars",
        "output_words",
        "tool_calls",
        "input_tokens",
        "output_tokens",
    }
)


def _check_columns(columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return list(DESCRIPTORS)
    unknown = [c for c in columns if c not in DESCRIPTORS]
    if unknown:
        raise ValidationFailed(
            f"unknown descriptor {unknown[0]!r}; the descriptors are: {', '.join(DESCRIPTORS)}",
            {"unknown": unknown, "descriptors": list(DESCRIPTORS)},
        )
    if not columns:
        raise ValidationFailed("columns is empty: name at least one descriptor, or leave it out")
    return list(dict.fromkeys(columns))


def _window(since: datetime | None, until: datetime | None) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = []
    if since is not None and until is not None and to_ns(since) >= to_ns(until):
        raise ValidationFailed(
            f"the window from {since.isoformat()} to {until.isoformat()} is empty: "
            "since must be before until",
            {"since": since.isoformat(), "until": until.isoformat()},
        )
    if since is not None:
        where.append(traces.c.start_ns >= to_ns(since))
    if until is not None:
        where.append(traces.c.start_ns < to_ns(until))
    return where


_TRACE_COLUMNS = (
    traces.c.trace_id,
    traces.c.start_ns,
    traces.c.end_ns,
    traces.c.input_text,
    traces.c.output_text,
    traces.c.input_tokens,
    traces.c.output_tokens,
    traces.c.model,
    traces.c.error_count,
)


def _read(
    engine: sa.Engine, where: list[sa.ColumnElement[bool]], trace_ids: Sequence[str] | None, tools: bool
) -> tuple[list[Any], dict[str, int]]:
    """The traces' rows (oldest first) and their tool-call counts: one query for each, per chunk of ids."""
    chunks: list[list[sa.ColumnElement[bool]]]
    if trace_ids is None:
        chunks = [where]
    else:
        ids = sorted({t.lower() for t in trace_ids})
        chunks = [[*where, traces.c.trace_id.in_(ids[i : i + 500])] for i in range(0, len(ids), 500)]
    rows: list[Any] = []
    tool_calls: dict[str, int] = {}
    with read_transaction(engine) as connection:
        for conditions in chunks:
            rows.extend(connection.execute(sa.select(*_TRACE_COLUMNS).where(*conditions)).all())
            if tools:
                counted = connection.execute(
                    sa.select(spans.c.trace_id, sa.func.count())
                    .select_from(
                        spans.join(
                            traces,
                            sa.and_(
                                traces.c.project_id == spans.c.project_id,
                                traces.c.trace_id == spans.c.trace_id,
                            ),
                        )
                    )
                    .where(*conditions, spans.c.operation == "execute_tool")
                    .group_by(spans.c.trace_id)
                )
                tool_calls.update((trace_id, int(n)) for trace_id, n in counted)
    rows.sort(key=lambda r: (r.start_ns, r.trace_id))
    return rows, tool_calls


def trace_descriptors(
    engine: sa.Engine,
    project_id: int,
    feature: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    release: str | None = None,
    trace_ids: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    prices: Mapping[str, PriceLike] | None = None,
    refusal_patterns: Mapping[str, str] | Sequence[str] | None = None,
) -> TraceDescriptors:
    """Descriptors of the traces of ``feature`` that started in [``since``, ``until``) (either end
    open when None), optionally only those of ``release`` or among ``trace_ids``; ``columns`` picks
    descriptors (default: all of :data:`DESCRIPTORS`)."""
    wanted = _check_columns(columns)
    where = [traces.c.project_id == project_id, traces.c.feature == feature, *_window(since, until)]
    if release is not None:
        where.append(traces.c.release == release)
    tools = "tool_calls" in wanted or "uses_tool" in wanted
    rows, tool_counts = _read(engine, where, trace_ids, tools)

    trace_id_array = np.array([r.trace_id for r in rows], dtype=object)
    start = np.array([r.start_ns for r in rows], dtype=np.int64)
    end = np.array([r.end_ns for r in rows], dtype=np.int64)
    inputs = [r.input_text for r in rows]
    outputs = [r.output_text for r in rows]
    input_tokens = _float([r.input_tokens for r in rows])
    output_tokens = _float([r.output_tokens for r in rows])

    out: dict[str, np.ndarray] = {}
    if "input_chars" in wanted or "input_words" in wanted:
        out["input_chars"], out["input_words"] = text_lengths(inputs)
    if "output_chars" in wanted or "output_words" in wanted:
        out["output_chars"], out["output_words"] = text_lengths(outputs)
    if "refusal" in wanted:
        out["refusal"] = refusals(outputs, refusal_patterns)
    if "json_valid" in wanted:
        out["json_valid"] = _flags([json_validity(t) for t in outputs])
    if "language" in wanted:
        out["language"] = languages(inputs)
    if tools:
        out["tool_calls"] = np.array([tool_counts.get(r.trace_id, 0) for r in rows], dtype=np.float64)
        out["uses_tool"] = (out["tool_calls"] > 0).astype(np.float64)
    if "latency_ms" in wanted:
        out["latency_ms"] = (end - start).astype(np.float64) / 1e6
    if "input_tokens" in wanted:
        out["input_tokens"] = input_tokens
    if "output_tokens" in wanted:
        out["output_tokens"] = output_tokens
    if "cost_usd" in wanted:
        out["cost_usd"] = costs([r.model for r in rows], input_tokens, output_tokens, prices)
    if "error" in wanted:
        out["error"] = np.array([r.error_count > 0 for r in rows], dtype=np.float64)
    return TraceDescriptors(trace_id_array, start, {name: out[name] for name in wanted})


Window = tuple[datetime | None, datetime | None]


def _has_values(values: np.ndarray) -> bool:
    if values.dtype == object:
        return any(v is not None for v in values)
    return bool(np.any(~np.isnan(values)))


def _describe_window(label: str, window: Window | str) -> dict[str, Any]:
    if isinstance(window, str):
        return {"release": window}
    try:
        since, until = window
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(
            f"the {label} must be a (since, until) pair of times"
            + (" or a release name" if label == "reference" else ""),
            {label: repr(window)},
        ) from exc
    return {"since": since, "until": until}


def descriptor_drift(
    engine: sa.Engine,
    project_id: int,
    feature: str,
    *,
    reference: Window | str,
    current: Window,
    columns: Sequence[str] | None = None,
    tests: str | Mapping[str, str] | None = None,
    thresholds: float | Mapping[str, float] | None = None,
    drift_share: float = 0.5,
    prices: Mapping[str, PriceLike] | None = None,
    refusal_patterns: Mapping[str, str] | Sequence[str] | None = None,
) -> DriftReport:
    """Drift of each descriptor of ``feature``'s traces between the ``reference`` (a (since, until)
    window, or every trace of a release) and the ``current`` window, each descriptor tested as its type
    (:data:`DRIFT_COLUMN_TYPES`) with the default test for it unless ``tests`` names one.

    With ``columns`` left out, descriptors that have no value in one of the windows (``json_valid``
    when no output looks like JSON, ``cost_usd`` for a model without a price) are left out of the
    report; a descriptor named in ``columns`` without values is an error. 422 when a window has no
    traces of the feature.
    """
    from prodloop.monitoring.drift import dataset_drift

    wanted = _check_columns(columns)
    sides: dict[str, TraceDescriptors] = {}
    for label, window in (("reference", reference), ("current", current)):
        if label == "current" and isinstance(window, str):
            raise ValidationFailed("the current window must be a (since, until) pair of times, not a release")
        bounds = _describe_window(label, window)
        described = trace_descriptors(
            engine,
            project_id,
            feature,
            **bounds,
            columns=wanted,
            prices=prices,
            refusal_patterns=refusal_patterns,
        )
        if len(described) == 0:
            shown = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in bounds.items()}
            where = ", ".join(f"{k} {v}" for k, v in shown.items() if v is not None) or "any time"
            raise ValidationFailed(
                f"no traces of feature {feature!r} in the {label} window ({where}); widen the window or "
                "check the feature name",
                {"window": label, "feature": feature, **shown},
            )
        sides[label] = described
    ref, cur = sides["reference"].drift_columns(), sides["current"].drift_columns()
    empty = [name for name in wanted if not (_has_values(ref[name]) and _has_values(cur[name]))]
    if columns is not None and empty:
        side = "reference" if not _has_values(ref[empty[0]]) else "current"
        raise ValidationFailed(
            f"descriptor {empty[0]!r} has no values in the {side} window, so it cannot be compared; "
            "leave it out of columns",
            {"columns": empty},
        )
    kept = [name for name in wanted if name not in empty]
    if not kept:
        raise ValidationFailed("no descriptor has values in both windows", {"columns": wanted})
    return dataset_drift(
        ref,
        cur,
        columns=kept,
        column_types={name: DRIFT_COLUMN_TYPES[name] for name in kept},
        tests=tests,
        thresholds=thresholds,
        drift_share=drift_share,
    )


__all__ = [
    "DESCRIPTORS",
    "DRIFT_COLUMN_TYPES",
    "REFUSAL_PATTERNS",
    "UNDETERMINED",
    "TraceDescriptors",
    "costs",
    "descriptor_drift",
    "detect_language",
    "is_refusal",
    "json_validity",
    "languages",
    "refusal_matches",
    "refusals",
    "text_lengths",
    "trace_descriptors",
]
