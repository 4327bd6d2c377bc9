"""Flywheel health: do the labels we add still make the model better?

Per checkpoint (from the datasets lineage, oldest first): how many distinct labels its training
snapshots hold, how many it added since the previous checkpoint, its eval score, the change, and the
gain per 1,000 labels added. A flywheel is *stalled* when labels keep growing and the score does not;
a stall is then attributed, each cause with the numbers behind it:

``diminishing_returns``
    more data of the same kind buys less and less: a learning curve fitted to the earlier checkpoints
    already predicted the small gain.
``label_quality``
    the new labels are worse: their agreement (Krippendorff's alpha) or gold accuracy fell.
``distribution_shift``
    the model is trained on inputs unlike today's traffic: the training snapshot's inputs drift from
    the feature's current traffic (text domain classifier, input length, language).

**Eval scores.** There is no evals package yet, so a checkpoint's score is read from its metadata,
either ``{"eval": {"score": 0.81, "metric": "accuracy", "n": 500}}`` (``metric`` and ``n``, the
number of eval cases, optional) or a top-level ``{"eval_score": 0.81}``; the ``scores`` argument
({checkpoint name: score}) overrides both, so an evals package can feed its own. A *point* is 0.01
when every score lies in [0, 1] (one percentage point of accuracy), else 1.0; ``point=`` overrides.

**The stall rule.** Over the last ``window`` steps between scored checkpoints (default 2, so the
latest three scored checkpoints): the flywheel is *stalled* when the latest checkpoint holds at least
``min_labels`` (default 200) labels that the checkpoint ``window`` steps back did not, and its score
is less than ``min_gain_points`` (default 1.0) points higher. It is *healthy* when the score rose by
at least that, *idle* when it did not but fewer labels were added (nothing to judge), and
``not_enough_checkpoints`` with fewer than ``window + 1`` scored checkpoints. The least-squares
slope of score against labels over the window is reported beside it.

**Learning curves.** ``log``: score = a + b·ln(labels); ``power``: score = c - a·labels^(-alpha)
(alpha > 0; c is the score the curve levels off at). The power law is fitted with
``scipy.optimize.curve_fit`` from 3 points on and chosen when its residual sum of squares is at most
half the log curve's; otherwise the log curve is used. From the curve: its slope at the current size
(points per 1,000 labels) and the labels needed for one more point (None when the curve levels off
within a point of the current score).

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
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodloop.capture.queries import iso, to_ns
from prodloop.errors import NotFound, ValidationFailed
from prodloop.monitoring.checks import CheckContext, CheckResult
from prodloop.monitoring.findings import Finding
from prodloop.store import read_transaction
from prodloop.store.schema import traces

FINDING_KEY = "flywheel:stalled"
#: Most rows read from each side for the drift comparison (a deterministic sample beyond).
MAX_DRIFT_ROWS = 5000
#: The current window when none is given: this long before ``as_of``.
DEFAULT_CURRENT = timedelta(days=7)
#: Fewest label counts a learning curve is fitted to.
MIN_CURVE_POINTS = 3
#: R² a curve over all checkpoints needs to explain a stall when too few checkpoints precede it.
MIN_CURVE_R2 = 0.9
#: Bootstrap resamples for the agreement intervals.
AGREEMENT_RESAMPLES = 200

Status = Literal["stalled", "healthy", "idle", "not_enough_checkpoints"]
CurveModel = Literal["auto", "log", "power"]


@dataclass(frozen=True)
class StallRule:
    """The thresholds of the stall rule and of the attribution (see the module docstring)."""

    window: int = 2
    min_labels: int = 200
    min_gain_points: float = 1.0
    min_quality_drop: float = 0.1

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValidationFailed(f"window must be at least 1 checkpoint step, got {self.window}")
        if self.min_labels < 0 or self.min_gain_points < 0 or self.min_quality_drop < 0:
            raise ValidationFailed("min_labels, min_gain_points and min_quality_drop must not be negative")


def _num(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe float: None for missing, NaN or infinite values."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


# --------------------------------------------------------------------------------------------------
# Eval scores


def checkpoint_eval_score(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The eval score a checkpoint's metadata records: ``{"score", "metric", "n", "source"}``, or None.

    Reads ``{"eval": {"score", "metric", "n"}}`` first, then a top-level ``eval_score`` (with
    ``eval_metric`` and ``eval_n`` beside it, all optional)."""
    metadata = metadata or {}
    block = metadata.get("eval")
    if isinstance(block, Mapping) and _is_number(block.get("score")):
        return {
            "score": float(block["score"]),
            "metric": block.get("metric"),
            "n": block.get("n"),
            "source": "metadata.eval",
        }
    if _is_number(metadata.get("eval_score")):
        return {
            "score": float(metadata["eval_score"]),
            "metric": metadata.get("eval_metric"),
            "n": metadata.get("eval_n"),
            "source": "metadata.eval_score",
        }
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------------------
# Learning curves


def _log_fit(n: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    design = np.column_stack([np.ones_like(n), np.log(n)])
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = a + b * np.log(n)
    return {"model": "log", "params": {"a": float(a), "b": float(b)}, "fitted": fitted}


def _power_fit(n: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """score = c - a·n^(-alpha), fitted on n / max(n) for conditioning; None if it does not converge
    to an alpha inside (0.001, 10)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    scale = float(n.max())
    x = n / scale
    spread = float(np.ptp(y)) or 1.0

    def curve(x: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
        return c - a * np.power(x, -alpha)

    c0 = float(y.max()) + 0.1 * spread
    p0 = [c0, max(c0 - float(y[np.argmin(x)]), 1e-6) * float(x.min()) ** 0.5, 0.5]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            (c, a_scaled, alpha), _ = curve_fit(
                curve, x, y, p0=p0, bounds=([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 10.0]), maxfev=20000
            )
    except (RuntimeError, ValueError):
        return None
    if not (1.001e-3 < alpha < 9.99) or a_scaled <= 0:
        return None
    a = float(a_scaled) * scale ** float(alpha)
    fitted = c - a * np.power(n, -alpha)
    if not np.all(np.isfinite(fitted)):
        return None
    return {"model": "power", "params": {"c": float(c), "a": a, "alpha": float(alpha)}, "fitted": fitted}


def _curve_value(fit: dict[str, Any], n: float) -> float:
    p = fit["params"]
    if fit["model"] == "log":
        return float(p["a"] + p["b"] * math.log(n))
    return float(p["c"] - p["a"] * n ** (-p["alpha"]))


def _labels_for_gain(fit: dict[str, Any], n: float, gain: float) -> float | None:
    """Labels to add to ``n`` for the curve to rise by ``gain``; None when it never does."""
    p = fit["params"]
    try:
        if fit["model"] == "log":
            return n * math.expm1(gain / p["b"]) if p["b"] > 0 else None
        headroom = p["a"] * n ** (-p["alpha"])  # c - f(n)
        if headroom <= gain:
            return None
        return n * ((1 - gain / headroom) ** (-1 / p["alpha"]) - 1)
    except OverflowError:  # a curve so flat that no number of labels gets there
        return None


def fit_learning_curve(
    labels: Sequence[float], scores: Sequence[float], *, point: float = 0.01, model: CurveModel = "auto"
) -> dict[str, Any]:
    """Fit score against labels (see the module docstring) and read the curve at the largest size.

    Returns ``{"model", "formula", "params", "n_points", "r2", "rss", "labels", "fitted_score",
    "slope_per_1000", "labels_for_one_point", "asymptote", "alternatives"}``: ``slope_per_1000`` is in
    points per 1,000 labels, ``labels_for_one_point`` the labels to add for one more point (None when
    the curve levels off first), ``alternatives`` the r2 and rss of each model tried."""
    n = np.asarray(labels, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    if n.shape != y.shape or n.ndim != 1:
        raise ValidationFailed("labels and scores need one value each per checkpoint")
    if np.any(n <= 0) or not np.all(np.isfinite(n)) or not np.all(np.isfinite(y)):
        raise ValidationFailed("a learning curve needs positive label counts and finite scores")
    if len(np.unique(n)) < 2 or (model == "power" and len(np.unique(n)) < MIN_CURVE_POINTS):
        raise ValidationFailed(
            f"a learning curve needs at least {2 if model != 'power' else MIN_CURVE_POINTS} different "
            "label counts",
            {"labels": n.tolist()},
        )
    if point <= 0:
        raise ValidationFailed(f"a point must be positive, got {point}")
    total = float(np.sum((y - y.mean()) ** 2))
    tried: dict[str, dict[str, Any]] = {}
    if model in ("auto", "log"):
        tried["log"] = _log_fit(n, y)
    if model in ("auto", "power") and len(np.unique(n)) >= MIN_CURVE_POINTS:
        power = _power_fit(n, y)
        if power is not None:
            tried["power"] = power
        elif model == "power":
            raise ValidationFailed(
                "the power-law learning curve does not fit these points (the scores do not level off)"
            )
    for fit in tried.values():
        fit["rss"] = float(np.sum((y - fit["fitted"]) ** 2))
        fit["r2"] = 1 - fit["rss"] / total if total > 0 else None
    chosen = tried.get("log") or tried["power"]
    if "power" in tried and (model == "power" or tried["power"]["rss"] <= 0.5 * tried["log"]["rss"]):
        chosen = tried["power"]
    current = float(n.max())
    p = chosen["params"]
    if chosen["model"] == "log":
        slope = p["b"] / current
        formula = "score = a + b * ln(labels)"
    else:
        slope = p["a"] * p["alpha"] * current ** (-p["alpha"] - 1)
        formula = "score = c - a * labels^(-alpha)"
    needed = _labels_for_gain(chosen, current, point)
    return {
        "model": chosen["model"],
        "formula": formula,
        "params": {key: _num(value, 12) for key, value in p.items()},
        "n_points": len(n),
        "r2": _num(chosen["r2"]),
        "rss": _num(chosen["rss"], 12),
        "labels": int(current),
        "fitted_score": _num(_curve_value(chosen, current)),
        "slope_per_1000": _num(slope * 1000 / point),
        "labels_for_one_point": None if needed is None else math.ceil(needed),
        "asymptote": _num(p["c"]) if chosen["model"] == "power" else None,
        "alternatives": {
            name: {"r2": _num(fit["r2"]), "rss": _num(fit["rss"], 12)} for name, fit in tried.items()
        },
    }


def _curve_fit_of(
    entries: list[dict[str, Any]], point: float
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The learning curve of these checkpoints, and the chosen raw fit (to extrapolate)."""
    usable = [e for e in entries if e["labels"] > 0]
    if len({e["labels"] for e in usable}) < 2:
        return None
    summary = fit_learning_curve([e["labels"] for e in usable], [e["score"] for e in usable], point=point)
    params = {key: float(value) for key, value in summary["params"].items() if value is not None}
    return summary, {"model": summary["model"], "params": params}


# --------------------------------------------------------------------------------------------------
# Checkpoints and their labels


@dataclass
class _Checkpoint:
    view: dict[str, Any]
    created_ns: int
    train: list[str]
    eval: list[str]
    labels: set[int]
    label_queue: dict[int, str]
    rows: int


def _created_ns(view: Mapping[str, Any]) -> int:
    return to_ns(datetime.fromisoformat(str(view["created_at"]).replace("Z", "+00:00")))


def _load_checkpoints(
    engine: sa.Engine, project_id: int, names: Sequence[str] | None, as_of: datetime | None
) -> tuple[list[_Checkpoint], list[dict[str, Any]]]:
    """The checkpoints (all, or those named) in creation order, with their training labels; and those
    left out because they were trained on no snapshot."""
    from prodloop.datasets import get_snapshot, list_checkpoints

    views = list(reversed(list_checkpoints(engine, project_id)))
    if names is not None:
        known = {view["name"] for view in views}
        missing = [name for name in names if name not in known]
        if missing:
            raise NotFound(
                f"checkpoint {missing[0]!r} does not exist; `prodloop checkpoint ls` lists them",
                {"checkpoints": missing},
            )
        views = [view for view in views if view["name"] in set(names)]
    if as_of is not None:
        views = [view for view in views if _created_ns(view) <= to_ns(as_of)]
    manifests: dict[str, dict[str, Any]] = {}
    loaded, skipped = [], []
    for view in views:
        train = [d["snapshot_id"] for d in view["datasets"] if d["purpose"] == "train"]
        if not train:
            skipped.append({"name": view["name"], "reason": "no training snapshot"})
            continue
        labels: set[int] = set()
        label_queue: dict[int, str] = {}
        rows = 0
        for snapshot in train:
            if snapshot not in manifests:
                manifests[snapshot] = get_snapshot(engine, project_id, snapshot)["manifest"]
            manifest = manifests[snapshot]
            ids = {int(i) for i in manifest.get("label_ids", ())}
            labels |= ids
            label_queue.update(dict.fromkeys(ids, str(manifest.get("queue"))))
            rows += int(manifest.get("counts", {}).get("rows", 0))
        loaded.append(
            _Checkpoint(
                view=view,
                created_ns=_created_ns(view),
                train=train,
                eval=sorted(d["snapshot_id"] for d in view["datasets"] if d["purpose"] == "eval"),
                labels=labels,
                label_queue=label_queue,
                rows=rows,
            )
        )
    return loaded, skipped


def _point_of(scores: Sequence[float], point: float | None) -> float:
    if point is not None:
        if point <= 0:
            raise ValidationFailed(f"point must be positive, got {point}")
        return float(point)
    return 0.01 if all(0.0 <= s <= 1.0 for s in scores) else 1.0


def _entries(
    loaded: list[_Checkpoint], scores: Mapping[str, float] | None, point_arg: float | None
) -> tuple[list[dict[str, Any]], float]:
    """The per-checkpoint table: labels, labels added, score, change and gain per 1,000 labels."""
    scores = scores or {}
    unknown = sorted(set(scores) - {c.view["name"] for c in loaded})
    if unknown:
        raise ValidationFailed(
            f"scores name checkpoints that are not compared: {', '.join(map(repr, unknown))}",
            {"checkpoints": unknown},
        )
    found: list[dict[str, Any] | None] = []
    for checkpoint in loaded:
        name = checkpoint.view["name"]
        if name in scores:
            if not _is_number(scores[name]):
                raise ValidationFailed(
                    f"the score of checkpoint {name!r} is not a number", {name: scores[name]}
                )
            found.append({"score": float(scores[name]), "metric": None, "n": None, "source": "override"})
        else:
            found.append(checkpoint_eval_score(checkpoint.view["metadata"]))
    point = _point_of([s["score"] for s in found if s is not None], point_arg)
    entries: list[dict[str, Any]] = []
    previous: _Checkpoint | None = None
    previous_score: float | None = None
    for checkpoint, score in zip(loaded, found, strict=True):
        added = len(checkpoint.labels - previous.labels) if previous else len(checkpoint.labels)
        removed = len(previous.labels - checkpoint.labels) if previous else 0
        value = None if score is None else score["score"]
        change = (
            None if value is None or previous_score is None or previous is None else value - previous_score
        )
        entries.append(
            {
                "name": checkpoint.view["name"],
                "created_at": checkpoint.view["created_at"],
                "base_model": checkpoint.view["base_model"],
                "adapter": checkpoint.view["adapter"],
                "train_snapshots": checkpoint.train,
                "eval_snapshots": checkpoint.eval,
                "labels": len(checkpoint.labels),
                "rows": checkpoint.rows,
                "labels_added": added,
                "labels_removed": removed,
                "score": value,
                "metric": None if score is None else score["metric"],
                "eval_n": None if score is None else score["n"],
                "score_source": None if score is None else score["source"],
                "score_change": _num(change),
                "score_change_points": _num(None if change is None else change / point),
                "gain_per_1000": _num(
                    None if change is None or added == 0 else change / point / added * 1000, 4
                ),
                "eval_set_changed": previous is not None and checkpoint.eval != previous.eval,
            }
        )
        previous, previous_score = checkpoint, value
    return entries, point


# --------------------------------------------------------------------------------------------------
# The stall rule


def _stall(
    entries: list[dict[str, Any]], loaded: list[_Checkpoint], rule: StallRule, point: float
) -> dict[str, Any]:
    scored = [i for i, entry in enumerate(entries) if entry["score"] is not None]
    result: dict[str, Any] = {"rule": asdict(rule), "status": "not_enough_checkpoints", "window": None}
    if len(scored) < rule.window + 1:
        result["reason"] = (
            f"{len(scored)} checkpoint(s) with an eval score; the rule needs {rule.window + 1} "
            f"(window {rule.window})"
        )
        return result
    steps = scored[-rule.window - 1 :]
    base, last = steps[0], steps[-1]
    added = len(loaded[last].labels - loaded[base].labels)
    change = entries[last]["score"] - entries[base]["score"]
    change_points = change / point
    xs = np.array([entries[i]["labels"] for i in steps], dtype=np.float64)
    ys = np.array([entries[i]["score"] for i in steps], dtype=np.float64)
    slope = float(np.polyfit(xs, ys, 1)[0]) * 1000 / point if np.ptp(xs) > 0 else None
    if change_points >= rule.min_gain_points:
        status: Status = "healthy"
    elif added < rule.min_labels:
        status = "idle"
    else:
        status = "stalled"
    result.update(
        status=status,
        window={
            "from": entries[base]["name"],
            "to": entries[last]["name"],
            "checkpoints": [entries[i]["name"] for i in steps],
            "labels_added": added,
            "score_from": entries[base]["score"],
            "score_to": entries[last]["score"],
            "score_change": _num(change),
            "score_change_points": _num(change_points, 4),
            "gain_per_1000": _num(change_points / added * 1000, 4) if added else None,
            "slope_per_1000": _num(slope, 4),
            "eval_set_changed": any(entries[i]["eval_set_changed"] for i in steps[1:]),
        },
        steps=steps,
    )
    return result


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
# The whole report


def _ranked(causes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {"diminishing_returns": 0, "label_quality": 1, "distribution_shift": 2}
    return sorted(causes, key=lambda c: (not c["supported"], -(c["strength"] or 0.0), order[c["cause"]]))


def flywheel_health(
    engine: sa.Engine,
    project_id: int,
    *,
    checkpoints: list[str] | None = None,
    feature: str | None = None,
    scores: Mapping[str, float] | None = None,
    rule: StallRule | None = None,
    point: float | None = None,
    current: tuple[datetime, datetime] | None = None,
    as_of: datetime | None = None,
    attribute: bool | None = None,
) -> dict[str, Any]:
    """Flywheel health of the project's checkpoints (or of ``checkpoints``), JSON-ready.

    ``scores`` overrides the eval scores of the metadata ({checkpoint name: score}); ``rule`` sets the
    thresholds (:class:`StallRule`); ``current`` is the window of production traffic of ``feature``
    (the feature of the training traces when None) that the training inputs are compared with
    (default: the 7 days before ``as_of``, which defaults to now); ``attribute`` forces (True) or
    skips (False) the attribution, which by default runs only for a stalled flywheel.

    Returns ``{"feature", "as_of", "current", "point", "checkpoints", "skipped", "stall",
    "learning_curve", "causes", "finding"}`` (see the module docstring for each part).
    """
    rule = rule or StallRule()
    as_of = as_of or datetime.now(UTC)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    window = current or (as_of - DEFAULT_CURRENT, as_of)
    if to_ns(window[0]) >= to_ns(window[1]):
        raise ValidationFailed(
            "the current window is empty: its start must be before its end",
            {"since": window[0].isoformat(), "until": window[1].isoformat()},
        )
    loaded, skipped = _load_checkpoints(engine, project_id, checkpoints, as_of)
    entries, unit = _entries(loaded, scores, point)
    stall = _stall(entries, loaded, rule, unit)
    scored = [e for e in entries if e["score"] is not None]
    try:
        fitted = _curve_fit_of(scored, unit)
    except ValidationFailed:
        fitted = None
    causes: list[dict[str, Any]] = []
    ranked_traces: list[str] = []
    wanted = attribute if attribute is not None else stall["status"] == "stalled"
    if wanted and stall["window"] is not None:
        causes.append(_diminishing_returns(entries, stall, rule, unit))
        causes.append(_label_quality(engine, project_id, entries, loaded, stall, rule))
        shift, ranked_traces = _distribution_shift(
            engine, project_id, loaded[stall["steps"][-1]], feature, window
        )
        feature = feature or shift["evidence"].get("feature")
        causes.append(shift)
    health: dict[str, Any] = {
        "feature": feature,
        "as_of": as_of.isoformat(),
        "current": {"since": window[0].isoformat(), "until": window[1].isoformat()},
        "point": unit,
        "checkpoints": entries,
        "skipped": skipped,
        "stall": {key: value for key, value in stall.items() if key != "steps"},
        "learning_curve": None if fitted is None else fitted[0],
        "causes": _ranked(causes),
    }
    finding = stalled_flywheel_finding(health, trace_ids=ranked_traces)
    health["finding"] = None if finding is None else finding.to_dict()
    return health


def stalled_flywheel_finding(health: Mapping[str, Any], trace_ids: Sequence[str] = ()) -> Finding | None:
    """The ``flywheel:stalled`` finding of a :func:`flywheel_health` report, or None when the flywheel
    is not stalled. Critical when the score fell by at least the minimum gain, else a warning."""
    stall = health["stall"]
    if stall["status"] != "stalled":
        return None
    window = stall["window"]
    rule = stall["rule"]
    supported = [cause for cause in health["causes"] if cause["supported"]]
    names = {
        "diminishing_returns": "diminishing returns of more data",
        "label_quality": "falling label quality",
        "distribution_shift": "distribution shift",
    }
    because = (
        "likely cause: " + ", then ".join(names[c["cause"]] for c in supported)
        if supported
        else "cause unclear"
        if health["causes"]
        else "not attributed"
    )
    metric = next((e["metric"] for e in reversed(health["checkpoints"]) if e["metric"]), None) or "eval score"
    title = (
        f"flywheel stalled: {window['labels_added']:,} labels added over {window['from']} → {window['to']} "
        f"moved the {metric} {window['score_change_points']:+.2f} points "
        f"({window['score_from']:.4g} → {window['score_to']:.4g}); {because}"
    )
    severity = "critical" if -window["score_change_points"] >= rule["min_gain_points"] else "warning"
    detail = {
        **window,
        "metric": metric,
        "point": health["point"],
        "rule": rule,
        "causes": [
            {
                "cause": c["cause"],
                "supported": c["supported"],
                "strength": c["strength"],
                "summary": c["summary"],
            }
            for c in health["causes"]
        ],
        "learning_curve": health["learning_curve"],
    }
    slice_: dict[str, Any] = {
        "feature": health["feature"],
        "since": health["current"]["since"],
        "until": health["current"]["until"],
    }
    if trace_ids:
        slice_["trace_ids"] = list(trace_ids)
    return Finding(FINDING_KEY, title, severity, detail, slice_)


# --------------------------------------------------------------------------------------------------
# As a monitor check


class FlywheelArguments(BaseModel):
    """``type: flywheel`` in a monitor definition."""

    model_config = ConfigDict(extra="forbid")

    checkpoints: list[str] | None = Field(None, description="Checkpoints to follow (default: all).")
    window: int = Field(2, ge=1, description="Checkpoint steps the stall rule looks back over.")
    min_labels: int = Field(200, ge=0, description="Labels the window must add to judge a stall.")
    min_gain_points: float = Field(1.0, ge=0, description="Score gain (points) that is not a stall.")
    min_quality_drop: float = Field(0.1, ge=0, description="Fall in alpha or gold accuracy that counts.")
    point: float | None = Field(None, gt=0, description="One point of the score (default 0.01 or 1).")


class FlywheelCheck:
    """The flywheel as a monitor check: its report is the run's result, a stall its finding."""

    name = "flywheel"
    arguments = FlywheelArguments

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        health = flywheel_health(
            context.engine,
            context.project_id,
            checkpoints=arguments.checkpoints,
            feature=context.monitor.feature,
            rule=StallRule(
                arguments.window, arguments.min_labels, arguments.min_gain_points, arguments.min_quality_drop
            ),
            point=arguments.point,
            current=context.current,
            as_of=context.as_of,
        )
        finding = health.pop("finding")
        return CheckResult(health, [Finding(**finding)] if finding else [])
