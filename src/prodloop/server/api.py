"""The REST API under ``/api/v1``: thin routes over the capture package."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from prodloop import capture
from prodloop.capture import SignalBatch, SignalBatchResult, TraceBatch, TraceBatchResult, TraceFilter
from prodloop.errors import ValidationFailed
from prodloop.server.auth import Permission, Principal
from prodloop.server.deps import any_caller, caller, engine_of, parse_json_model, read_body, settings_of

router = APIRouter(prefix="/api/v1")

Reader = Annotated[Principal, Depends(caller(Permission.READ))]
Writer = Annotated[Principal, Depends(caller(Permission.WRITE_TRACES))]


def _json_body(model: type[Any]) -> dict[str, Any]:
    """OpenAPI for a body that the route reads itself (to bound its size and shape its errors)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def _check_batch(request: Request, size: int) -> None:
    limit = settings_of(request).max_batch_items
    if size > limit:
        raise ValidationFailed(
            f"batch of {size} items is larger than the limit of {limit} (PRODLOOP_MAX_BATCH_ITEMS); split it",
            {"limit": limit, "size": size},
        )


@router.get("/me", summary="The project and role of the calling key")
def me(principal: Annotated[Principal, Depends(any_caller)]) -> dict[str, Any]:
    return {"project": principal.project, "role": principal.role.value}


@router.post(
    "/traces",
    summary="Log a batch of traces as plain JSON",
    response_model=TraceBatchResult,
    openapi_extra=_json_body(TraceBatch),
)
async def post_traces(request: Request, principal: Writer) -> TraceBatchResult:
    batch = parse_json_model(await read_body(request), TraceBatch)
    _check_batch(request, len(batch.traces))
    result = await run_in_threadpool(
        capture.ingest_traces, engine_of(request), principal.project_id, batch.traces
    )
    return TraceBatchResult(**result)


@router.get("/traces", summary="List traces, newest first, with keyset pagination")
def get_traces(
    request: Request,
    principal: Reader,
    feature: str | None = None,
    since: datetime | None = Query(None, description="Traces that started at or after this time."),
    until: datetime | None = Query(None, description="Traces that started before this time."),
    release: str | None = None,
    model: str | None = None,
    has_signal: bool | None = Query(
        None, description="true: only traces with a signal; false: only without."
    ),
    signal: str | None = Query(
        None, description="Only traces with a signal of this name (thumbs, escalated…)."
    ),
    status: Literal["ok", "error"] | None = None,
    q: str | None = Query(None, description="Text that the trace's input or output contains."),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page."),
) -> dict[str, Any]:
    filters = TraceFilter(
        feature=feature,
        since=since,
        until=until,
        release=release,
        model=model,
        has_signal=has_signal,
        signal=signal,
        status=status,
        search=q,
    )
    return capture.list_traces(engine_of(request), principal.project_id, filters, limit=limit, cursor=cursor)


@router.get("/traces/{trace_id}", summary="One trace with its span tree and signals")
def get_trace(request: Request, principal: Reader, trace_id: str) -> dict[str, Any]:
    return capture.get_trace(engine_of(request), principal.project_id, trace_id)


@router.post(
    "/signals",
    summary="Log a batch of feedback and outcome signals",
    response_model=SignalBatchResult,
    openapi_extra=_json_body(SignalBatch),
)
async def post_signals(request: Request, principal: Writer) -> SignalBatchResult:
    batch = parse_json_model(await read_body(request), SignalBatch)
    _check_batch(request, len(batch.signals))
    return await run_in_threadpool(
        capture.record_signals, engine_of(request), principal.project_id, batch.signals
    )


@router.get("/features", summary="Features (service names) with their trace counts")
def get_features(request: Request, principal: Reader) -> dict[str, Any]:
    return {"features": capture.list_features(engine_of(request), principal.project_id)}


@router.get(
    "/features/{feature}/coverage", summary="Share of a feature's traces that carry each kind of signal"
)
def get_coverage(
    request: Request,
    principal: Reader,
    feature: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    return capture.feature_coverage(engine_of(request), principal.project_id, feature, since, until)
