"""What the feature health page shows, shaped from :func:`prodloop.monitoring.health.feature_health`:
the headline (what went wrong, since when, how many alerts), the outcome charts, what each monitor's
latest run found (drifted columns and intents, text drift, coverage gaps) and the open alerts.

Check results are rendered by their shape, not by the check's name, and what is missing is skipped:
a column report (``report.columns``, with ``shifts`` for categories), a single-field test (``result``,
with an ``explanation`` when text drifted), a coverage report (``clusters``), an outcome evaluation
(``window_test`` / ``series``), a skipped or failed check.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from prodloop.errors import ProdloopError
from prodloop.server.ui import health_charts as hc
from prodloop.server.ui.views import BLANK, percent, pretty

#: How alerts are ordered within a severity: what users feel first, then what they send.
KIND_ORDER = {"outcome": 0, "column": 1, "text": 2, "embedding": 3, "coverage": 4, "descriptor": 5}
#: Outcome metrics shown as the page's main chart when no outcome alert names one.
MAIN_METRIC = "handled_rate"
#: Single-field tests whose statistic is a domain classifier's ROC AUC.
AUC_TESTS = ("abs_text_content_drift", "perc_text_content_drift", "embedding_domain_classifier")


def day(value: str | None) -> str:
    return (value or "")[:10]


def metric_value(kind: str, value: float | None) -> str:
    """A metric's value as people read it: 65.4%, 2,675 ms, 3.21."""
    if value is None:
        return BLANK
    if kind == "proportion":
        return f"{value * 100:.1f}%"
    if kind == "quantile":
        return f"{value:,.0f} ms"
    return f"{value:.3g}"


def test_kind(name: str | None) -> str:
    """``p_value`` when the named drift test decides by its p-value, else ``distance``."""
    if not name:
        return "distance"
    try:
        from prodloop.monitoring.stattests import get_stattest

        return str(get_stattest(name).kind)
    except ProdloopError:
        return "distance"


def _embedding_facts(details: dict[str, Any]) -> list[str]:
    """The numbers behind an embedding drift verdict, as people read them."""
    facts = []
    if details.get("mmd2") is not None:
        p_value = details.get("p_value")
        facts.append(
            f"MMD² {details['mmd2']:.3g}"
            + (f" (permutation p = {p_value:.2g})" if p_value is not None else "")
        )
    if details.get("mean_cosine_distance") is not None:
        facts.append(f"cosine distance between the mean vectors {details['mean_cosine_distance']:.3g}")
    return facts


class Charts:
    """The page's Vega-Lite specifications, each under an id the template refers to."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {}

    def add(self, name: str, spec: dict[str, Any] | None) -> dict[str, str] | None:
        if spec is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "chart"
        ident, n = slug, 2
        while ident in self.specs:
            ident, n = f"{slug}-{n}", n + 1
        self.specs[ident] = spec
        return {"id": ident, "description": str(spec.get("description", ""))}


# --- the feature list --------------------------------------------------------------------------------


def feature_rows(
    features: list[dict[str, Any]],
    monitors: list[dict[str, Any]],
    handled: dict[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """One row per feature (with traces, or monitored): its monitors, their open alerts and latest run,
    and from ``handled`` (its handled rate per day) a sparkline and the rate over the last 7 days."""
    by_feature: dict[str, dict[str, Any]] = {}
    for monitor in monitors:
        entry = by_feature.setdefault(monitor["feature"], {"monitors": 0, "open_alerts": 0, "last_run": None})
        entry["monitors"] += 1
        entry["open_alerts"] += monitor["open_alerts"]
        run = monitor["last_run"]
        if run and (entry["last_run"] is None or run["as_of"] > entry["last_run"]):
            entry["last_run"] = run["as_of"]
    known = {f["feature"] for f in features}
    unseen = [  # monitored, but no trace yet
        {"feature": name, "traces": 0, "first_trace": None, "last_trace": None}
        for name in sorted(set(by_feature) - known)
    ]
    rows = []
    for feature in [*features, *unseen]:
        row = {**feature, "monitors": 0, "open_alerts": 0, **by_feature.get(feature["feature"], {})}
        points = handled.get(feature["feature"]) or []
        row["spark"] = hc.sparkline([p["value"] for p in points])
        week = [p for p in points[-7:] if p["value"] is not None and p["n"]]
        row["handled_n"] = sum(p["n"] for p in week)
        row["handled_rate"] = (
            sum(p["value"] * p["n"] for p in week) / row["handled_n"] if row["handled_n"] else None
        )
        rows.append(row)
    return rows


# --- alerts ------------------------------------------------------------------------------------------


def _why(kind: str, detail: dict[str, Any]) -> list[str]:
    """A few lines from the alert's numbers that say where the problem is."""
    if kind == "outcome":
        kind_of = str((detail.get("metric") or {}).get("kind") or "proportion")
        return [
            f"{row.get('attribute')} = {row.get('value')}: {metric_value(kind_of, row.get('reference'))} → "
            f"{metric_value(kind_of, row.get('current'))} ({row.get('n_current') or 0:,} traces)"
            for row in (detail.get("degraded") or [])[:4]
        ]
    if kind in ("column", "text", "descriptor"):  # their titles say it already
        return []
    terms = [str(t.get("term")) for t in detail.get("terms") or [] if isinstance(t, dict)][:8]
    terms = terms or [str(t) for t in detail.get("terms") or [] if isinstance(t, str)][:8]
    return [f"terms: {', '.join(terms)}"] if terms else []


def alert_view(alert: dict[str, Any], queue_names: dict[int, str]) -> dict[str, Any]:
    """An alert as its card shows it: the slice summarised (window, filters, how many traces are
    ranked, by stratum), why, and where it went."""
    slice_ = alert.get("slice") or {}
    kind = str(alert.get("key") or "").split(":", 1)[0]
    ranked = list(dict.fromkeys(slice_.get("trace_ids") or []))
    strata = slice_.get("strata") or {}
    counts = Counter(str(strata[t]) for t in ranked if t in strata)
    filters = [(name, slice_[name]) for name in ("release", "model") if slice_.get(name)]
    filters += list((slice_.get("attributes") or {}).items())
    return {
        **alert,
        "kind": kind,
        "since": slice_.get("since"),
        "until": slice_.get("until"),
        "filters": filters,
        "ranked": len(ranked),
        "strata": [{"name": name, "count": n, "share": n / len(ranked)} for name, n in counts.most_common(6)],
        "more_strata": max(len(counts) - 6, 0),
        "why": _why(kind, alert.get("detail") or {}),
        "queue": alert.get("queue") or queue_names.get(alert.get("queue_id") or -1),
    }


def _alert_order(alert: dict[str, Any]) -> tuple[int, int]:
    return (0 if alert.get("severity") == "critical" else 1, KIND_ORDER.get(alert["kind"], 9))


# --- the page ----------------------------------------------------------------------------------------


class FeaturePage:
    """Everything the feature page shows, from one :func:`feature_health` answer."""

    def __init__(self, health: dict[str, Any], can_act: bool, onsets: dict[int, str] | None = None) -> None:
        """``onsets``: for outcome alerts seen in several runs, when the first run that found them saw
        the change begin (a later run's window slides past it)."""
        self.health = health
        self.can_act = can_act
        self.onsets = onsets or {}
        self.charts = Charts()
        self.domain = (hc.epoch_ms(health["since"]), hc.epoch_ms(health["until"]))
        self.queues = health.get("queues") or []
        names = {q["id"]: q["name"] for q in self.queues}
        self.alerts = sorted((alert_view(a, names) for a in health.get("alerts") or []), key=_alert_order)
        self.monitors = health.get("monitors") or []
        self.changes: list[dict[str, str]] = []
        self.runs = [self._run(run) for run in health.get("latest_runs") or []]
        self.main, self.small = self._outcomes()
        self.headline = self._headline()

    @property
    def since_day(self) -> str:
        return day(self.health["since"])

    @property
    def until_day(self) -> str:
        """The last day shown (the window ends at the midnight after it)."""
        return (datetime.fromisoformat(self.health["until"]) - timedelta(microseconds=1)).date().isoformat()

    # outcomes ------------------------------------------------------------------------------------

    def _outcome_checks(self) -> list[dict[str, Any]]:
        return [section for run in self.runs for section in run["sections"] if section["kind"] == "outcome"]

    def _shaded(self, metric: str) -> list[dict[str, Any]]:
        return [
            {"since": self._onset(a), "until": a["until"], "title": a["title"]}
            for a in self.alerts
            if a["kind"] == "outcome" and str(a["key"]).split(":", 1)[1].split("[", 1)[0] == metric
        ]

    def _onset(self, alert: dict[str, Any]) -> str | None:
        """When the alert's change began: the earlier of its first run's and its latest run's view."""
        first, latest = self.onsets.get(alert["id"]), alert.get("since")
        if first and latest:
            return min(first, latest, key=hc.epoch_ms)
        return first or latest

    def _outcomes(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        series: dict[str, dict[str, Any]] = dict(self.health.get("outcomes") or {})
        for check in self._outcome_checks():  # a monitored metric the page does not show by itself
            name = check["metric"].get("name")
            if name and name not in series and check["series"]:
                series[name] = {
                    "metric": check["metric"],
                    "bucket": check["bucket"],
                    "points": check["series"],
                }
        with_data = [
            name for name, s in series.items() if any(p.get("value") is not None for p in s["points"])
        ]
        flagged = [
            str(a["key"]).split(":", 1)[1].split("[", 1)[0] for a in self.alerts if a["kind"] == "outcome"
        ]
        main_name = next((m for m in flagged if m in with_data), None)
        if main_name is None:
            main_name = MAIN_METRIC if MAIN_METRIC in with_data else (with_data[0] if with_data else None)
        main = None
        if main_name is not None:
            s = series[main_name]
            main = {
                "name": main_name,
                "label": s["metric"].get("label", main_name),
                "chart": self.charts.add(
                    f"outcome-{main_name}",
                    hc.outcome_spec(
                        s,
                        self.domain,
                        releases=self.health.get("releases") or [],
                        shaded=self._shaded(main_name),
                    ),
                ),
                "breakdown": self._breakdown(main_name),
            }
        small = []
        for name, s in series.items():
            if name == main_name:
                continue
            values = [p["value"] for p in s["points"] if p.get("value") is not None and p.get("n")]
            kind = str(s["metric"].get("kind"))
            small.append(
                {
                    "name": name,
                    "label": s["metric"].get("label", name),
                    "chart": self.charts.add(
                        f"outcome-{name}",
                        hc.outcome_spec(
                            s,
                            self.domain,
                            releases=self.health.get("releases") or [],
                            shaded=self._shaded(name),
                            height=90,
                            compact=True,
                        ),
                    ),
                    "range": (
                        f"{metric_value(kind, min(values))} to {metric_value(kind, max(values))} a "
                        f"{'day' if s.get('bucket', 'day') == 'day' else 'hour'}"
                        if values
                        else None
                    ),
                }
            )
        return main, small

    def _breakdown(self, metric: str) -> dict[str, Any] | None:
        """Where the metric moved, from the latest outcome check of it that broke it down."""
        for check in self._outcome_checks():
            if check["metric"].get("name") == metric and check["breakdown"]:
                kind = str(check["metric"].get("kind"))
                rows = sorted(
                    check["breakdown"],
                    key=lambda r: (not r.get("degraded"), -(r.get("share_of_excess") or 0.0)),
                )[:8]
                return {
                    "attribute": rows[0].get("attribute") if rows else None,
                    "rows": [
                        {
                            **row,
                            "reference_text": metric_value(kind, row.get("reference")),
                            "current_text": metric_value(kind, row.get("current")),
                        }
                        for row in rows
                    ],
                }
        return None

    # monitor runs --------------------------------------------------------------------------------

    def _run(self, run: dict[str, Any]) -> dict[str, Any]:
        window = run.get("window") or {}
        sections = [
            self._section(run["monitor"], check, {"run_id": run.get("run_id"), "position": position})
            for position, check in enumerate(run.get("checks") or [])
        ]
        return {**run, "window": window, "sections": sections}

    def _section(self, monitor: str, check: dict[str, Any], where: dict[str, Any]) -> dict[str, Any]:
        """One check of a run, by the shape of its results; ``where``: its run id and position."""
        name = str(check.get("check") or "check")
        base = {"check": name, "anchor": re.sub(r"[^A-Za-z0-9_-]+", "-", f"{monitor}-{name}"), **where}
        if check.get("status") == "failed":
            return {**base, "kind": "failed", "error": check.get("error") or "the check failed"}
        results = check.get("results") or {}
        if results.get("skipped"):
            return {**base, "kind": "skipped", "reason": results["skipped"]}
        coverage = results if "uncovered_share" in results else results.get("report")
        if isinstance(coverage, dict) and "uncovered_share" in coverage:
            return self._coverage(base, coverage)
        report = results.get("report")
        if isinstance(report, dict) and isinstance(report.get("columns"), list):
            return self._columns(base, monitor, results, report)
        if isinstance(results.get("result"), dict) and "statistic" in results["result"]:
            return self._field(base, monitor, results)
        if "window_test" in results or "series" in results:
            check_args = results.get("check") or {}
            return {
                **base,
                "kind": "outcome",
                "status": results.get("status"),
                "metric": results.get("metric") or {},
                "bucket": check_args.get("bucket", "day"),
                "series": results.get("series") or [],
                "breakdown": results.get("breakdown") or [],
            }
        text = pretty(results)
        return {**base, "kind": "other", "json": text if len(text) < 4000 else text[:4000] + "\n…"}

    def _columns(
        self, base: dict[str, Any], monitor: str, results: dict[str, Any], report: dict[str, Any]
    ) -> dict[str, Any]:
        name = base["check"]
        columns = [c for c in report["columns"] if isinstance(c, dict) and "column" in c]
        for column in columns:
            column["kind"] = test_kind(column.get("test"))
        drifted = [c for c in columns if c.get("drift")]
        shifts = results.get("shifts") or {}
        shifted = []
        for column in drifted:
            values = shifts.get(column["column"])
            if column.get("type") == "categorical" and values:
                grown = [s for s in values if (s.get("change") or 0) > 0][:3]
                summary = ", ".join(
                    f"{s['value']} {percent(s['reference_share'])} → {percent(s['current_share'])}"
                    for s in grown
                )
                shifted.append(
                    {
                        "column": column["column"],
                        "summary": summary,
                        "chart": self.charts.add(
                            f"shift-{column['column']}", hc.category_shift_spec(column["column"], values)
                        ),
                    }
                )
        distance = [c for c in columns if c["kind"] == "distance"]
        followed = [c for c in drifted if c["kind"] == "distance"] or sorted(
            distance, key=lambda c: -(c.get("statistic") or 0) / (c.get("threshold") or 1)
        )[:3]
        history = {
            c["column"]: self.health.get("drift_history", {}).get(f"{monitor}/{name}/{c['column']}", [])
            for c in followed
        }
        section = {
            **base,
            "kind": "columns",
            "title": "Descriptors of inputs and outputs" if name == "descriptors" else "Trace attributes",
            "columns": sorted(columns, key=lambda c: (not c.get("drift"), str(c["column"]))),
            "drifted": drifted,
            "n_reference": results.get("n_reference", report.get("n_reference")),
            "n_current": results.get("n_current", report.get("n_current")),
            "bars": self.charts.add(f"drift-{monitor}-{name}", hc.drift_bars_spec(distance)),
            # a p-value bar says little (most are 0.000 when drifted): these are listed with their numbers
            "by_p_value": [c for c in columns if c["kind"] == "p_value"],
            "shifted": shifted,
            "history": self.charts.add(f"history-{monitor}-{name}", hc.drift_history_spec(history)),
            "history_note": (
                "One run so far: the history starts with the next."
                if distance
                else "The history draws distance statistics; these columns are tested by p-value "
                "(see each column's test below)."
            ),
        }
        anchor = "#" + base["anchor"]
        if name == "descriptors":
            if drifted:
                listed = ", ".join(str(c["column"]).replace("_", " ") for c in drifted[:5])
                more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
                self.changes.append(
                    {
                        "text": f"{len(drifted)} descriptors drifted: {listed}{more}",
                        "anchor": anchor,
                        "order": "4",
                    }
                )
        else:
            for entry in shifted:
                self.changes.append(
                    {"text": f"{entry['column']} shifted: {entry['summary']}", "anchor": anchor, "order": "1"}
                )
            for column in drifted:
                if column["column"] not in {e["column"] for e in shifted}:
                    self.changes.append(
                        {
                            "text": f"{column['column']} drifted ({column.get('test')})",
                            "anchor": anchor,
                            "order": "1",
                        }
                    )
        return section

    def _field(self, base: dict[str, Any], monitor: str, results: dict[str, Any]) -> dict[str, Any]:
        name = base["check"]
        field = str(results.get("field") or "input")
        result = results["result"]
        explanation = results.get("explanation") or {}
        auc = result.get("test") in AUC_TESTS
        details: dict[str, Any] = results.get("details") or {}
        if not isinstance(details, dict):
            details = {}
        what = "embeddings" if name == "embedding" or "mmd2" in details else "texts"
        clusters = [
            {
                "size": c.get("size"),
                "share": c.get("share"),
                "examples": [
                    e if isinstance(e, str) else (e or {}).get("text") for e in c.get("examples") or []
                ][:3],
            }
            for c in results.get("clusters") or []
            if isinstance(c, dict)
        ][:4]
        section = {
            **base,
            "kind": "field",
            "title": f"{field.capitalize()} {what}",
            "field": field,
            "result": result,
            "auc": auc,
            "n_reference": results.get("n_reference"),
            "n_current": results.get("n_current"),
            "terms": (explanation.get("terms") or [])[:12],
            "reference_terms": (explanation.get("reference_terms") or [])[:8],
            "examples": (explanation.get("examples") or results.get("examples") or [])[:5],
            "facts": _embedding_facts(details),
            "clusters": clusters,
            "history": self.charts.add(
                f"history-{monitor}-{name}-{field}",
                hc.drift_history_spec(
                    {field: self.health.get("drift_history", {}).get(f"{monitor}/{name}/{field}", [])},
                    height=120,
                ),
            ),
        }
        if result.get("drift"):
            how = (
                f"ROC AUC {result['statistic']:.2f}"
                if auc
                else f"{result.get('test')} {result['statistic']:.3g}"
            )
            terms = ", ".join(str(t.get("term")) for t in section["terms"][:5])
            self.changes.append(
                {
                    "text": f"{field} {what} drifted ({how})"
                    + (f"; telling terms: {terms}" if terms else ""),
                    "anchor": "#" + base["anchor"],
                    "order": "2",
                }
            )
        return section

    def _coverage(self, base: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
        clusters = [c for c in report.get("clusters") or [] if isinstance(c, dict)][:8]
        share = report.get("uncovered_share")
        section = {
            **base,
            "kind": "coverage",
            "uncovered_share": share,
            "radius": report.get("radius"),
            "n_production": report.get("n_production"),
            "n_eval": report.get("n_eval"),
            "scattered_share": report.get("scattered_share"),
            "snapshot": (report.get("snapshot") or {}).get("name")
            if isinstance(report.get("snapshot"), dict)
            else None,
            "clusters": clusters,
            "sizes": self.charts.add(f"clusters-{base['anchor']}", hc.cluster_size_spec(clusters)),
            "trend": self.charts.add(f"cluster-trend-{base['anchor']}", hc.cluster_trend_spec(clusters)),
        }
        if clusters or share:
            labels = "; ".join(str(c.get("label") or f"cluster {c.get('id')}") for c in clusters[:3])
            text = f"{percent(share or 0)} of traffic is outside eval coverage" + (
                f", in {len(clusters)} cluster{'s' if len(clusters) != 1 else ''}: {labels}"
                if clusters
                else ""
            )
            self.changes.append({"text": text, "anchor": "#" + base["anchor"], "order": "3"})
        return section

    # the headline --------------------------------------------------------------------------------

    def _outcome_change(self, alert: dict[str, Any]) -> str:
        detail = alert.get("detail") or {}
        metric = detail.get("metric") or {}
        kind = str(metric.get("kind") or "")
        label = str(metric.get("label") or metric.get("name") or "outcome")
        test = detail.get("window_test") or {}
        cusum = detail.get("cusum") or {}
        if test.get("alert"):
            before, after = test.get("reference"), test.get("current")
        elif cusum.get("alert"):
            before, after = cusum.get("target"), cusum.get("run_value")
        else:
            before = after = None
        since = day(self._onset(alert))
        if before is None or after is None or kind not in ("proportion", "mean"):
            return str(alert.get("title"))
        verb = "fell" if after < before else "rose"
        label = label[:1].upper() + label[1:]
        if kind == "proportion":
            points = abs(after - before) * 100
            amount = f"{points:.0f}" if points >= 2 else f"{points:.1f}"
            return (
                f"{label} {verb} {amount} points since {since}: "
                f"{metric_value(kind, before)} → {metric_value(kind, after)}"
            )
        return f"{label} {verb} since {since}: {metric_value(kind, before)} → {metric_value(kind, after)}"

    def _headline(self) -> dict[str, Any]:
        alerts = self.alerts
        critical = sum(1 for a in alerts if a.get("severity") == "critical")
        outcome = next((a for a in alerts if a["kind"] == "outcome"), None)
        facts = []
        if alerts:
            facts.append(
                f"{len(alerts)} open alert{'s' if len(alerts) != 1 else ''}"
                + (f" ({critical} critical)" if critical else "")
            )
        else:
            facts.append("no open alerts")
        if outcome is not None:
            tone, main = (
                ("bad" if outcome.get("severity") == "critical" else "warn"),
                self._outcome_change(outcome),
            )
            steady = [
                f"{s['label']} {s['range']}"
                for s in self.small
                if s["name"] in ("error_rate", "latency_p95") and s["range"]
            ]
            if steady:
                facts.append("meanwhile " + " and ".join(steady))
        elif alerts:
            watched = [c["metric"].get("label") for c in self._outcome_checks() if c["metric"].get("label")]
            tone = "warn"
            main = (
                f"No outcome has degraded ({', '.join(dict.fromkeys(watched))} held), but "
                f"{len(alerts)} alert{'s are' if len(alerts) != 1 else ' is'} open"
                if watched
                else f"{len(alerts)} open alert{'s' if len(alerts) != 1 else ''}"
            )
        elif not self.monitors:
            tone, main = "quiet", "No monitor watches this feature yet"
        elif not self.runs:
            tone, main = "quiet", "The monitors of this feature have not run yet"
        else:
            tone, main = "good", "No open alerts: the monitors found nothing wrong"
        self.changes.sort(key=lambda c: c["order"])
        return {"tone": tone, "main": main, "facts": facts, "changes": self.changes}
