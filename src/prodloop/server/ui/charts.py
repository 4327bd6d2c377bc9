"""Vega-Lite specifications for the queue dashboard's charts, built from the numbers that
:mod:`prodloop.annotation.quality` returns. The page embeds each as JSON and ``charts.js`` draws it."""

from __future__ import annotations

from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"

#: Krippendorff's reading of alpha: reliable from 0.800, tentative conclusions from 0.667.
RELIABLE = 0.8
TENTATIVE = 0.667
VERDICT_COLOURS = {"reliable": "#1c7c45", "tentative": "#d48a00", "unreliable": "#b42318"}


def verdict(alpha: float) -> str:
    if alpha >= RELIABLE:
        return "reliable"
    return "tentative" if alpha >= TENTATIVE else "unreliable"


def base_spec(height: int) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "width": "container",
        "height": height,
        "background": None,
        "config": {
            "view": {"stroke": None},
            "axis": {
                "labelFontSize": 11,
                "titleFontSize": 11,
                "titleColor": "#667085",
                "gridColor": "#eef0f3",
            },
            "legend": {"labelFontSize": 11, "titleFontSize": 11},
        },
    }


def throughput_spec(buckets: list[dict[str, Any]], bucket_seconds: int) -> dict[str, Any]:
    """Labels given per hour (or day) as bars over time."""
    unit = "utcyearmonthdate" if bucket_seconds >= 86400 else "utcyearmonthdatehours"
    per = "day" if bucket_seconds >= 86400 else "hour"
    return {
        **base_spec(160),
        "description": f"labels per {per}",
        "data": {"values": [{"start": b["start"], "labels": b["labels"]} for b in buckets]},
        "mark": {"type": "bar", "color": "#2f6fdf", "tooltip": True},
        "encoding": {
            "x": {"field": "start", "type": "ordinal", "timeUnit": unit, "title": f"{per} (UTC)"},
            "y": {"field": "labels", "type": "quantitative", "title": f"labels per {per}"},
        },
    }


def _alpha_domain(low: float) -> list[float]:
    return [min(0.0, round(low - 0.05, 1)), 1.0]


def agreement_spec(fields: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Krippendorff's alpha per field with its confidence interval; None when no field has one."""
    rows = []
    for entry in fields:
        alpha = entry.get("krippendorff_alpha")
        if alpha is None:
            continue
        ci = entry.get("alpha_ci") or [alpha, alpha]
        rows.append(
            {
                "field": entry["field"],
                "alpha": round(alpha, 3),
                "low": round(ci[0], 3),
                "high": round(ci[1], 3),
                "verdict": verdict(alpha),
                "items": entry.get("n_items"),
            }
        )
    if not rows:
        return None
    low = min(min(r["low"] for r in rows), min(r["alpha"] for r in rows))
    x = {"type": "quantitative", "scale": {"domain": _alpha_domain(low)}}
    return {
        **base_spec(max(28 * len(rows), 60)),
        "description": "Krippendorff's alpha per field, with 95% confidence intervals",
        "data": {"values": rows},
        "encoding": {"y": {"field": "field", "type": "nominal", "title": None, "sort": None}},
        "layer": [
            {
                "mark": {"type": "bar", "height": {"band": 0.6}, "tooltip": True},
                "encoding": {
                    "x": {**x, "field": "alpha", "title": "Krippendorff's alpha"},
                    "color": _verdict_colour(),
                },
            },
            {
                "mark": {"type": "rule", "color": "#1d2330"},
                "encoding": {"x": {**x, "field": "low"}, "x2": {"field": "high"}},
            },
            {
                "mark": {"type": "rule", "strokeDash": [4, 3], "color": "#667085"},
                "data": {"values": [{"at": RELIABLE}]},
                "encoding": {"x": {"field": "at", "type": "quantitative"}, "y": None},
            },
        ],
    }


def per_class_spec(fields: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Alpha per class (one class against the rest) for each field: where the spec is ambiguous."""
    rows = [
        {"field": entry["field"], "class": f"{entry['field']}: {name}", "alpha": round(alpha, 3)}
        for entry in fields
        for name, alpha in (entry.get("per_class") or {}).items()
        if alpha is not None
    ]
    if not rows:
        return None
    for row in rows:
        row["verdict"] = verdict(row["alpha"])
    return {
        **base_spec(max(22 * len(rows), 60)),
        "description": "Krippendorff's alpha per class",
        "data": {"values": rows},
        "mark": {"type": "bar", "height": {"band": 0.7}, "tooltip": True},
        "encoding": {
            "y": {"field": "class", "type": "nominal", "title": None, "sort": None},
            "x": {
                "field": "alpha",
                "type": "quantitative",
                "title": "alpha of the class against the rest",
                "scale": {"domain": _alpha_domain(min(r["alpha"] for r in rows))},
            },
            "color": _verdict_colour(),
        },
    }


def _verdict_colour() -> dict[str, Any]:
    return {
        "field": "verdict",
        "type": "nominal",
        "title": None,
        "scale": {"domain": list(VERDICT_COLOURS), "range": list(VERDICT_COLOURS.values())},
    }
