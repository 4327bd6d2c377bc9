"""A feature's health on one page: outcomes over time with release markers, what its monitors found
(drift per column and for text, coverage), their history, and the open alerts.

Everything here is read from the store; nothing is computed that a monitor run has not stored, except
the outcome series themselves (grouped SQL over the capture tables).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from prodloop.annotation import list_queues
from prodloop.capture.queries import iso, to_ns
from prodloop.monitoring.alerts import list_alerts
from prodloop.monitoring.monitors import list_monitors
from prodloop.monitoring.outcome_queries import outcome_series
from prodloop.store import read_transaction
from prodloop.store.schema import monitor_runs, traces

#: The outcome metrics a feature page shows: the outcomes users feel, then the dashboards' own
#: (errors and latency), which stay flat while the first ones fall.
PAGE_METRICS = ("handled_rate", "thumbs_down_rate", "escalation_rate", "error_rate", "latency_p95")
#: Runs per monitor read for the history charts.
HISTORY_RUNS = 120


def release_markers(
    engine: sa.Engine, project_id: int, feature: str, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """When each release of the feature first served a trace (for vertical markers on charts)."""
    with read_transaction(engine) as connection:
        rows = connection.execute(
            sa.select(traces.c.release, sa.func.min(traces.c.start_ns), sa.func.count())
            .where(
                traces.c.project_id == project_id,
                traces.c.feature == feature,
                traces.c.release.is_not(None),
                traces.c.start_ns < to_ns(until),
            )
            .group_by(traces.c.release)
        ).all()
    since_ns = to_ns(since)
    return sorted(
        (
            {"release": release, "first_seen": iso(first), "traces": n, "in_range": first >= since_ns}
            for release, first, n in rows
        ),
        key=lambda r: str(r["first_seen"]),
    )


def _history(runs: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Per drift column (``check/column``), its statistic and verdict at each run, oldest first."""
    history: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: r.as_of_ns):
        for check in (run.results or {}).get("checks", []):
            if check.get("status") != "ok":
                continue
            results = check.get("results") or {}
            report = results.get("report")
            if isinstance(report, dict):
                for column in report.get("columns", []):
                    history.setdefault(f"{check['check']}/{column['column']}", []).append(
                        {
                            "as_of": iso(run.as_of_ns),
                            "statistic": column.get("statistic"),
                            "p_value": column.get("p_value"),
                            "threshold": column.get("threshold"),
                            "drift": column.get("drift"),
                            "test": column.get("test"),
                        }
                    )
            single = results.get("result")
            if isinstance(single, dict) and "statistic" in single:
                history.setdefault(f"{check['check']}/{results.get('field', 'input')}", []).append(
                    {
                        "as_of": iso(run.as_of_ns),
                        "statistic": single.get("statistic"),
                        "p_value": single.get("p_value"),
                        "threshold": single.get("threshold"),
                        "drift": single.get("drift"),
                        "test": single.get("test"),
                    }
                )
    return history


def feature_health(
    engine: sa.Engine,
    project_id: int,
    feature: str,
    *,
    days: int = 30,
    until: datetime | None = None,
    bucket: str = "day",
) -> dict[str, Any]:
    """Everything the feature page shows, JSON-ready."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    if bucket == "day":  # whole days, so the last bar is today so far
        until = until.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    since = until - timedelta(days=days)
    outcomes = {
        metric: outcome_series(engine, project_id, feature, metric, since=since, until=until, bucket=bucket)  # type: ignore[arg-type]
        for metric in PAGE_METRICS
    }
    monitors = list_monitors(engine, project_id, feature)
    latest: list[dict[str, Any]] = []
    history: dict[str, list[dict[str, Any]]] = {}
    with read_transaction(engine) as connection:
        for monitor in monitors:
            runs = connection.execute(
                sa.select(
                    monitor_runs.c.id, monitor_runs.c.as_of_ns, monitor_runs.c.status, monitor_runs.c.results
                )
                .where(monitor_runs.c.monitor_id == monitor["id"])
                .order_by(monitor_runs.c.id.desc())
                .limit(HISTORY_RUNS)
            ).all()
            if not runs:
                continue
            newest = runs[0]
            latest.append(
                {
                    "monitor": monitor["name"],
                    "run_id": newest.id,
                    "as_of": iso(newest.as_of_ns),
                    "status": newest.status,
                    "window": (newest.results or {}).get("window"),
                    "checks": (newest.results or {}).get("checks", []),
                }
            )
            for key, points in _history(list(runs)).items():
                history[f"{monitor['name']}/{key}"] = points
    return {
        "feature": feature,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "bucket": bucket,
        "outcomes": outcomes,
        "releases": release_markers(engine, project_id, feature, since, until),
        "monitors": monitors,
        "latest_runs": latest,
        "drift_history": history,
        "alerts": list_alerts(engine, project_id, status="unresolved", feature=feature),
        "queues": [{"id": q["id"], "name": q["name"]} for q in list_queues(engine, project_id)],
    }
