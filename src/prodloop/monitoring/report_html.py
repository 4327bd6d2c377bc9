"""The standalone HTML drift report: one file that opens offline, with a plot per column.

The page carries the vendored Vega, Vega-Lite and Vega-Embed scripts inline (the files under
``prodloop/server/ui/static``, see ``VENDORED.txt`` there) and each chart's Vega-Lite specification as JSON;
it loads nothing from the network, and its Content-Security-Policy forbids it to. What it shows:

- the dataset verdict and the share of drifted columns;
- a table of the columns (type, test, statistic, p-value, threshold, verdict), drifted first, sortable by a
  click on a header;
- per column, the two distributions side by side with the test's statistic and threshold: a histogram on
  shared bins for a numeric column (the share of rows per bin, so files of different sizes compare), the
  share per category for a categorical one (the 20 most frequent, the rest together), and for a text column
  the words that most surely tell current from reference texts (:func:`prodloop.monitoring.terms.
  distinguishing_terms`: ids and numbers left out) and the current texts the domain classifier is most
  sure are new.

Every string from the data (column names, categories, texts, file names) is escaped: the template
autoescapes HTML, and the JSON specifications escape ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
from markupsafe import Markup

from prodloop.errors import ProdloopError

if TYPE_CHECKING:
    from prodloop.monitoring.drift import ColumnDrift, DriftReport

#: Vendored scripts the page inlines, in load order.
SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
REFERENCE_COLOUR = "#5b7db1"
CURRENT_COLOUR = "#e07b39"
MAX_BINS = 40
MAX_CATEGORIES = 20
TOP_TERMS = 15
EXAMPLES = 5
EXAMPLE_CHARS = 240


def _script(name: str) -> Markup:
    text = (resources.files("prodloop") / "server" / "ui" / "static" / name).read_text(encoding="utf-8")
    # The source maps are not vendored; and nothing in a script may close the <script> element early.
    text = "\n".join(line for line in text.splitlines() if not line.startswith("//# sourceMappingURL="))
    return Markup(text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT"))


def _json(value: Any) -> Markup:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{round(value, digits):g}"


def _p_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "≈ 0"  # below the smallest float
    return f"{value:.2e}" if value < 1e-4 else f"{value:.4f}"


def _test_kind(name: str, p_value: float | None) -> str:
    try:
        from prodloop.monitoring.stattests import get_stattest

        return str(get_stattest(name).kind)
    except ProdloopError:
        return "p_value" if p_value is not None else "distance"


def verdict_sentence(column: ColumnDrift) -> str:
    """The test's reading in words: "p-value 0.0012 < 0.05: drift"."""
    r = column.result
    word = "drift" if r.drift else "no drift"
    if r.test == "perc_text_content_drift":
        where = "above" if r.drift else "not above"
        return (
            f"domain classifier ROC AUC {_number(r.statistic, 3)}, {where} the "
            f"{_number(100 * r.threshold, 3)}th percentile of random classifiers "
            f"(p = {_p_value(r.p_value)}): {word}"
        )
    if r.test == "abs_text_content_drift":
        rel = ">" if r.drift else "≤"
        return f"domain classifier ROC AUC {_number(r.statistic, 3)} {rel} {_number(r.threshold)}: {word}"
    if _test_kind(r.test, r.p_value) == "p_value":
        rel = "<" if r.drift else "≥"
        return f"p-value {_p_value(r.p_value)} {rel} {_number(r.threshold)}: {word}"
    rel = "≥" if r.drift else "<"
    return f"{r.test} {_number(r.statistic)} {rel} {_number(r.threshold)}: {word}"


def _base(description: str, height: int) -> dict[str, Any]:
    return {
        "description": description,
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
            "legend": {"labelFontSize": 11, "titleFontSize": 11, "orient": "top"},
        },
    }


def _side_colour(reference_name: str, current_name: str) -> dict[str, Any]:
    return {
        "field": "side",
        "type": "nominal",
        "title": None,
        "scale": {"domain": [reference_name, current_name], "range": [REFERENCE_COLOUR, CURRENT_COLOUR]},
    }


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _missing_share(values: np.ndarray) -> float:
    if len(values) == 0:
        return 0.0
    if values.dtype.kind == "f":
        return float(np.count_nonzero(np.isnan(values)) / len(values))
    if values.dtype.kind in "biu":
        return 0.0
    return sum(v is None or (isinstance(v, float) and v != v) for v in values) / len(values)


def _bin_edges(values: np.ndarray) -> np.ndarray:
    """Shared bins: numpy's "auto" rule, at most MAX_BINS; whole numbers get bins of whole numbers."""
    low, high = float(values.min()), float(values.max())
    if np.all(values == np.round(values)) and high - low < 1e9:
        width = max(1, math.ceil((high - low + 1) / MAX_BINS))
        return low - 0.5 + width * np.arange(math.ceil((high - low + 1) / width) + 1)
    edges = np.histogram_bin_edges(values, bins="auto")
    if len(edges) - 1 > MAX_BINS:
        edges = np.linspace(low, high, MAX_BINS + 1)
    return edges


def numeric_spec(
    reference: np.ndarray, current: np.ndarray, reference_name: str, current_name: str
) -> dict[str, Any] | None:
    """Histograms of both sides on shared bins, as shares of each side's non-missing rows."""
    ref, cur = _finite(reference), _finite(current)
    both = np.concatenate([ref, cur])
    if len(both) == 0:
        return None
    edges = _bin_edges(both)
    rows = []
    for side, values in ((reference_name, ref), (current_name, cur)):
        counts, _ = np.histogram(values, bins=edges)
        total = max(len(values), 1)
        for start, end, count in zip(edges[:-1], edges[1:], counts, strict=True):
            rows.append(
                {"side": side, "start": float(start), "end": float(end), "share": float(count / total)}
            )
    return {
        **_base("distribution of the values, reference and current", 200),
        "data": {"values": rows},
        "mark": {"type": "bar", "opacity": 0.55, "binSpacing": 0, "tooltip": True},
        "encoding": {
            "x": {"field": "start", "type": "quantitative", "bin": {"binned": True}, "title": "value"},
            "x2": {"field": "end"},
            "y": {
                "field": "share",
                "type": "quantitative",
                "stack": None,
                "axis": {"format": "%"},
                "title": "share of rows",
            },
            "color": _side_colour(reference_name, current_name),
        },
    }


def _category(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def categorical_spec(
    reference: np.ndarray, current: np.ndarray, reference_name: str, current_name: str
) -> dict[str, Any] | None:
    """The share of each category in both sides; the most frequent first, the rest as one bar."""
    counts = [Counter(map(_category, reference)), Counter(map(_category, current))]
    for count in counts:
        count.pop(None, None)
    totals = [max(sum(c.values()), 1) for c in counts]
    combined = Counter(
        {k: counts[0][k] / totals[0] + counts[1][k] / totals[1] for k in counts[0] | counts[1]}
    )
    if not combined:
        return None
    top = [k for k, _ in sorted(combined.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]]
    rest = len(combined) - len(top)
    other = f"({rest} other categories)" if rest > 0 else None
    rows = []
    for side, count, total in zip((reference_name, current_name), counts, totals, strict=True):
        for k in top:
            rows.append({"side": side, "category": k, "share": count[k] / total})
        if other:
            rows.append(
                {
                    "side": side,
                    "category": other,
                    "share": sum(v for c, v in count.items() if c not in top) / total,
                }
            )
    order = [*top, *([other] if other else [])]
    return {
        **_base("share of each category, reference and current", max(22 * len(order) * 2, 80)),
        "data": {"values": rows},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "category", "type": "nominal", "title": None, "sort": order},
            "yOffset": {"field": "side", "sort": [reference_name, current_name]},
            "x": {
                "field": "share",
                "type": "quantitative",
                "axis": {"format": "%"},
                "title": "share of rows",
            },
            "color": _side_colour(reference_name, current_name),
        },
    }


def terms_spec(
    explanation: Mapping[str, Any], reference_name: str, current_name: str
) -> dict[str, Any] | None:
    """The terms that most mark a text as current (positive weight) or as reference (negative)."""
    rows = [
        {"term": t["term"], "weight": t["weight"], "side": current_name}
        for t in explanation.get("terms", [])[:TOP_TERMS]
    ] + [
        {"term": t["term"], "weight": t["weight"], "side": reference_name}
        for t in explanation.get("reference_terms", [])[:TOP_TERMS]
    ]
    if not rows:
        return None
    return {
        **_base("terms that tell current texts from reference texts", max(16 * len(rows), 80)),
        "data": {"values": rows},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {
                "field": "term",
                "type": "nominal",
                "title": None,
                "sort": {"field": "weight", "order": "descending"},
            },
            "x": {
                "field": "weight",
                "type": "quantitative",
                "title": "how surely the word marks a side: z of its log-odds (reference ←→ current)",
            },
            "color": _side_colour(reference_name, current_name),
        },
    }


def _text_view(
    reference: np.ndarray, current: np.ndarray, reference_name: str, current_name: str
) -> tuple[dict[str, Any] | None, list[str], str | None]:
    from prodloop.monitoring.terms import distinguishing_terms
    from prodloop.monitoring.text import text_drift_explanation

    try:
        explanation = text_drift_explanation(reference, current, top_rows=EXAMPLES, top_terms=TOP_TERMS)
    except ProdloopError as exc:
        return None, [], exc.message
    words = distinguishing_terms(
        [str(t) for t in reference if t is not None],
        [str(t) for t in current if t is not None],
        top=TOP_TERMS,
    )
    explanation = {
        **explanation,
        "terms": [{"term": w["term"], "weight": w["z"]} for w in words["current"]],
        "reference_terms": [{"term": w["term"], "weight": w["z"]} for w in words["reference"]],
    }
    examples = []
    for index, _score in explanation["rows"]:
        text = str(current[index])
        examples.append(text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…")
    return terms_spec(explanation, reference_name, current_name), examples, None


def _column_view(
    index: int,
    column: ColumnDrift,
    reference: np.ndarray,
    current: np.ndarray,
    reference_name: str,
    current_name: str,
) -> dict[str, Any]:
    examples: list[str] = []
    note = None
    if column.type == "numeric":
        spec = numeric_spec(reference, current, reference_name, current_name)
    elif column.type == "text":
        spec, examples, note = _text_view(reference, current, reference_name, current_name)
    else:
        spec = categorical_spec(reference, current, reference_name, current_name)
    if spec is None and note is None:
        note = "no values to plot"
    missing = (_missing_share(reference), _missing_share(current))
    return {
        "anchor": f"column-{index}",
        "column": column,
        "sentence": verdict_sentence(column),
        "spec": _json(spec) if spec is not None else None,
        "examples": examples,
        "note": note,
        "missing": missing if any(missing) else None,
    }


def drift_report_html(
    report: DriftReport,
    reference: Mapping[str, np.ndarray],
    current: Mapping[str, np.ndarray],
    *,
    title: str = "Drift report",
    reference_name: str = "reference",
    current_name: str = "current",
    skipped: Mapping[str, str] | None = None,
    generated: datetime | None = None,
) -> str:
    """The report as one standalone HTML page (see the module docstring).

    ``reference`` and ``current`` are the columns the report was computed from; ``reference_name`` and
    ``current_name`` label the two sides (file names, say); ``skipped`` lists columns left out, with why.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    if reference_name == current_name:
        reference_name, current_name = f"{reference_name} (reference)", f"{current_name} (current)"
    env = Environment(
        loader=PackageLoader("prodloop", "monitoring/templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    order = sorted(range(len(report.columns)), key=lambda i: (not report.columns[i].result.drift, i))
    views = [
        _column_view(
            i,
            report.columns[i],
            reference[report.columns[i].column],
            current[report.columns[i].column],
            reference_name,
            current_name,
        )
        for i in order
    ]
    drifted = sum(c.result.drift for c in report.columns)
    return env.get_template("drift_report.html").render(
        title=title,
        report=report,
        views=views,
        drifted=drifted,
        reference_name=reference_name,
        current_name=current_name,
        skipped=dict(skipped or {}),
        generated=(generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        scripts=[_script(name) for name in SCRIPTS],
        number=_number,
        p_value=_p_value,
        percent=lambda x: f"{100 * x:.1f}%",
        reference_colour=REFERENCE_COLOUR,
        current_colour=CURRENT_COLOUR,
    )
