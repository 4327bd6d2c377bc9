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

The learning curve is fitted by :mod:`prodloop.monitoring.learning_curve`; the causes of a stall are
attributed, with their thresholds, by :mod:`prodloop.monitoring.flywheel_causes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodloop.capture.queries import to_ns
from prodloop.errors import NotFound, ValidationFailed
from prodloop.monitoring.checks import CheckContext, CheckResult
from prodloop.monitoring.findings import Finding
from prodloop.monitoring.flywheel_causes import (
    _diminishing_returns,
    _distribution_shift,
    _label_quality,
    _ranked,
)
from prodloop.monitoring.learning_curve import _curve_fit_of, _num
from prodloop.monitoring.learning_curve import fit_learning_curve as fit_learning_curve

FINDING_KEY = "flywheel:stalled"
#: The current window when none is given: this long before ``as_of``.
DEFAULT_CURRENT = timedelta(days=7)

Status = Literal["stalled", "healthy", "idle", "not_enough_checkpoints"]


@dataclass(frozen=True)
class StallRule:
    """The thresholds of the stall rule (see the module docstring) and of the attribution (see
    :mod:`prodloop.monitoring.flywheel_causes`)."""

    window: int = 2
    min_labels: int = 200
    min_gain_points: float = 1.0
    min_quality_drop: float = 0.1

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValidationFailed(f"window must be at least 1 checkpoint step, got {self.window}")
        if self.min_labels < 0 or self.min_gain_points < 0 or self.min_quality_drop < 0:
            raise ValidationFailed("min_labels, min_gain_points and min_quality_drop must not be negative")


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
# The whole report


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
