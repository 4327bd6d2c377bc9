"""The monitoring API under ``/api/v1``: monitors, their runs, alerts and their routing.

Thin routes over :mod:`prodloop.monitoring`. Reading needs ``read``; creating and running monitors
needs ``admin``; acknowledging, resolving and routing alerts needs ``review``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from prodloop import monitoring
from prodloop.errors import InvalidRequest
from prodloop.server.auth import Permission, Principal
from prodloop.server.deps import caller, engine_of, key_label, parse_json_model, read_body

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, Depends(caller(Permission.READ))]
Admin = Annotated[Principal, Depends(caller(Permission.ADMIN))]
Reviewer = Annotated[Principal, Depends(caller(Permission.REVIEW))]

_DEFINITION_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": monitoring.MonitorDefinition.model_json_schema()}},
    }
}


def _document(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: datetime | None = Field(None, description="Run as of this time (default: now), e.g. to backfill.")
    route: bool = Field(True, description="Route new alerts to the monitor's queue, if it has a route.")


class AlertNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str | None, Field(max_length=2000)] = None


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: Annotated[str, Field(min_length=1, description="Queue name (or id).")]
    items: Annotated[int, Field(ge=1, le=10_000)] = 50
    priority: int = 0


# --------------------------------------------------------------------------------------------------
# Monitors


@router.post(
    "/monitors",
    summary="Create a monitor from its definition",
    status_code=201,
    openapi_extra=_DEFINITION_DOC,
)
async def post_monitor(request: Request, principal: Admin) -> dict[str, Any]:
    document = _document(await read_body(request))
    stored, _ = await run_in_threadpool(
        monitoring.save_monitor, engine_of(request), principal.project_id, document
    )
    return stored


@router.put(
    "/monitors/{name}",
    summary="Create or replace a monitor (201 when created)",
    openapi_extra=_DEFINITION_DOC,
)
async def put_monitor(request: Request, response: Response, principal: Admin, name: str) -> dict[str, Any]:
    document = _document(await read_body(request))
    if isinstance(document, dict):
        document.setdefault("name", name)
        if document["name"] != name:
            raise InvalidRequest(f"the body names monitor {document['name']!r} but the path names {name!r}")
    stored, created = await run_in_threadpool(
        lambda: monitoring.save_monitor(engine_of(request), principal.project_id, document, replace=True)
    )
    response.status_code = 201 if created else 200
    return stored


@router.get("/monitors", summary="Monitors, with their open alerts and last run")
def get_monitors(
    request: Request, principal: Reader, feature: str | None = Query(None, description="Only this feature's.")
) -> dict[str, Any]:
    return {"monitors": monitoring.list_monitors(engine_of(request), principal.project_id, feature)}


@router.get("/monitors/{name}", summary="One monitor")
def get_monitor(request: Request, principal: Reader, name: str) -> dict[str, Any]:
    return monitoring.get_monitor(engine_of(request), principal.project_id, name)


@router.post("/monitors/{name}/enable", summary="Resume a monitor (a scheduled one runs at once)")
def post_enable(request: Request, principal: Admin, name: str) -> dict[str, Any]:
    return monitoring.set_monitor_enabled(engine_of(request), principal.project_id, name, True)


@router.post("/monitors/{name}/disable", summary="Pause a monitor")
def post_disable(request: Request, principal: Admin, name: str) -> dict[str, Any]:
    return monitoring.set_monitor_enabled(engine_of(request), principal.project_id, name, False)


@router.post("/monitors/{name}/runs", summary="Run a monitor now and return the stored run", status_code=201)
async def post_run(request: Request, principal: Admin, name: str) -> dict[str, Any]:
    body = await read_body(request)
    options = parse_json_model(body, RunRequest) if body.strip() else RunRequest()
    return await run_in_threadpool(
        lambda: monitoring.run_monitor(
            engine_of(request), principal.project_id, name, as_of=options.as_of, route=options.route
        )
    )


@router.get("/monitors/{name}/runs", summary="A monitor's runs, newest first (without their results)")
def get_runs(
    request: Request, principal: Reader, name: str, limit: int = Query(50, ge=1, le=1000)
) -> dict[str, Any]:
    return {"runs": monitoring.list_runs(engine_of(request), principal.project_id, name, limit)}


@router.get("/monitor-runs/{run_id}", summary="One run with every check's results")
def get_run(request: Request, principal: Reader, run_id: int) -> dict[str, Any]:
    return monitoring.get_run(engine_of(request), principal.project_id, run_id)


# --------------------------------------------------------------------------------------------------
# Alerts


@router.get("/alerts", summary="Alerts, newest first")
def get_alerts(
    request: Request,
    principal: Reader,
    status: str | None = Query(None, description="open, acknowledged, resolved or unresolved."),
    monitor: str | None = Query(None, description="Only this monitor's."),
    feature: str | None = Query(None, description="Only alerts of monitors of this feature."),
    limit: int = Query(200, ge=1, le=1000),
) -> dict[str, Any]:
    return {
        "alerts": monitoring.list_alerts(
            engine_of(request),
            principal.project_id,
            status=status,
            monitor=monitor,
            feature=feature,
            limit=limit,
        )
    }


@router.get("/alerts/{alert_id}", summary="One alert with its events")
def get_alert(request: Request, principal: Reader, alert_id: int) -> dict[str, Any]:
    return monitoring.get_alert(engine_of(request), principal.project_id, alert_id)


async def _note(request: Request) -> str | None:
    body = await read_body(request)
    return parse_json_model(body, AlertNote).note if body.strip() else None


async def _change_alert(
    request: Request, principal: Principal, alert_id: int, change: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Acknowledge or resolve an alert (``change``) as the caller's key, with the body's note."""
    note = await _note(request)
    engine = engine_of(request)
    who = await run_in_threadpool(key_label, engine, principal.key_id)
    return await run_in_threadpool(change, engine, principal.project_id, alert_id, who, note)


@router.post("/alerts/{alert_id}/acknowledge", summary="Say someone is on it")
async def post_acknowledge(request: Request, principal: Reviewer, alert_id: int) -> dict[str, Any]:
    return await _change_alert(request, principal, alert_id, monitoring.acknowledge_alert)


@router.post("/alerts/{alert_id}/resolve", summary="Close the alert")
async def post_resolve(request: Request, principal: Reviewer, alert_id: int) -> dict[str, Any]:
    return await _change_alert(request, principal, alert_id, monitoring.resolve_alert)


@router.post("/alerts/{alert_id}/route", summary="Send a stratified sample of the alert's slice to a queue")
async def post_route(request: Request, principal: Reviewer, alert_id: int) -> dict[str, Any]:
    body = parse_json_model(await read_body(request), RouteRequest)
    engine = engine_of(request)
    who = await run_in_threadpool(key_label, engine, principal.key_id)
    return await run_in_threadpool(
        lambda: monitoring.route_alert(
            engine,
            principal.project_id,
            alert_id,
            body.queue,
            items=body.items,
            priority=body.priority,
            actor=who,
        )
    )
