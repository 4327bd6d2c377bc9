"""The native Python SDK: log traces and signals (batched), query traces and coverage.

``transport=`` takes any httpx transport, so tests and notebooks can call an app in-process::

    client = prodloop.Client("http://test", api_key, transport=httpx.ASGITransport(app))
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from prodloop.capture.native import new_trace_id
from prodloop.capture.shapes import SignalIn, TraceIn
from prodloop.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ProdloopError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

_ERRORS: dict[int, type[ProdloopError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
}


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        message, detail = error["message"], error.get("detail")
    except (ValueError, KeyError, TypeError):
        message, detail = f"HTTP {response.status_code}: {response.text[:200]}", None
    cls = _ERRORS.get(response.status_code, ProdloopError)
    exc = cls(message, detail)
    exc.status = response.status_code
    raise exc


def _params(**kwargs: Any) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _jsonable(item: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ready copy of ``item``: datetimes (at any depth) as ISO 8601, top-level Nones left out."""
    return to_jsonable_python({k: v for k, v in item.items() if v is not None})  # type: ignore[no-any-return]


def _worth_retrying(exc: Exception) -> bool:
    """Keep unsent items for a later flush after network trouble or a server-side failure, but not
    after the server refused them (4xx): sending them again would fail again."""
    if isinstance(exc, ProdloopError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, httpx.TransportError)


class _Buffer:
    """Items waiting to be sent, flushed in batches of ``batch_size``."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.traces: list[dict[str, Any]] = []
        self.signals: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def restore(
        self,
        traces: list[dict[str, Any]],
        signals: list[dict[str, Any]],
        sent_traces: int,
        sent_signals: int,
        exc: Exception,
    ) -> None:
        """After a failed send, put what was not sent back at the front of the buffer for a later flush.

        The batch that failed goes back too after network trouble or a server-side failure; a batch the
        server refused (4xx) is dropped, since sending it again would fail again, but nothing after it.
        """
        skip = 0 if _worth_retrying(exc) else self.batch_size
        with self.lock:
            if sent_traces < len(traces):
                self.traces[:0] = traces[sent_traces + skip :]
                self.signals[:0] = signals
            else:
                self.signals[:0] = signals[sent_signals + skip :]

    def take(self, everything: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self.lock:
            n = len(self.traces) if everything else (len(self.traces) // self.batch_size) * self.batch_size
            m = len(self.signals) if everything else (len(self.signals) // self.batch_size) * self.batch_size
            traces, self.traces = self.traces[:n], self.traces[n:]
            signals, self.signals = self.signals[:m], self.signals[m:]
        return traces, signals


def _checked(model: type[BaseModel], item: dict[str, Any]) -> dict[str, Any]:
    """Validate an item where it is logged, so that a bad one fails its own call and never takes a
    batch of good ones down with it."""
    try:
        model.model_validate(item)
    except ValidationError as exc:
        raise ValidationFailed.from_errors(list(exc.errors())) from None
    return item


def _trace_item(trace: Mapping[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    item = _jsonable({**(trace or {}), **fields})
    item.setdefault("trace_id", new_trace_id())
    return _checked(TraceIn, item)


def _signal_item(fields: dict[str, Any]) -> dict[str, Any]:
    return _checked(SignalIn, _jsonable(fields))


class Client:
    """A prodloop client. ``log_trace`` and ``log_signal`` buffer; ``flush`` (or leaving a ``with``
    block, or ``close``) sends what is buffered in batches."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        transport: httpx.BaseTransport | None = None,
        batch_size: int = 500,
        timeout: float = 30.0,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
            timeout=timeout,
        )
        self._buffer = _Buffer(batch_size)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._http.close()

    # writing
    def log_trace(self, trace: Mapping[str, Any] | None = None, **fields: Any) -> str:
        """Buffer one trace (the fields of :class:`~prodloop.capture.TraceIn`); returns its trace id."""
        item = _trace_item(trace, fields)
        with self._buffer.lock:
            self._buffer.traces.append(item)
            full = len(self._buffer.traces) >= self._buffer.batch_size
        if full:
            self._send(*self._buffer.take(everything=False))
        return str(item["trace_id"])

    def log_signal(self, **fields: Any) -> None:
        """Buffer one signal (the fields of :class:`~prodloop.capture.SignalIn`)."""
        with self._buffer.lock:
            self._buffer.signals.append(_signal_item(fields))
            full = len(self._buffer.signals) >= self._buffer.batch_size
        if full:
            self._send(*self._buffer.take(everything=False))

    def flush(self) -> None:
        self._send(*self._buffer.take(everything=True))

    def send_traces(self, traces: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Send traces now, in one request; returns the server's answer."""
        return self._post("/api/v1/traces", {"traces": [_trace_item(t, {}) for t in traces]})

    def send_signals(self, signals: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Send signals now, in one request; returns the server's answer."""
        return self._post("/api/v1/signals", {"signals": [_jsonable(s) for s in signals]})

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._http.post(path, json=body)
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]

    def _send(self, traces: list[dict[str, Any]], signals: list[dict[str, Any]]) -> None:
        size = self._buffer.batch_size
        sent_traces = sent_signals = 0
        try:
            # Traces first, so that signals sent in the same flush find their trace.
            for sent_traces in range(0, len(traces), size):
                self._post("/api/v1/traces", {"traces": traces[sent_traces : sent_traces + size]})
            sent_traces = len(traces)
            for sent_signals in range(0, len(signals), size):
                self._post("/api/v1/signals", {"signals": signals[sent_signals : sent_signals + size]})
        except Exception as exc:
            self._buffer.restore(traces, signals, sent_traces, sent_signals, exc)
            raise

    # reading
    def traces(self, **filters: Any) -> dict[str, Any]:
        """One page of traces; filters as ``GET /api/v1/traces`` takes them."""
        response = self._http.get("/api/v1/traces", params=_params(**filters))
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]

    def iter_traces(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every matching trace, following the cursor page by page."""
        cursor = None
        while True:
            page = self.traces(**filters, cursor=cursor)
            yield from page["traces"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def trace(self, trace_id: str) -> dict[str, Any]:
        response = self._http.get(f"/api/v1/traces/{trace_id}")
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]

    def coverage(
        self, feature: str, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        response = self._http.get(
            f"/api/v1/features/{quote(feature, safe='')}/coverage", params=_params(since=since, until=until)
        )
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]


class AsyncClient:
    """The asyncio twin of :class:`Client`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        transport: httpx.AsyncBaseTransport | None = None,
        batch_size: int = 500,
        timeout: float = 30.0,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
            timeout=timeout,
        )
        self._buffer = _Buffer(batch_size)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        try:
            await self.flush()
        finally:
            await self._http.aclose()

    async def log_trace(self, trace: Mapping[str, Any] | None = None, **fields: Any) -> str:
        item = _trace_item(trace, fields)
        self._buffer.traces.append(item)
        if len(self._buffer.traces) >= self._buffer.batch_size:
            await self._send(*self._buffer.take(everything=False))
        return str(item["trace_id"])

    async def log_signal(self, **fields: Any) -> None:
        self._buffer.signals.append(_signal_item(fields))
        if len(self._buffer.signals) >= self._buffer.batch_size:
            await self._send(*self._buffer.take(everything=False))

    async def flush(self) -> None:
        await self._send(*self._buffer.take(everything=True))

    async def send_traces(self, traces: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return await self._post("/api/v1/traces", {"traces": [_trace_item(t, {}) for t in traces]})

    async def send_signals(self, signals: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return await self._post("/api/v1/signals", {"signals": [_jsonable(s) for s in signals]})

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._http.post(path, json=body)
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]

    async def _send(self, traces: list[dict[str, Any]], signals: list[dict[str, Any]]) -> None:
        size = self._buffer.batch_size
        sent_traces = sent_signals = 0
        try:
            for sent_traces in range(0, len(traces), size):
                await self._post("/api/v1/traces", {"traces": traces[sent_traces : sent_traces + size]})
            sent_traces = len(traces)
            for sent_signals in range(0, len(signals), size):
                await self._post("/api/v1/signals", {"signals": signals[sent_signals : sent_signals + size]})
        except Exception as exc:
            self._buffer.restore(traces, signals, sent_traces, sent_signals, exc)
            raise

    async def traces(self, **filters: Any) -> dict[str, Any]:
        response = await self._http.get("/api/v1/traces", params=_params(**filters))
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]

    async def iter_traces(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every matching trace, following the cursor page by page."""
        cursor = None
        while True:
            page = await self.traces(**filters, cursor=cursor)
            for trace in page["traces"]:
                yield trace
            cursor = page["next_cursor"]
            if not cursor:
                return

    async def trace(self, trace_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/api/v1/traces/{trace_id}")
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]

    async def coverage(
        self, feature: str, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        response = await self._http.get(
            f"/api/v1/features/{quote(feature, safe='')}/coverage", params=_params(since=since, until=until)
        )
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]
