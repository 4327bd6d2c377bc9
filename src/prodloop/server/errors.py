"""Turn every failure into the one error shape: ``{"error": {"code", "message", "detail"}}``."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from prodloop.errors import ProdloopError, ValidationFailed

log = logging.getLogger("prodloop.server")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
}


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": detail}}


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities written as strings: JSON has no such numbers, and an error
    whose detail echoes a client's NaN must still be JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def _response(error: ProdloopError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message, json_safe(error.detail)), status_code=error.status
    )


def validation_failed(exc: ValidationError | RequestValidationError) -> ValidationFailed:
    return ValidationFailed.from_errors(list(exc.errors()))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProdloopError)
    async def _prodloop(_request: Request, exc: ProdloopError) -> JSONResponse:
        return _response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _response(validation_failed(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", "prodloop hit an unexpected error; the server log has the details"),
            status_code=500,
        )
