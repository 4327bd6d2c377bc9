"""Why a flywheel stalled: the three causes that :func:`prodloop.monitoring.flywheel.flywheel_health`
attributes a stall to, each with the numbers behind it, and their ranking.

**Attribution** (only for a stalled flywheel unless ``attribute=True``). The steps of the window
are *recent*, the scored checkpoints up to the window's start are *earlier*:

* diminishing returns is *supported* when the learning curve of the earlier checkpoints predicted a
  gain over the window that the observed gain falls short of by less than ``min_gain_points``
  (the curve foresaw the plateau); with fewer than two earlier checkpoints, when the curve over all
  checkpoints fits (R² >= 0.9) and gives less than ``min_gain_points`` over the window.
  Strength: the R² of the curve over all checkpoints.
* label quality is *supported* when the alpha (or the gold accuracy) of the labels made for the
  recent checkpoints is at least ``min_quality_drop`` (default 0.1) below that of the earlier ones.
  The labels of a checkpoint are those it added; their agreement is the queue's agreement over the
  time in which they were given (:func:`prodloop.annotation.queue_agreement` with since/until),
  alpha averaged over fields weighted by items. Strength: drop / (3 · ``min_quality_drop``), at most 1.
* distribution shift is *supported* when the latest checkpoint's training inputs drift from the
  feature's traffic in the current window (default: the 7 days before ``as_of``): the text test on
  the inputs drifts, or the dataset drifts (:func:`prodloop.monitoring.drift.dataset_drift` on
  ``input`` (text), ``input_chars`` and ``language``). Strength: 2 · (AUC - 0.5) of the text test, or
  the share of drifted columns.

Causes are ranked supported first, then by strength. The strengths are rough scores from 0 to 1 for
ordering; the evidence is in each cause's numbers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from prodloop.capture.queries import iso, to_ns
from prodloop.errors import NotFound, ValidationFailed
from prodloop.monitoring.learning_curve import _curve_fit_of, _curve_value, _num
from prodloop.store import read_transaction
from prodloop.store.schema import traces

if TYPE_CHECKING:
    from prodloop.monitoring.flywheel import StallRule, _Checkpoint

#: Most rows read from each side for the drift comparison (a deterministic sample beyond).
MAX_DRIFT_ROWS = 5000
#: R² a curve over all checkpoints needs to explain a stall when too few checkpoints precede it.
MIN_CURVE_R2 = 0.9
#: Bootstrap resamples for the agreement intervals.
AGREEMENT_RESAMPLES = 200


# --------------------------------------------------------------------------------------------------
# Attribution: diminishing returns


def _diminishing_returns(
    entries: list[dict[str, Any]], stall: dict[str, Any], rule: StallRule, point: float
) -> dict[str, Any]:
    scored = [e for e in entries if e["score"] is not None]
    cause: dict[str, Any] = {"cause": "diminishing_returns", "supported": False, "strength": 0.0}
    whole = _curve_fit_of(scored, point)
    if whole is None:
        return {**cause, "summary": "too few checkpoints with different label counts for a learning curve"}
    curve, _ = whole
    window = stall["window"]
    base, last = stall["steps"][0], stall["steps"][-1]
    earlier = [e for e in entries[: base + 1] if e["score"] is not None]
    observed = window["score_change_points"]
    evidence: dict[str, Any] = {"curve": curve}
    history = _curve_fit_of(earlier, point) if len(earlier) >= 2 else None
    if history is not None:
        summary_fit, fit = history
        predicted = (
            _curve_value(fit, entries[last]["labels"]) - _curve_value(fit, entries[base]["labels"])
        ) / point
        shortfall = predicted - observed
        supported = shortfall < rule.min_gain_points
        evidence.update(
            basis="earlier checkpoints",
            earlier_curve=summary_fit,
            predicted_gain_points=_num(predicted, 4),
            observed_gain_points=observed,
            shortfall_points=_num(shortfall, 4),
        )
        how = (
            f"the {summary_fit['model']} learning curve of the {len(earlier)} earlier checkpoints "
            f"predicted {predicted:+.2f} points for these {window['labels_added']:,} labels and they "
            f"gave {observed:+.2f}"
        )
    else:
        gain = _curve_value(whole[1], entries[last]["labels"]) - _curve_value(
            whole[1], entries[base]["labels"]
        )
        gain /= point
        supported = (curve["r2"] or 0.0) >= MIN_CURVE_R2 and gain < rule.min_gain_points
        evidence.update(basis="all checkpoints", curve_gain_points=_num(gain, 4))
        how = (
            f"the learning curve over all {len(scored)} checkpoints (R² {curve['r2']:.2f}) gives "
            f"{gain:+.2f} points over the window"
        )
    needed = curve["labels_for_one_point"]
    reading = (
        f"at {curve['labels']:,} labels it rises {curve['slope_per_1000']:.2f} points per 1,000 labels; "
        + (
            f"one more point needs about {needed:,} labels"
            if needed is not None
            else f"it levels off at {curve['asymptote']:.4g}, within a point of today"
            if curve["asymptote"] is not None
            else "no number of labels gives one more point at this slope"
        )
    )
    return {
        **cause,
        "supported": bool(supported),
        "strength": _num(max(0.0, min(1.0, curve["r2"] or 0.0)), 4) if supported else 0.0,
        "summary": f"{how}; {reading}",
        "evidence": evidence,
    }


# --------------------------------------------------------------------------------------------------
# Attribution: label quality


def _gold_accuracy(rows: list[dict[str, Any]], spec_types: Mapping[str, str]) -> tuple[int, int]:
    """(correct, total) of the gold labels in ``rows``: correct when every field the gold answer
    sets (free text aside) matches, multi-label answers as sets."""
    right = total = 0
    for row in rows:
        gold = row["gold"] or {}
        checked = [
            name for name, value in gold.items() if value is not None and spec_types.get(name) != "text"
        ]
        if not checked:
            continue
        total += 1
        right += all(_same_answer(row["value"].get(name), gold[name]) for name in checked)
    return right, total


def _same_answer(given: Any, expected: Any) -> bool:
    if isinstance(given, list) and isinstance(expected, list):
        return set(given) == set(expected)  # multi-label answers are sets
    return bool(given == expected)


def _quality_of(
    engine: sa.Engine,
    project_id: int,
    name: str,
    new_labels: list[dict[str, Any]],
    queue_of: Mapping[int, str],
) -> dict[str, Any]:
    """Agreement and gold accuracy of the labels given while a checkpoint's new labels were made."""
    from prodloop.annotation import current_labels, queue_agreement, queue_schema

    spans: dict[str, list[int]] = {}
    for label in new_labels:
        if label["role"] == "annotation" and queue_of.get(label["id"]):
            spans.setdefault(queue_of[label["id"]], []).append(int(label["created_ns"]))
    fields: list[dict[str, Any]] = []
    right = seen = 0
    since_ns = until_ns = None
    for queue, times in sorted(spans.items()):
        start, end = min(times) // 1000 * 1000, (max(times) // 1000 + 1) * 1000
        since_ns = start if since_ns is None else min(since_ns, start)
        until_ns = end if until_ns is None else max(until_ns, end)
        try:
            report = queue_agreement(
                engine,
                project_id,
                queue,
                since=datetime.fromtimestamp(start / 1e9, tz=UTC),
                until=datetime.fromtimestamp(end / 1e9, tz=UTC),
                n_resamples=AGREEMENT_RESAMPLES,
            )
            types = {spec.name: spec.type for spec in queue_schema(engine, project_id, queue).fields}
        except NotFound:  # the queue behind an old snapshot is gone: its labels cannot be rated
            continue
        for field in report["fields"]:
            fields.append(
                {
                    "queue": queue,
                    "field": field["field"],
                    "alpha": _num(field["krippendorff_alpha"]),
                    "alpha_ci": field["alpha_ci"],
                    "n_items": field["n_items"],
                }
            )
        gold_rows = [
            row for row in current_labels(engine, project_id, queue, start, end) if row["gold"] is not None
        ]
        r, n = _gold_accuracy(gold_rows, types)
        right, seen = right + r, seen + n
    weighted = [(f["alpha"], f["n_items"]) for f in fields if f["alpha"] is not None and f["n_items"]]
    items = sum(n for _, n in weighted)
    return {
        "checkpoint": name,
        "new_labels": len(new_labels),
        "since": iso(since_ns),
        "until": iso(until_ns),
        "alpha": _num(sum(a * n for a, n in weighted) / items) if items else None,
        "alpha_items": items,
        "fields": fields,
        "gold_accuracy": _num(right / seen) if seen else None,
        "gold_labels": seen,
    }


def _pooled(rows: list[dict[str, Any]], value: str, weight: str) -> float | None:
    present = [(r[value], r[weight]) for r in rows if r[value] is not None and r[weight]]
    total = sum(w for _, w in present)
    return sum(v * w for v, w in present) / total if total else None


def _label_quality(
    engine: sa.Engine,
    project_id: int,
    entries: list[dict[str, Any]],
    loaded: list[_Checkpoint],
    stall: dict[str, Any],
    rule: StallRule,
) -> dict[str, Any]:
    from prodloop.annotation import labels_by_ids

    cause: dict[str, Any] = {"cause": "label_quality", "supported": False, "strength": 0.0}
    base = stall["steps"][0]
    series = []
    previous: set[int] = set()
    for index, checkpoint in enumerate(loaded):
        new = sorted(checkpoint.labels - previous)
        previous = checkpoint.labels
        if not new:
            continue
        quality = _quality_of(
            engine,
            project_id,
            entries[index]["name"],
            labels_by_ids(engine, project_id, new),
            checkpoint.label_queue,
        )
        series.append({**quality, "recent": index > base})
    earlier = [q for q in series if not q["recent"]]
    recent = [q for q in series if q["recent"]]
    alpha_before, alpha_after = (
        _pooled(earlier, "alpha", "alpha_items"),
        _pooled(recent, "alpha", "alpha_items"),
    )
    gold_before, gold_after = (
        _pooled(earlier, "gold_accuracy", "gold_labels"),
        _pooled(recent, "gold_accuracy", "gold_labels"),
    )
    alpha_drop = None if alpha_before is None or alpha_after is None else alpha_before - alpha_after
    gold_drop = None if gold_before is None or gold_after is None else gold_before - gold_after
    evidence = {
        "checkpoints": series,
        "alpha_earlier": _num(alpha_before),
        "alpha_recent": _num(alpha_after),
        "alpha_drop": _num(alpha_drop),
        "gold_accuracy_earlier": _num(gold_before),
        "gold_accuracy_recent": _num(gold_after),
        "gold_accuracy_drop": _num(gold_drop),
    }
    drops = [d for d in (alpha_drop, gold_drop) if d is not None]
    if not drops:
        return {
            **cause,
            "summary": "no agreement or gold accuracy to compare between earlier and recent labels",
            "evidence": evidence,
        }
    worst = max(drops)
    supported = worst >= rule.min_quality_drop
    parts = []
    if alpha_drop is not None:
        parts.append(
            f"Krippendorff's alpha of the new labels went from {alpha_before:.2f} to {alpha_after:.2f}"
        )
    if gold_drop is not None:
        parts.append(f"gold accuracy from {gold_before:.1%} to {gold_after:.1%}")
    return {
        **cause,
        "supported": bool(supported),
        "strength": _num(min(1.0, worst / (3 * rule.min_quality_drop)) if rule.min_quality_drop else 1.0, 4)
        if supported
        else 0.0,
        "summary": " and ".join(parts) + " between the earlier and the recent checkpoints",
        "evidence": evidence,
    }


# --------------------------------------------------------------------------------------------------
# Attribution: distribution shift


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _sample(count: int, limit: int) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, size=limit, replace=False))


def _training_inputs(
    engine: sa.Engine, project_id: int, snapshots: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The inputs (and trace ids) of the rows of these snapshots that have an input."""
    from prodloop.datasets import snapshot_rows

    texts: list[str] = []
    trace_ids: list[str] = []
    for snapshot in snapshots:
        offset: int | None = 0
        while offset is not None:
            page = snapshot_rows(engine, project_id, snapshot, offset=offset, limit=1000)
            for row in page["rows"]:
                text = _text(row.get("input"))
                if text:
                    texts.append(text)
                    trace_ids.append(row.get("trace_id") or "")
            offset = page["next_offset"]
    return texts, trace_ids


def _training_feature(engine: sa.Engine, project_id: int, trace_ids: list[str]) -> str | None:
    from prodloop.capture import trace_summaries

    ids = sorted({t for t in trace_ids if t})
    features = Counter(
        s["feature"] for s in trace_summaries(engine, project_id, ids).values() if s["feature"]
    )
    return features.most_common(1)[0][0] if features else None


def _current_traffic(
    engine: sa.Engine, project_id: int, feature: str, since: datetime, until: datetime
) -> tuple[list[str], list[str]]:
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(traces.c.trace_id, traces.c.input_text)
            .where(
                traces.c.project_id == project_id,
                traces.c.feature == feature,
                traces.c.start_ns >= to_ns(since),
                traces.c.start_ns < to_ns(until),
                traces.c.input_text.is_not(None),
            )
            .order_by(traces.c.start_ns.desc(), traces.c.trace_id)
            .limit(MAX_DRIFT_ROWS)
        ).all()
    return [row.input_text for row in rows], [row.trace_id for row in rows]


def _drift_columns(texts: list[str]) -> dict[str, np.ndarray]:
    from prodloop.monitoring.descriptors import languages, text_lengths

    chars, _ = text_lengths(texts)
    values = np.empty(len(texts), dtype=object)
    values[:] = texts
    return {"input": values, "input_chars": chars, "language": languages(texts)}


_DRIFT_TYPES = {"input": "text", "input_chars": "numeric", "language": "categorical"}


def _distribution_shift(
    engine: sa.Engine,
    project_id: int,
    latest: _Checkpoint,
    feature: str | None,
    window: tuple[datetime, datetime],
) -> tuple[dict[str, Any], list[str]]:
    """The cause, and the current traces most unlike the training inputs (for the alert's slice)."""
    import prodloop.monitoring.text  # noqa: F401  (registers the text drift tests)
    from prodloop.monitoring.drift import dataset_drift
    from prodloop.monitoring.text import text_drift_explanation

    cause: dict[str, Any] = {"cause": "distribution_shift", "supported": False, "strength": 0.0}
    reference, reference_ids = _training_inputs(engine, project_id, latest.train)
    feature = feature or _training_feature(engine, project_id, reference_ids)
    evidence: dict[str, Any] = {
        "checkpoint": latest.view["name"],
        "feature": feature,
        "since": window[0].isoformat(),
        "until": window[1].isoformat(),
    }
    if feature is None:
        return {**cause, "summary": "no feature to compare with: pass feature=", "evidence": evidence}, []
    current, current_ids = _current_traffic(engine, project_id, feature, *window)
    reference = [reference[i] for i in _sample(len(reference), MAX_DRIFT_ROWS)]
    evidence.update(n_reference=len(reference), n_current=len(current))
    if len(reference) < 2 or len(current) < 2:
        which = (
            "training inputs"
            if len(reference) < 2
            else f"traces of feature {feature!r} in the current window"
        )
        return {**cause, "summary": f"too few {which} to compare", "evidence": evidence}, []
    try:
        report = dataset_drift(
            _drift_columns(reference),
            _drift_columns(current),
            columns=list(_DRIFT_TYPES),
            column_types=_DRIFT_TYPES,
        )
    except ValidationFailed as error:
        return {**cause, "summary": f"cannot compare: {error.message}", "evidence": evidence}, []
    evidence["drift"] = report.to_dict()
    text = next(column for column in report.columns if column.column == "input")
    supported = text.drift or report.dataset_drift
    drifted = [column.column for column in report.columns if column.drift]
    ranked: list[str] = []
    if text.drift:
        explained = text_drift_explanation(reference, current, top_rows=20, top_terms=10)
        ranked = [current_ids[i] for i, _ in explained["rows"]]
        evidence.update(
            current_terms=[t["term"] for t in explained["terms"]],
            training_terms=[t["term"] for t in explained["reference_terms"]],
            trace_ids=ranked,
        )
        strength = max(0.0, min(1.0, 2 * (text.result.statistic - 0.5)))
    else:
        strength = report.share_drifted
    summary = (
        f"the training inputs of {latest.view['name']} differ from the current traffic of {feature!r}: "
        f"the text domain classifier tells them apart with ROC AUC {text.result.statistic:.2f}"
        + (f" ({', '.join(drifted)} drifted)" if drifted else "")
        if supported
        else f"the training inputs of {latest.view['name']} match the current traffic of {feature!r} "
        f"(text AUC {text.result.statistic:.2f}, no drift)"
    )
    return {
        **cause,
        "supported": bool(supported),
        "strength": _num(strength, 4) if supported else 0.0,
        "summary": summary,
        "evidence": evidence,
    }, ranked


# --------------------------------------------------------------------------------------------------
# Ranking


def _ranked(causes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {"diminishing_returns": 0, "label_quality": 1, "distribution_shift": 2}
    return sorted(causes, key=lambda c: (not c["supported"], -(c["strength"] or 0.0), order[c["cause"]]))
