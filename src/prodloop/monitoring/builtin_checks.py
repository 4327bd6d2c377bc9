"""prodloop's own monitor checks, registered by name: see :mod:`prodloop.monitoring.checks`.

``outcome``
    an outcome rate or mean (handled rate, thumbs-down, escalation, any signal; errors and latency)
    against the reference, and CUSUM for slow slides (:mod:`prodloop.monitoring.outcomes`);
``columns``
    drift of root-span attributes (``support.route``: the intents users ask about), with the values
    that grew and the traces that carry them;
``descriptors``
    drift of per-trace descriptors of inputs and outputs (length, refusal, JSON validity, language,
    tool calls, latency, tokens, cost: :mod:`prodloop.monitoring.descriptors`);
``text``
    drift of the input (or output) texts: a TF-IDF domain classifier (:mod:`prodloop.monitoring.text`),
    with the current texts it recognises most confidently and the terms that mark them;
``embedding``
    drift of the texts' all-MiniLM-L6-v2 embeddings (cached in the store): a domain classifier, MMD
    with a permutation p-value, the distance between means, and clusters of new ground;
``coverage``
    the share of traffic farther than a radius from every example of an eval snapshot, and its
    uncovered clusters (:mod:`prodloop.monitoring.coverage`);
``flywheel``
    whether labels still buy eval score, and if not why (:mod:`prodloop.monitoring.flywheel`).

Heavy modules are imported when a check runs, so that defining a monitor stays cheap.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodloop.capture.queries import to_ns
from prodloop.monitoring.checks import CheckContext, CheckResult, register_check
from prodloop.monitoring.columns import Window, attribute_columns, ranked_by_shift, value_shifts
from prodloop.monitoring.findings import Finding
from prodloop.monitoring.terms import distinguishing_terms
from prodloop.store import read_transaction
from prodloop.store.schema import traces


def _windows(context: CheckContext) -> tuple[Window, Window]:
    """The reference and current windows of a run as trace windows."""
    current = Window(context.current[0], context.current[1])
    if context.reference is not None:
        return Window(context.reference[0], context.reference[1]), current
    # A release as reference: its traces up to the current window.
    return Window(None, context.current[0], context.reference_release), current


def _describe(window: Window) -> str:
    if window.release is not None:
        return f"release {window.release}"
    assert window.since is not None
    return f"{window.since:%Y-%m-%d %H:%M} to {window.until:%Y-%m-%d %H:%M}"


def _verdict(result: Any) -> str:
    """``(jensenshannon 0.231, threshold 0.1)``: the statistic that decided and its threshold."""
    return f"({result.test} {result.statistic:.3g}, threshold {result.threshold:g})"


def _severity(share_or_effect: float, critical_at: float) -> str:
    return "critical" if share_or_effect >= critical_at else "warning"


# --------------------------------------------------------------------------------------------------
# outcome


class OutcomeCheckAdapter:
    name = "outcome"

    @property
    def arguments(self) -> type[BaseModel]:
        from prodloop.monitoring.outcome_metrics import OutcomeArguments

        return OutcomeArguments

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        from prodloop.monitoring.outcome_metrics import OutcomeCheck
        from prodloop.monitoring.outcomes import evaluate_outcome

        check = OutcomeCheck(
            **arguments.model_dump(),
            feature=context.monitor.feature,
            reference=context.monitor.reference,
            current=context.monitor.current.window,
        )
        result = evaluate_outcome(context.engine, context.project_id, check, context.as_of)
        return CheckResult(result.to_dict(), list(result.findings))


# --------------------------------------------------------------------------------------------------
# columns


class ColumnsArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Root-span attributes to test, e.g. ``support.route``.
    attributes: list[str] = Field(min_length=1, max_length=100)
    #: Columns to read as numbers (the others are categories).
    numeric: list[str] = Field(default_factory=list)
    #: One drift test for every column, or one per column (default: Evidently's choice).
    tests: str | dict[str, str] | None = None
    thresholds: float | dict[str, float] | None = None
    #: Fewer traces than this in either window: no test.
    min_rows: int = Field(default=100, ge=1)
    #: How many of the traces that carry a grown value an alert keeps, for routing.
    max_trace_ids: int = Field(default=500, ge=0, le=10_000)


def _as_numbers(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        try:
            out[i] = float(value) if value is not None else np.nan
        except (TypeError, ValueError):
            out[i] = np.nan
    return out


def _band(band: dict[str, Any]) -> str:
    low, high = band["lower"], band["upper"]
    if low is not None and high is not None:
        return f"{low:.3g} to {high:.3g}"
    return f"at most {high:.3g}" if high is not None else f"at least {low:.3g}"


def _learned(
    context: CheckContext,
    ref: Any,
    cur: Any,
    ref_columns: dict[str, np.ndarray],
    cur_columns: dict[str, np.ndarray],
    types: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """Learned thresholds (the monitor's ``chunk``): per column, the band of the test's statistic
    over the reference's chunks, and each current chunk against it; the column alerts when a current
    chunk leaves the band."""
    from prodloop.monitoring.learned import chunk_drift, learn_threshold

    chunk = context.monitor.chunk
    by_time = isinstance(chunk, str)
    cut: dict[str, Any] = {"timestamps": ref.start_ns, "period": chunk} if by_time else {"chunk_size": chunk}
    out = {}
    for name in ref_columns:
        band = learn_threshold(ref_columns[name], column_type=types[name], **cut)
        now = chunk_drift(
            ref_columns[name],
            cur_columns[name],
            band,
            **({"timestamps": cur.start_ns, "period": chunk} if by_time else {"chunk_size": chunk}),
        )
        out[name] = {
            "test": band.test,
            "chunk": str(chunk) if by_time else f"{chunk}-row",
            "lower": band.lower,
            "upper": band.upper,
            "alert": any(c.alert for c in now),
            "chunks": [c.to_dict() for c in now],
        }
    return out


class ColumnsCheck:
    name = "columns"
    arguments = ColumnsArguments

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        from prodloop.monitoring.drift import dataset_drift

        args: ColumnsArguments = arguments
        ref_window, cur_window = _windows(context)
        feature = context.monitor.feature
        ref = attribute_columns(context.engine, context.project_id, feature, ref_window, args.attributes)
        cur = attribute_columns(context.engine, context.project_id, feature, cur_window, args.attributes)
        sizes = {"n_reference": len(ref.trace_ids), "n_current": len(cur.trace_ids)}
        if min(sizes.values()) < args.min_rows:
            return CheckResult({"skipped": f"fewer than {args.min_rows} traces in a window", **sizes})
        types = {name: ("numeric" if name in args.numeric else "categorical") for name in args.attributes}
        ref_columns, cur_columns = {}, {}
        for name in args.attributes:
            if types[name] == "numeric":
                ref_columns[name], cur_columns[name] = (
                    _as_numbers(ref.columns[name]),
                    _as_numbers(cur.columns[name]),
                )
            else:
                ref_columns[name], cur_columns[name] = ref.columns[name], cur.columns[name]
        report = dataset_drift(
            ref_columns,
            cur_columns,
            column_types=types,
            tests=args.tests,
            thresholds=args.thresholds,
            progress=context.progress,
        )
        shifts = {
            name: value_shifts(ref.columns[name], cur.columns[name])
            for name in args.attributes
            if types[name] == "categorical"
        }
        learned = (
            _learned(context, ref, cur, ref_columns, cur_columns, types) if context.monitor.chunk else {}
        )
        findings = []
        for column in report.columns:
            band = learned.get(column.column)
            if not (band["alert"] if band is not None else column.result.drift):
                continue
            name = column.column
            detail: dict[str, Any] = {**column.to_dict(), **sizes}
            slice_extra: dict[str, Any] = {}
            title = f"{name} drifted from {_describe(ref_window)} " + _verdict(column.result)
            if band is not None:
                detail["learned"] = band
                title = (
                    f"{name} drifted from {_describe(ref_window)}: {band['test']} left the band that the "
                    f"reference's {band['chunk']} chunks learned ({_band(band)})"
                )
            if name in shifts:
                grown = [s for s in shifts[name] if s["change"] > 0][:3]
                detail["shifts"] = shifts[name]
                title += ": " + ", ".join(
                    f"{s['value']} {s['reference_share']:.0%} → {s['current_share']:.0%}" for s in grown
                )
                trace_ids, strata = ranked_by_shift(
                    cur.trace_ids, ref.columns[name], cur.columns[name], args.max_trace_ids
                )
                slice_extra = {"trace_ids": trace_ids, "strata": strata}
            moved = max((abs(s["change"]) for s in shifts.get(name, [])), default=0.0)
            findings.append(
                Finding(
                    key=f"column:{name}",
                    title=title,
                    severity=_severity(moved, 0.15),
                    detail=detail,
                    slice=context.slice(**slice_extra),
                )
            )
        results = {"report": report.to_dict(), "shifts": shifts, **sizes}
        if learned:
            results["learned"] = learned
        return CheckResult(results, findings)


# --------------------------------------------------------------------------------------------------
# descriptors


class DescriptorsArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Which descriptors (default: all that have values in both windows).
    columns: list[str] | None = None
    tests: str | dict[str, str] | None = None
    thresholds: float | dict[str, float] | None = None
    refusal_patterns: list[str] | None = None


class DescriptorsCheck:
    name = "descriptors"
    arguments = DescriptorsArguments

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        from prodloop.monitoring.descriptors import descriptor_drift

        args: DescriptorsArguments = arguments
        ref_window, cur_window = _windows(context)
        reference: Any = (
            ref_window.release if ref_window.release is not None else (ref_window.since, ref_window.until)
        )
        report = descriptor_drift(
            context.engine,
            context.project_id,
            context.monitor.feature,
            reference=reference,
            current=(cur_window.since, cur_window.until),
            columns=args.columns,
            tests=args.tests,
            thresholds=args.thresholds,
            refusal_patterns=args.refusal_patterns,
        )
        findings = [
            Finding(
                key=f"descriptor:{column.column}",
                title=(
                    f"{column.column.replace('_', ' ')} drifted from {_describe(ref_window)} "
                    + _verdict(column.result)
                ),
                severity="warning",
                detail=column.to_dict(),
                slice=context.slice(),
            )
            for column in report.columns
            if column.result.drift
        ]
        return CheckResult({"report": report.to_dict()}, findings)


# --------------------------------------------------------------------------------------------------
# text


class TextArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: Literal["input", "output"] = "input"
    #: abs_text_content_drift or perc_text_content_drift (default: Evidently's choice by size).
    test: str | None = None
    threshold: float | None = None
    #: Texts read per window at most (a seeded random sample of them beyond that).
    max_rows: int = Field(default=5000, ge=50, le=200_000)
    min_rows: int = Field(default=50, ge=10)
    max_trace_ids: int = Field(default=500, ge=0, le=10_000)


def window_texts(
    engine: sa.Engine, project_id: int, feature: str, window: Window, field: str, max_rows: int, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Trace ids and texts (input or output) of the window; a seeded sample of ``max_rows`` beyond that."""
    column = traces.c.input_text if field == "input" else traces.c.output_text
    where = [
        traces.c.project_id == project_id,
        traces.c.feature == feature,
        traces.c.start_ns < to_ns(window.until),
        column.is_not(None),
    ]
    if window.since is not None:
        where.append(traces.c.start_ns >= to_ns(window.since))
    if window.release is not None:
        where.append(traces.c.release == window.release)
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(traces.c.trace_id, column).where(*where).order_by(traces.c.start_ns, traces.c.trace_id)
        ).all()
    if len(rows) > max_rows:
        rows = sorted(random.Random(seed).sample(rows, max_rows), key=lambda r: r[0])
    return [r[0] for r in rows], [r[1] for r in rows]


def _window_pair(
    context: CheckContext, field: str, max_rows: int
) -> tuple[Window, list[str], list[str], list[str], dict[str, Any]]:
    """The reference window, its texts, the current trace ids and texts, and their counts."""
    ref_window, cur_window = _windows(context)
    feature = context.monitor.feature
    _, ref_texts = window_texts(context.engine, context.project_id, feature, ref_window, field, max_rows)
    cur_ids, cur_texts = window_texts(
        context.engine, context.project_id, feature, cur_window, field, max_rows
    )
    sizes = {"field": field, "n_reference": len(ref_texts), "n_current": len(cur_texts)}
    return ref_window, ref_texts, cur_ids, cur_texts, sizes


class TextCheck:
    name = "text"
    arguments = TextArguments

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        from prodloop.monitoring.drift import column_drift
        from prodloop.monitoring.text import text_drift_explanation

        args: TextArguments = arguments
        ref_window, ref_texts, cur_ids, cur_texts, sizes = _window_pair(context, args.field, args.max_rows)
        if min(sizes["n_reference"], sizes["n_current"]) < args.min_rows:
            return CheckResult({"skipped": f"fewer than {args.min_rows} texts in a window", **sizes})
        reference = np.array(ref_texts, dtype=object)
        current = np.array(cur_texts, dtype=object)
        drift = column_drift(
            args.field, reference, current, column_type="text", test=args.test, threshold=args.threshold
        )
        results: dict[str, Any] = {**sizes, "result": drift.result.to_dict()}
        findings = []
        if drift.result.drift:
            explanation = text_drift_explanation(
                reference, current, top_rows=args.max_trace_ids, top_terms=15
            )
            ranked = [cur_ids[index] for index, _ in explanation["rows"]]
            examples = [
                {"trace_id": cur_ids[index], "text": cur_texts[index][:300], "score": score}
                for index, score in explanation["rows"][:5]
            ]
            words = distinguishing_terms(ref_texts, cur_texts, top=15)
            results["explanation"] = {
                "auc": explanation["auc"],
                "terms": words["current"],
                "reference_terms": words["reference"],
                "classifier_terms": explanation["terms"],
                "examples": examples,
            }
            terms = ", ".join(t["term"] for t in words["current"][:5]) or "no single word"
            findings.append(
                Finding(
                    key=f"text:{args.field}",
                    title=(
                        f"{args.field} texts drifted from {_describe(ref_window)}: a classifier tells "
                        f"them apart (ROC AUC {drift.result.statistic:.2f}); new: {terms}"
                    ),
                    severity=_severity(drift.result.statistic, 0.75),
                    detail={**drift.to_dict(), "terms": words["current"], "examples": examples},
                    slice=context.slice(trace_ids=ranked),
                )
            )
        return CheckResult(results, findings)


# --------------------------------------------------------------------------------------------------
# embedding


class EmbeddingArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: Literal["input", "output"] = "input"
    #: Texts read per window at most (a seeded random sample beyond that); each is embedded once and
    #: cached, so a sliding window re-encodes only its new days.
    max_rows: int = Field(default=2000, ge=50, le=100_000)
    min_rows: int = Field(default=50, ge=10)
    #: Domain-classifier ROC AUC from which the vectors count as drifted.
    threshold: float | None = Field(default=None, gt=0.5, lt=1)
    max_trace_ids: int = Field(default=500, ge=0, le=10_000)


class EmbeddingCheck:
    name = "embedding"
    arguments = EmbeddingArguments

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        from prodloop.embeddings import embed_texts
        from prodloop.monitoring.embedding_drift import embedding_drift

        args: EmbeddingArguments = arguments
        ref_window, ref_texts, cur_ids, cur_texts, sizes = _window_pair(context, args.field, args.max_rows)
        if min(sizes["n_reference"], sizes["n_current"]) < args.min_rows:
            return CheckResult({"skipped": f"fewer than {args.min_rows} texts in a window", **sizes})
        reference = embed_texts(context.engine, context.project_id, ref_texts)
        current = embed_texts(context.engine, context.project_id, cur_texts)
        result = (
            embedding_drift(reference, current, texts=cur_texts, max_rows=args.max_rows)
            if args.threshold is None
            else embedding_drift(
                reference, current, texts=cur_texts, max_rows=args.max_rows, threshold=args.threshold
            )
        )
        record = result.to_dict()
        clusters = [
            {**cluster, "trace_ids": [cur_ids[i] for i in cluster["rows"][:50]], "rows": None}
            for cluster in record.pop("clusters")
        ]
        record["driving_trace_ids"] = [cur_ids[i] for i in record.pop("driving_rows")[:50]]
        verdict: dict[str, Any] = {
            "test": "embedding_domain_classifier",
            "statistic": result.auc,
            "p_value": result.p_value,
            "threshold": result.threshold,
            "drift": result.drift,
        }
        results: dict[str, Any] = {**sizes, "result": verdict, "details": record, "clusters": clusters}
        findings = []
        if result.drift:
            ranked = [cur_ids[i] for i in result.driving_rows(limit=args.max_trace_ids)]
            strata: dict[str, str] = {}
            for number, cluster in enumerate(result.clusters):
                for row in cluster.rows:
                    strata.setdefault(cur_ids[row], f"cluster {number + 1}")
            example = (
                result.clusters[0].examples[0][:80] if result.clusters and result.clusters[0].examples else ""
            )
            findings.append(
                Finding(
                    key=f"embedding:{args.field}",
                    title=(
                        f"{args.field} embeddings drifted from {_describe(ref_window)} "
                        f"(classifier ROC AUC {result.auc:.2f}, MMD p = {result.p_value:.2g})"
                        + (f"; e.g. \u201c{example}\u201d" if example else "")
                    ),
                    severity=_severity(result.auc, 0.75),
                    detail={**verdict, "clusters": clusters, "summary": result.summary()},
                    slice=context.slice(trace_ids=ranked, strata=strata),
                )
            )
        return CheckResult(results, findings)


# --------------------------------------------------------------------------------------------------
# coverage


class CoverageCheck:
    name = "coverage"

    @property
    def arguments(self) -> type[BaseModel]:
        from prodloop.monitoring.coverage import CoverageArguments

        return CoverageArguments

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        from prodloop.monitoring.coverage import coverage_findings, eval_coverage

        report = eval_coverage(
            context.engine,
            context.project_id,
            context.monitor.feature,
            arguments.snapshot,
            since=context.current[0],
            until=context.current[1],
            radius=arguments.radius,
            field=arguments.field,
            max_clusters=arguments.max_clusters,
            compute=arguments.compute,
            max_traces=arguments.max_traces,
        )
        return CheckResult(report, coverage_findings(report, min_share=arguments.min_share))


register_check(OutcomeCheckAdapter())
register_check(ColumnsCheck())
register_check(DescriptorsCheck())
register_check(TextCheck())
register_check(EmbeddingCheck())
register_check(CoverageCheck())


def _register_flywheel() -> None:
    from prodloop.monitoring.flywheel import FlywheelCheck

    register_check(FlywheelCheck())


_register_flywheel()
