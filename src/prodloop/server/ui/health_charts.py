"""Vega-Lite specifications for the feature health page, built from what
:func:`prodloop.monitoring.health.feature_health` returns. The page embeds each as JSON and
``charts.js`` draws it (with the expression interpreter: the UI's Content-Security-Policy forbids eval).

Times go into the specifications as milliseconds since the epoch, on UTC scales, so that every chart
of the page shares one time axis whatever the browser's time zone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from prodloop.server.ui.charts import base_spec

ACCENT = "#2f6fdf"
BAD = "#b42318"
MUTED = "#667085"
QUIET = "#98a2b3"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def epoch_ms(value: str | datetime) -> int:
    """An ISO 8601 time (or a datetime) as milliseconds since the epoch."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return round(moment.timestamp() * 1000)


def _base(height: int, description: str) -> dict[str, Any]:
    """The queue dashboard's chart settings (:func:`prodloop.server.ui.charts.base_spec`), with the legend
    below the chart."""
    spec = base_spec(height)
    spec["description"] = description
    spec["config"]["legend"]["orient"] = "bottom"
    return spec


def day_ticks(span_ms: float, most: int = 8) -> dict[str, Any]:
    """Axis settings for a span of time: one labelled tick every whole number of days, at most about
    ``most`` of them (finer ticks would repeat a day's label)."""
    step = max(1, math.ceil(span_ms / DAY_MS / most))
    return {"format": "%b %d", "labelOverlap": True, "tickCount": {"interval": "day", "step": step}}


def _time_axis(span_ms: float, title: str | None = None, compact: bool = False) -> dict[str, Any]:
    """A UTC time axis (its labels are UTC dates on a ``utc`` scale, whatever the browser's zone)."""
    return {
        "type": "temporal",
        "title": title,
        "scale": {"type": "utc"},
        "axis": day_ticks(span_ms, 4 if compact else 8),
    }


def _span(values: Iterable[float]) -> float:
    known = list(values)
    return max(known) - min(known) if known else 0.0


def _value_format(kind: str) -> tuple[str, str]:
    """(axis format, tooltip format) for a metric of this kind."""
    if kind == "proportion":
        return ".1~%", ".1%"
    if kind == "quantile":
        return ",.0f", ",.0f"
    return ",.2~f", ",.3~f"


# --------------------------------------------------------------------------------------------------
# outcomes


def outcome_spec(
    series: dict[str, Any],
    domain: tuple[int, int],
    *,
    releases: Sequence[dict[str, Any]] = (),
    shaded: Sequence[dict[str, Any]] = (),
    height: int = 200,
    compact: bool = False,
) -> dict[str, Any] | None:
    """One outcome metric per bucket as a line, with a dashed rule where each release first served a
    trace and the windows of open alerts (``{"since", "until", "title"}``) shaded; None without values."""
    metric = series.get("metric") or {}
    kind = str(metric.get("kind") or "mean")
    label = str(metric.get("label") or metric.get("name") or "value")
    step = HOUR_MS if series.get("bucket") == "hour" else DAY_MS
    values = [
        {
            "at": epoch_ms(point["start"]) + step // 2,
            "when": point["start"][:10] if step == DAY_MS else point["start"][:16].replace("T", " "),
            "value": point["value"],
            "n": point.get("n"),
        }
        for point in series.get("points", [])
        if point.get("value") is not None
    ]
    if not values:
        return None
    axis_format, tip_format = _value_format(kind)
    x = _time_axis(domain[1] - domain[0], compact=compact)
    y_title = f"{label} (ms)" if kind == "quantile" else label
    # The page's window spans the time axis through an invisible layer at its two ends, so that every
    # chart of the page shares it. (An explicit temporal scale domain does not work here: vega-lite
    # turns it into ``datetime(ms)`` expressions, which the CSP-safe expression interpreter reads as
    # years.)
    layers: list[dict[str, Any]] = [
        {
            "data": {"values": [{"at": domain[0]}, {"at": domain[1]}]},
            "mark": {"type": "rule", "opacity": 0},
            "encoding": {"x": {**x, "field": "at"}},
        }
    ]
    windows = [  # the part of each alert's window that the chart shows
        {
            "from": max(epoch_ms(w["since"]), domain[0]),
            "to": min(epoch_ms(w["until"]), domain[1]),
            "alert": w.get("title", "open alert"),
        }
        for w in shaded
        if w.get("since")
        and w.get("until")
        and epoch_ms(w["since"]) < domain[1]
        and epoch_ms(w["until"]) > domain[0]
    ]
    if windows:
        layers.append(
            {
                "data": {"values": windows},
                "mark": {"type": "rect", "color": BAD, "opacity": 0.1, "clip": True},
                "encoding": {
                    "x": {**x, "field": "from"},
                    "x2": {"field": "to"},
                    "tooltip": [{"field": "alert", "title": "open alert"}],
                },
            }
        )
    layers.append(
        {
            "data": {"values": values},
            "mark": {
                "type": "line",
                "color": ACCENT,
                "strokeWidth": 1.5 if compact else 2,
                "point": {"filled": True, "size": 14 if compact else 26, "color": ACCENT},
                "tooltip": True,
            },
            "encoding": {
                "x": {**x, "field": "at"},
                "y": {
                    "field": "value",
                    "type": "quantitative",
                    "title": None if compact else y_title,
                    "scale": {"zero": True, "nice": True},
                    "axis": {"format": axis_format, "tickCount": 3 if compact else 5},
                },
                "tooltip": [
                    {"field": "when", "title": "day" if step == DAY_MS else "hour (UTC)"},
                    {"field": "value", "title": label, "format": tip_format},
                    {"field": "n", "title": "traces", "format": ","},
                ],
            },
        }
    )
    marks = [
        {"at": epoch_ms(r["first_seen"]), "release": str(r["release"])}
        for r in releases
        if r.get("in_range") and r.get("first_seen") and domain[0] <= epoch_ms(r["first_seen"]) <= domain[1]
    ]
    if marks:
        layers.append(
            {
                "data": {"values": marks},
                "mark": {"type": "rule", "color": MUTED, "strokeDash": [4, 3]},
                "encoding": {
                    "x": {**x, "field": "at"},
                    "tooltip": [{"field": "release", "title": "release first seen"}],
                },
            }
        )
        if not compact:
            layers.append(
                {
                    "data": {"values": marks},
                    "mark": {
                        "type": "text",
                        "align": "left",
                        "baseline": "top",
                        "dx": 4,
                        "y": 2,
                        "fontSize": 10,
                        "color": MUTED,
                    },
                    "encoding": {"x": {**x, "field": "at"}, "text": {"field": "release"}},
                }
            )
    return {**_base(height, f"{label} per {'day' if step == DAY_MS else 'hour'}"), "layer": layers}


# --------------------------------------------------------------------------------------------------
# drift per column


def drift_bars_spec(columns: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Each column's drift statistic as a bar and its threshold as a tick, for tests that decide by
    distance (drift at the threshold or beyond); the most drifted column first."""
    rows = [
        {
            "column": str(c["column"]),
            "statistic": c["statistic"],
            "threshold": c.get("threshold"),
            "verdict": "drifted" if c.get("drift") else "no drift",
            "test": c.get("test"),
        }
        for c in columns
        if c.get("statistic") is not None
    ]
    if not rows:
        return None
    return {
        **_base(max(22 * len(rows), 44), "drift statistic per column against its threshold"),
        "data": {"values": rows},
        "encoding": {
            "y": {
                "field": "column",
                "type": "nominal",
                "title": None,
                # an explicit order: a sort by field conflicts across the layers
                "sort": [r["column"] for r in sorted(rows, key=lambda r: -r["statistic"])],
            }
        },
        "layer": [
            {
                "mark": {"type": "bar", "height": {"band": 0.65}, "tooltip": True},
                "encoding": {
                    "x": {
                        "field": "statistic",
                        "type": "quantitative",
                        "title": "statistic (drift at the tick or beyond)",
                        "axis": {"tickCount": 6},
                    },
                    "color": {
                        "field": "verdict",
                        "type": "nominal",
                        "title": None,
                        "scale": {"domain": ["drifted", "no drift"], "range": [BAD, QUIET]},
                    },
                    "tooltip": [
                        {"field": "column"},
                        {"field": "test"},
                        {"field": "statistic", "format": ".3~g"},
                        {"field": "threshold", "format": ".3~g"},
                        {"field": "verdict"},
                    ],
                },
            },
            {
                "mark": {"type": "tick", "color": "#1d2330", "thickness": 2},
                "encoding": {"x": {"field": "threshold", "type": "quantitative"}},
            },
        ],
    }


def category_shift_spec(
    column: str, shifts: Sequence[dict[str, Any]], limit: int = 12
) -> dict[str, Any] | None:
    """A categorical column's values in the reference and the current window, side by side, the values
    that grew most first."""
    top = sorted(shifts, key=lambda s: abs(s.get("change") or 0.0), reverse=True)[:limit]
    top.sort(key=lambda s: s.get("change") or 0.0, reverse=True)
    if not top:
        return None
    rows = []
    for shift in top:
        value = str(shift["value"])
        change = f"{(shift.get('change') or 0.0) * 100:+.1f} points"
        rows.append(
            {"value": value, "window": "reference", "share": shift["reference_share"], "change": change}
        )
        rows.append({"value": value, "window": "current", "share": shift["current_share"], "change": change})
    return {
        **_base(max(30 * len(top), 60), f"share of each {column} value, reference against current"),
        "data": {"values": rows},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "value", "type": "nominal", "title": None, "sort": [str(s["value"]) for s in top]},
            "yOffset": {"field": "window", "sort": ["reference", "current"]},
            "x": {
                "field": "share",
                "type": "quantitative",
                "title": "share of traces",
                "axis": {"format": ".1~%", "tickCount": 8},
            },
            "color": {
                "field": "window",
                "type": "nominal",
                "title": None,
                "scale": {"domain": ["reference", "current"], "range": [QUIET, ACCENT]},
            },
            "tooltip": [
                {"field": "value", "title": column},
                {"field": "window"},
                {"field": "share", "format": ".1%"},
                {"field": "change"},
            ],
        },
    }


def _latest_per_time(points: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per ``as_of`` (the last stored): a monitor run again as of the same time replaces it."""
    by_time: dict[str, dict[str, Any]] = {}
    for point in points:
        if point.get("as_of") and point.get("statistic") is not None:
            by_time[point["as_of"]] = point
    return [by_time[key] for key in sorted(by_time, key=epoch_ms)]


def drift_history_spec(
    history: dict[str, Sequence[dict[str, Any]]], height: int = 150
) -> dict[str, Any] | None:
    """Each named column's drift statistic at each monitor run, with its threshold dashed."""
    rows = []
    for name, points in history.items():
        for point in _latest_per_time(points):
            rows.append(
                {
                    "at": epoch_ms(point["as_of"]),
                    "when": point["as_of"][:16].replace("T", " "),
                    "column": name,
                    "statistic": point["statistic"],
                    "threshold": point.get("threshold"),
                    "verdict": "drifted" if point.get("drift") else "no drift",
                    "test": point.get("test"),
                }
            )
    if not rows:
        return None
    x = {
        "field": "at",
        "type": "temporal",
        "title": "monitor run (as of)",
        "scale": {"type": "utc"},
        "axis": day_ticks(_span(row["at"] for row in rows)),
    }
    colour = {"field": "column", "type": "nominal", "title": None, "legend": {"columns": 4}}
    return {
        **_base(height, "drift statistic at each monitor run, threshold dashed"),
        "data": {"values": rows},
        "encoding": {"x": x},
        "layer": [
            {
                "mark": {"type": "line", "strokeDash": [5, 4], "strokeWidth": 1, "opacity": 0.7},
                "encoding": {
                    "y": {"field": "threshold", "type": "quantitative"},
                    "color": colour,
                },
            },
            {
                "mark": {"type": "line", "point": {"filled": True, "size": 28}, "tooltip": True},
                "encoding": {
                    "y": {"field": "statistic", "type": "quantitative", "title": "drift statistic"},
                    "color": colour,
                    "tooltip": [
                        {"field": "column"},
                        {"field": "when", "title": "as of (UTC)"},
                        {"field": "test"},
                        {"field": "statistic", "format": ".3~g"},
                        {"field": "threshold", "format": ".3~g"},
                        {"field": "verdict"},
                    ],
                },
            },
        ],
    }


# --------------------------------------------------------------------------------------------------
# coverage


def _cluster_name(cluster: dict[str, Any]) -> str:
    label = str(cluster.get("label") or "")
    name = f"#{cluster.get('id')} {label}".strip()
    return name if len(name) <= 48 else name[:47] + "…"


def cluster_size_spec(clusters: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Each uncovered cluster's share of the traffic (its size in the tooltip)."""
    rows = [
        {
            "cluster": _cluster_name(c),
            "share": c.get("share"),
            "size": c.get("size"),
            "growth": c.get("growth"),
        }
        for c in clusters
        if c.get("share") is not None
    ]
    if not rows:
        return None
    return {
        **_base(max(24 * len(rows), 48), "share of traffic in each uncovered cluster"),
        "data": {"values": rows},
        "mark": {"type": "bar", "color": "#d48a00", "height": {"band": 0.65}, "tooltip": True},
        "encoding": {
            "y": {"field": "cluster", "type": "nominal", "title": None, "sort": "-x"},
            "x": {
                "field": "share",
                "type": "quantitative",
                "title": "share of traffic",
                "axis": {"format": ".1~%", "tickCount": 6},
            },
            "tooltip": [
                {"field": "cluster"},
                {"field": "size", "title": "traces", "format": ","},
                {"field": "share", "format": ".1%"},
                {"field": "growth", "title": "daily share slope", "format": "+.2%"},
            ],
        },
    }


def cluster_trend_spec(clusters: Sequence[dict[str, Any]], height: int = 150) -> dict[str, Any] | None:
    """Each uncovered cluster's traces per day: a growing cluster is where traffic went."""
    rows = [
        {
            "at": epoch_ms(f"{day['date'][:10]}T00:00:00+00:00"),
            "day": day["date"][:10],
            "cluster": _cluster_name(c),
            "count": day.get("count", day.get("n")),
        }
        for c in clusters
        for day in c.get("daily") or []
        if day.get("date") and day.get("count", day.get("n")) is not None
    ]
    if not rows:
        return None
    return {
        **_base(height, "traces per day in each uncovered cluster"),
        "data": {"values": rows},
        "mark": {"type": "line", "point": {"filled": True, "size": 24}, "tooltip": True},
        "encoding": {
            "x": {
                "field": "at",
                "type": "temporal",
                "title": None,
                "scale": {"type": "utc"},
                "axis": day_ticks(_span(row["at"] for row in rows)),
            },
            "y": {"field": "count", "type": "quantitative", "title": "traces per day"},
            "color": {"field": "cluster", "type": "nominal", "title": None, "legend": {"columns": 2}},
            "tooltip": [{"field": "cluster"}, {"field": "day"}, {"field": "count", "title": "traces"}],
        },
    }


# --------------------------------------------------------------------------------------------------
# the feature list


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 28) -> str | None:
    """An SVG path through ``values`` (gaps where a value is None), scaled to the box; None when fewer
    than two values are known."""
    known = [v for v in values if v is not None]
    if len(known) < 2 or len(values) < 2:
        return None
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    parts: list[str] = []
    pen_up = True
    for i, value in enumerate(values):
        if value is None:
            pen_up = True
            continue
        x = i * step
        y = height - 2 - (value - low) / span * (height - 4)
        parts.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
        pen_up = False
    return " ".join(parts)
