"""The feature health pages: every feature with its open alerts and handled rate, and one feature's
page (outcomes over time, what changed, the open alerts), where a reviewer sends an alert's slice to
an annotation queue, acknowledges or resolves it. Each route parses its input, calls the monitoring
package, and renders a template; :mod:`prodloop.server.ui.health_page` shapes what the page shows.

Reading needs ``read``; acting on an alert needs ``review``. Like every form of the UI, the alert
forms rely on the session cookie being ``SameSite=Strict`` (and the pages' ``form-action 'self'``)
against cross-site requests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from prodloop import annotation, capture, monitoring
from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.server.auth import Permission, Principal
from prodloop.server.deps import engine_of, key_label
from prodloop.server.ui.health_page import FeaturePage, alert_view, feature_rows
from prodloop.server.ui.labelling import may
from prodloop.server.ui.session import PageRoute, error_page, viewer
from prodloop.server.ui.views import _when_param, templates

router = APIRouter(include_in_schema=False, route_class=PageRoute)

#: The days a feature page shows by default, and at most.
DEFAULT_DAYS = 30
MAX_DAYS = 365
#: The items an alert sends to a queue unless the form says otherwise, and at most.
DEFAULT_ITEMS = 50
MAX_ITEMS = 10_000
#: Days of handled rate in each sparkline of the feature list; how many features get one.
SPARK_DAYS = 14
SPARK_FEATURES = 50


def _is_htmx(request: Request) -> bool:
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-history-restore-request")


def feature_url(feature: str) -> str:
    return "/ui/features/" + quote(feature, safe="")


def _refused(request: Request, principal: Principal) -> Response | None:
    """A 403 page (the key stays signed in) when the key may not act on alerts."""
    if may(principal, Permission.REVIEW):
        return None
    return error_page(
        request,
        403,
        "Not with this key",
        f"A key with role {principal.role.value!r} may not acknowledge, resolve or route alerts "
        "(a reviewer or admin key may). Sign in with another key, or ask an admin for one "
        "(prodloop keys create --role reviewer).",
    )


# --- the feature list --------------------------------------------------------------------------------


@router.get("/ui/features")
def features_page(request: Request) -> Response:
    principal = viewer(request)
    engine = engine_of(request)
    pid = principal.project_id
    features = [f for f in capture.list_features(engine, pid) if f["feature"]]
    until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    handled = {
        f["feature"]: monitoring.outcome_series(
            engine, pid, f["feature"], "handled_rate", since=until - timedelta(days=SPARK_DAYS), until=until
        )["points"]
        for f in features[:SPARK_FEATURES]
    }
    rows = feature_rows(features, monitoring.list_monitors(engine, pid), handled)
    for row in rows:
        row["url"] = feature_url(row["feature"])
    return templates.TemplateResponse(
        request,
        "features.html",
        {"principal": principal, "active": "features", "features": rows, "spark_days": SPARK_DAYS},
    )


# --- one feature -------------------------------------------------------------------------------------


def _days(raw: str, problems: list[str]) -> int:
    raw = raw.strip()
    if not raw:
        return DEFAULT_DAYS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        problems.append(f"days {raw!r} must be a whole number from 1 to {MAX_DAYS}; showing {DEFAULT_DAYS}")
        return DEFAULT_DAYS
    return int(raw)


@router.get("/ui/features/{feature:path}")
def feature_page(request: Request, feature: str, days: str = "", until: str = "") -> Response:
    principal = viewer(request)
    engine = engine_of(request)
    pid = principal.project_id
    problems: list[str] = []
    span = _days(days, problems)
    until_at = _when_param("until", until, problems)
    health = monitoring.feature_health(engine, pid, feature, days=span, until=until_at)
    if not health["monitors"] and not any(p["n"] for s in health["outcomes"].values() for p in s["points"]):
        if feature not in {f["feature"] for f in capture.list_features(engine, pid)}:
            raise NotFound(f"no feature {feature!r} in this project; the features page lists them")
    page = FeaturePage(
        health, can_act=may(principal, Permission.REVIEW), onsets=_onsets(engine, pid, health["alerts"])
    )
    context = {
        "principal": principal,
        "active": "features",
        "feature": feature,
        "page": page,
        "days": span,
        "until": until,
        "problems": problems,
        "default_items": DEFAULT_ITEMS,
        "max_items": MAX_ITEMS,
        "traces_url": "/ui/traces?feature=" + quote(feature, safe=""),
    }
    return templates.TemplateResponse(request, "feature.html", context)


def _onsets(engine: sa.Engine, pid: int, alerts: list[dict[str, Any]]) -> dict[int, str]:
    """For each outcome alert seen in more than one run, the start of its slice in the first run that
    found it: each later run moves the slice with its window, past the day the change began."""
    found = {}
    for alert in alerts:
        if not str(alert["key"]).startswith("outcome:") or alert["first_run_id"] in (
            None,
            alert["last_run_id"],
        ):
            continue
        try:
            run = monitoring.get_run(engine, pid, alert["first_run_id"])
        except NotFound:
            continue
        for check in (run.get("results") or {}).get("checks", []):
            for finding in check.get("findings") or []:
                since = (finding.get("slice") or {}).get("since")
                if finding.get("key") == alert["key"] and since:
                    found[alert["id"]] = since
    return found


# --- acting on an alert ------------------------------------------------------------------------------


def _card(
    request: Request,
    principal: Principal,
    alert: dict[str, Any],
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The alert's card alone (htmx swaps it in), or back to its feature page."""
    feature = (alert.get("slice") or {}).get("feature")
    if not _is_htmx(request):
        if error is not None:
            return error_page(request, status, "prodloop could not do that", error)
        target = feature_url(feature) if feature else "/ui/features"
        return RedirectResponse(f"{target}#alert-{alert['id']}", status_code=303)
    engine = engine_of(request)
    queues = [
        {"id": q["id"], "name": q["name"]} for q in annotation.list_queues(engine, principal.project_id)
    ]
    context = {
        "principal": principal,
        "alert": alert_view(alert, {q["id"]: q["name"] for q in queues}),
        "queues": queues,
        "can_act": True,
        "default_items": DEFAULT_ITEMS,
        "max_items": MAX_ITEMS,
        "notice": notice,
        "error": error,
    }
    return templates.TemplateResponse(
        request, "_alert_card.html", context, status_code=status, headers={"Vary": "HX-Request"}
    )


def _items(raw: str) -> int:
    raw = raw.strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ITEMS:
        raise ValidationFailed(
            f"items {raw!r} must be a whole number from 1 to {MAX_ITEMS:,}", {"items": raw}
        )
    return int(raw)


@router.post("/ui/alerts/{alert_id}/route")
def route_alert(
    request: Request,
    alert_id: int,
    queue: Annotated[str, Form(description="the queue's id (or name)")] = "",
    items: Annotated[str, Form()] = str(DEFAULT_ITEMS),
) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal):
        return refused
    engine = engine_of(request)
    monitoring.get_alert(engine, principal.project_id, alert_id)  # an unknown alert is a 404 page
    try:
        if not queue.strip():
            raise ValidationFailed("choose a queue to send the traces to", {"queue": queue})
        result = monitoring.route_alert(
            engine,
            principal.project_id,
            alert_id,
            queue.strip(),
            items=_items(items),
            actor=key_label(engine, principal.key_id),
        )
    except (ValidationFailed, NotFound, Conflict) as problem:
        alert = monitoring.get_alert(engine, principal.project_id, alert_id)
        return _card(request, principal, alert, error=problem.message, status=problem.status)
    added, skipped = result["added"], result["skipped"]
    notice = f"Sent {added} item{'s' if added != 1 else ''} to queue {result['queue']}"
    if skipped:
        notice += f" ({skipped} {'was' if skipped == 1 else 'were'} in it already)"
    alert = monitoring.get_alert(engine, principal.project_id, alert_id)
    return _card(request, principal, alert, notice=notice + ".")


def _transition(request: Request, alert_id: int, to: str) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal):
        return refused
    engine = engine_of(request)
    who = key_label(engine, principal.key_id)
    change = monitoring.acknowledge_alert if to == "acknowledged" else monitoring.resolve_alert
    try:
        alert = change(engine, principal.project_id, alert_id, who)
    except Conflict as problem:
        alert = monitoring.get_alert(engine, principal.project_id, alert_id)
        return _card(request, principal, alert, error=problem.message, status=problem.status)
    return _card(request, principal, alert, notice=f"Alert {to} by {who}.")


@router.post("/ui/alerts/{alert_id}/acknowledge")
def acknowledge_alert(request: Request, alert_id: int) -> Response:
    return _transition(request, alert_id, "acknowledged")


@router.post("/ui/alerts/{alert_id}/resolve")
def resolve_alert(request: Request, alert_id: int) -> Response:
    return _transition(request, alert_id, "resolved")


# --- sending an uncovered cluster to a queue ---------------------------------------------------------


def _coverage_report(engine: sa.Engine, pid: int, run_id: int, position: int) -> dict[str, Any]:
    """The coverage report that check ``position`` of run ``run_id`` stored."""
    run = monitoring.get_run(engine, pid, run_id)
    checks = (run.get("results") or {}).get("checks", [])
    results = (checks[position].get("results") or {}) if 0 <= position < len(checks) else {}
    report = results if "uncovered_share" in results else results.get("report")
    if not isinstance(report, dict) or "clusters" not in report:
        raise NotFound(f"check {position} of monitor run {run_id} holds no coverage report")
    return report


@router.post("/ui/runs/{run_id}/checks/{position}/clusters/{cluster}/route")
def route_cluster(
    request: Request,
    run_id: int,
    position: int,
    cluster: int,
    queue: Annotated[str, Form(description="the queue's id (or name)")] = "",
    items: Annotated[str, Form()] = str(DEFAULT_ITEMS),
) -> Response:
    principal = viewer(request)
    if refused := _refused(request, principal):
        return refused
    engine = engine_of(request)
    report = _coverage_report(engine, principal.project_id, run_id, position)
    if not any(c.get("id") == cluster for c in report["clusters"]):
        raise NotFound(f"monitor run {run_id} found no uncovered cluster {cluster}")
    notice = error = None
    status = 200
    try:
        if not queue.strip():
            raise ValidationFailed("choose a queue to send the traces to", {"queue": queue})
        result = monitoring.send_cluster_to_queue(
            engine, principal.project_id, report, queue.strip(), items=_items(items), cluster=cluster
        )
        added, skipped = result["added"], result["skipped"]
        notice = (
            f"Sent {added} trace{'s' if added != 1 else ''} of cluster #{cluster} to queue {result['queue']}"
        )
        notice += f" ({skipped} {'was' if skipped == 1 else 'were'} in it already)." if skipped else "."
    except (ValidationFailed, NotFound) as problem:
        error, status = problem.message, problem.status
    if not _is_htmx(request):
        if error is not None:
            return error_page(request, status, "prodloop could not do that", error)
        target = feature_url(report["feature"]) if report.get("feature") else "/ui/features"
        return RedirectResponse(target, status_code=303)
    queues = [
        {"id": q["id"], "name": q["name"]} for q in annotation.list_queues(engine, principal.project_id)
    ]
    context = {
        "run_id": run_id,
        "position": position,
        "cluster_id": cluster,
        "queues": queues,
        "default_items": DEFAULT_ITEMS,
        "max_items": MAX_ITEMS,
        "notice": notice,
        "error": error,
    }
    return templates.TemplateResponse(
        request, "_cluster_route.html", context, status_code=status, headers={"Vary": "HX-Request"}
    )
