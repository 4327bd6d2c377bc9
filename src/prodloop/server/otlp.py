"""``POST /v1/traces``: the OTLP/HTTP trace endpoint, so that any OpenTelemetry SDK or collector can
export to prodloop unchanged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from prodloop.capture import encode_response, ingest_otlp
from prodloop.capture.otlp import media_type
from prodloop.server.auth import Permission, Principal
from prodloop.server.deps import caller, engine_of, read_body

router = APIRouter()

_MAX_REASONS = 5


@router.post(
    "/v1/traces",
    summary="OTLP/HTTP trace export (protobuf or JSON, optionally gzip)",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def export_traces(
    request: Request, principal: Annotated[Principal, Depends(caller(Permission.WRITE_TRACES))]
) -> Response:
    encoding = media_type(request.headers.get("content-type"))
    body = await read_body(request)
    # Decoding is CPU work like the write: both run off the event loop.
    _, problems = await run_in_threadpool(
        ingest_otlp, engine_of(request), principal.project_id, body, encoding
    )
    message = ""
    if problems:
        shown = "; ".join(problems[:_MAX_REASONS])
        more = f" (and {len(problems) - _MAX_REASONS} more)" if len(problems) > _MAX_REASONS else ""
        message = f"{len(problems)} spans rejected: {shown}{more}"
    return Response(encode_response(len(problems), message, encoding), media_type=encoding)
