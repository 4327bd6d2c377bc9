"""The one root exception of prodloop and its subclasses.

Every error a user can cause is a :class:`ProdloopError`. Each subclass carries the HTTP status
and the machine-readable code that the server puts into the one error shape::

    {"error": {"code": "...", "message": "...", "detail": ...}}

The CLI prints them without a traceback.
"""

from __future__ import annotations

from typing import Any


class ProdloopError(Exception):
    """Root of every prodloop error; subclasses set ``status`` and ``code``."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "detail": self.detail}}


class InvalidRequest(ProdloopError):
    """The request body or parameters cannot be read (garbage bytes, wrong encoding)."""

    status = 400
    code = "invalid_request"


class ValidationFailed(ProdloopError):
    """The request was read but its content breaks a rule; ``detail`` lists each problem."""

    status = 422
    code = "validation_failed"

    @classmethod
    def from_errors(cls, errors: list[Any]) -> ValidationFailed:
        """From Pydantic's errors: ``detail`` is ``[{"loc": "traces.0.trace_id", "message": ...}]``
        (the input values left out), the message names the first problem."""
        problems = []
        for error in errors:
            loc = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(
                {"loc": loc, "message": str(error.get("msg", "invalid")).removeprefix("Value error, ")}
            )
        first = problems[0] if problems else {"loc": "", "message": "invalid"}
        where = f"{first['loc']}: " if first["loc"] else ""
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return cls(f"{where}{first['message']}{more}", problems)


class Unauthorized(ProdloopError):
    """No API key, or one that prodloop does not know."""

    status = 401
    code = "unauthorized"


class Forbidden(ProdloopError):
    """The key is valid but its role does not allow this action."""

    status = 403
    code = "forbidden"


class NotFound(ProdloopError):
    """The thing does not exist, or belongs to a project the key cannot see."""

    status = 404
    code = "not_found"


class Conflict(ProdloopError):
    """The request clashes with what is stored (a name already taken)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ProdloopError):
    """The body is larger than ``PRODLOOP_MAX_REQUEST_BYTES``."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ProdloopError):
    """The body's content type is not one this endpoint reads."""

    status = 415
    code = "unsupported_media_type"


class StoreNotReady(ProdloopError):
    """The database has not been migrated to the schema this version needs."""

    status = 503
    code = "store_not_ready"


__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "ProdloopError",
    "StoreNotReady",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
]
