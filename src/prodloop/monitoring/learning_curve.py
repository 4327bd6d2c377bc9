"""Learning curves: eval score against the number of training labels, for flywheel health
(:mod:`prodloop.monitoring.flywheel`).

``log``: score = a + b·ln(labels); ``power``: score = c - a·labels^(-alpha)
(alpha > 0; c is the score the curve levels off at). The power law is fitted with
``scipy.optimize.curve_fit`` from 3 points on and chosen when its residual sum of squares is at most
half the log curve's; otherwise the log curve is used. From the curve: its slope at the current size
(points per 1,000 labels) and the labels needed for one more point (None when the curve levels off
within a point of the current score).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from prodloop.errors import ValidationFailed

#: Fewest label counts a learning curve is fitted to.
MIN_CURVE_POINTS = 3

CurveModel = Literal["auto", "log", "power"]


def _num(value: float | None, digits: int = 6) -> float | None:
    """A JSON-safe float: None for missing, NaN or infinite values."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


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
