"""Request plumbing shared by the routes: the store, the caller, and bounded body reading."""

from __future__ import annotations

import json
import time
from typing import Any, TypeVar

import sqlalchemy as sa
from fastapi import Request
from pydantic import BaseModel, ValidationError

from prodloop.capture.otlp import decompress
from prodloop.errors import InvalidRequest, PayloadTooLarge
from prodloop.server.auth import Permission, Principal, authenticate, hash_key
from prodloop.server.errors import validation_failed
from prodloop.settings import Settings
from prodloop.store import read_transaction
from prodloop.store.schema import api_keys

_CACHE_SECONDS = 30.0
M = TypeVar("M", bound=BaseModel)


def engine_of(request: Request) -> sa.Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def bearer_key(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def principal_of(request: Request, key: str | None) -> Principal:
    """Authenticate ``key``, caching the answer briefly so that ingest does not pay a query per request."""
    cache: dict[str, tuple[float, Principal]] = request.app.state.key_cache
    digest = hash_key(key) if key else ""
    hit = cache.get(digest)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    principal = authenticate(engine_of(request), key)
    if len(cache) > 10_000:
        cache.clear()
    cache[digest] = (now + _CACHE_SECONDS, principal)
    return principal


def caller(permission: Permission) -> Any:
    """A dependency that authenticates the bearer key and checks it may do ``permission``."""

    def dependency(request: Request) -> Principal:
        principal = principal_of(request, bearer_key(request))
        principal.require(permission)
        return principal

    return dependency


async def read_body(request: Request) -> bytes:
    """The request body, gzip undone, refusing more than ``max_request_bytes`` before reading it all."""
    limit = settings_of(request).max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body of {declared} bytes is larger than the limit of {limit} bytes "
            "(PRODLOOP_MAX_REQUEST_BYTES)",
            {"limit": limit, "size": int(declared)},
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body is larger than the limit of {limit} bytes (PRODLOOP_MAX_REQUEST_BYTES)",
                {"limit": limit},
            )
        chunks.append(chunk)
    return decompress(b"".join(chunks), request.headers.get("content-encoding"), limit)


def parse_json_model(body: bytes, model: type[M]) -> M:
    """Read a JSON body into ``model``: 400 if it is not JSON, 422 naming each field that is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_failed(exc) from exc


def key_label(engine: sa.Engine, key_id: int) -> str:
    """A key's name (or its prefix), to record who did something."""
    with read_transaction(engine) as connection:
        row = connection.execute(
            sa.select(api_keys.c.name, api_keys.c.prefix).where(api_keys.c.id == key_id)
        ).one()
    return str(row.name or f"key {row.prefix}")


def any_caller(request: Request) -> Principal:
    """A dependency for routes that any valid key may call."""
    return principal_of(request, bearer_key(request))
