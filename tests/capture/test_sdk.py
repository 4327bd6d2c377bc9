"""The native Python SDK: batching, flushing on close, cursor-following reads, and errors that carry the
server's message; the sync client over real HTTP, the async one in-process."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

import prodloop
from prodloop.errors import Forbidden, InvalidRequest, NotFound, ProdloopError, Unauthorized, ValidationFailed
from prodloop.server import create_api_key
from tests.capture.support import row_counts, trace_id


class CountingTransport(httpx.HTTPTransport):
    """Real HTTP, remembering each request's method, path and batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, int | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(_describe(request))
        return super().handle_request(request)


class CountingASGITransport(httpx.ASGITransport):
    def __init__(self, app: Any) -> None:
        super().__init__(app=app)
        self.sent: list[tuple[str, str, int | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(_describe(request))
        return await super().handle_async_request(request)


def _describe(request: httpx.Request) -> tuple[str, str, int | None]:
    size = None
    if request.method == "POST":
        document = json.loads(request.content)
        size = len(document.get("traces") or document.get("signals") or [])
    return request.method, request.url.path, size


def _posts(sent: list[tuple[str, str, int | None]]) -> list[tuple[str, int | None]]:
    return [(path, size) for method, path, size in sent if method == "POST"]


def test_logging_batches_and_close_flushes(live_server: Any, admin_key: str, engine: sa.Engine) -> None:
    transport = CountingTransport()
    with prodloop.Client(live_server.url, admin_key, transport=transport, batch_size=500) as client:
        ids = [
            client.log_trace(feature="support", input=f"q{i}", output=f"a{i}", model="m") for i in range(1050)
        ]
        # Full batches go out while logging, without waiting for close.
        assert _posts(transport.sent) == [("/api/v1/traces", 500), ("/api/v1/traces", 500)]
        client.log_signal(trace_id=ids[0], name="thumbs_up")
        client.log_signal(join_key="not-yet", kind="outcome", name="resolved", value=True)
        assert row_counts(engine) == {"spans": 1000, "traces": 1000, "signals": 0}
    assert _posts(transport.sent) == [
        ("/api/v1/traces", 500),
        ("/api/v1/traces", 500),
        ("/api/v1/traces", 50),
        ("/api/v1/signals", 2),
    ]
    assert row_counts(engine) == {"spans": 1050, "traces": 1050, "signals": 2}
    assert len(set(ids)) == 1050


def test_signals_batch_too(live_server: Any, admin_key: str) -> None:
    transport = CountingTransport()
    client = prodloop.Client(live_server.url, admin_key, transport=transport, batch_size=3)
    for i in range(7):
        client.log_signal(join_key=f"K-{i}", kind="implicit", name="copy")
    assert _posts(transport.sent) == [("/api/v1/signals", 3), ("/api/v1/signals", 3)]
    client.close()
    assert _posts(transport.sent)[-1] == ("/api/v1/signals", 1)


def test_flush_sends_traces_before_signals_so_they_join(live_server: Any, admin_key: str) -> None:
    with prodloop.Client(live_server.url, admin_key) as client:
        trace = client.log_trace(feature="support", join_key="ORDER-9", output="ok")
        client.log_signal(join_key="ORDER-9", kind="outcome", name="refunded", value=True)
        client.log_signal(trace_id=trace, name="thumbs_down")
        client.flush()
        got = client.trace(trace)
    assert sorted(s["name"] for s in got["signals"]) == ["refunded", "thumbs"]


def test_log_trace_with_datetimes_and_nested_spans(live_server: Any, admin_key: str) -> None:
    start = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    with prodloop.Client(live_server.url, admin_key) as client:
        trace = client.log_trace(
            feature="rag",
            start_time=start,
            end_time=start + timedelta(seconds=2),
            input="What is the refund window?",
            output="30 days.",
            spans=[
                {"name": "retrieve", "start_time": start, "end_time": start + timedelta(milliseconds=300)},
                {"name": "chat", "start_time": start + timedelta(milliseconds=300), "model": "gpt-4o"},
            ],
        )
        client.flush()
        got = client.trace(trace)
    assert got["start_time"] == "2024-06-01T12:00:00Z" and got["duration_ms"] == 2000.0
    [root] = got["spans"]
    assert [c["name"] for c in root["children"]] == ["retrieve", "chat"]
    assert root["children"][0]["duration_ms"] == 300.0


def test_resending_a_native_trace_does_not_store_it_twice(
    live_server: Any, admin_key: str, engine: sa.Engine
) -> None:
    """A retried request (a timeout after the server committed) sends the same traces again."""
    trace = {
        "trace_id": trace_id(),
        "feature": "support",
        "input": "hi",
        "output": "hello",
        "model": "gpt-4o",
        "input_tokens": 10,
        "output_tokens": 3,
        "spans": [{"name": "retrieve", "duration_ms": 5}],
    }
    with prodloop.Client(live_server.url, admin_key) as client:
        first = client.send_traces([trace])
        second = client.send_traces([trace])
        got = client.trace(trace["trace_id"])
    assert first["spans_stored"] == 2
    assert second["spans_stored"] == 0
    assert got["span_count"] == 2
    assert (got["input_tokens"], got["output_tokens"]) == (10, 3)
    assert row_counts(engine)["spans"] == 2


def test_iter_traces_follows_the_cursor(live_server: Any, admin_key: str) -> None:
    start = datetime(2024, 6, 1, tzinfo=UTC)
    transport = CountingTransport()
    with prodloop.Client(live_server.url, admin_key, transport=transport) as client:
        client.send_traces(
            [
                {
                    "feature": "faq" if i % 4 else "other",
                    "start_time": (start + timedelta(seconds=i // 3)).isoformat(),
                }
                for i in range(120)
            ]
        )
        traces = list(client.iter_traces(feature="faq", limit=25))
        everything = list(client.iter_traces(limit=1000))
    assert len(traces) == 90 and len({t["trace_id"] for t in traces}) == 90
    assert all(t["feature"] == "faq" for t in traces)
    starts = [t["start_time"] for t in traces]
    assert starts == sorted(starts, reverse=True)
    assert len(everything) == 120
    gets = [path for method, path, _ in transport.sent if method == "GET"]
    assert gets == ["/api/v1/traces"] * 5


def test_errors_raise_the_matching_exception_with_the_servers_message(
    live_server: Any, admin_key: str, engine: sa.Engine
) -> None:
    with prodloop.Client(live_server.url, "pl_unknown") as stranger, pytest.raises(Unauthorized) as caught:
        stranger.traces()
    assert caught.value.status == 401 and "not known" in caught.value.message

    viewer = prodloop.Client(live_server.url, create_api_key(engine, "default", "viewer"))
    with pytest.raises(Forbidden) as forbidden:
        viewer.send_traces([{"input": "x"}])
    assert forbidden.value.status == 403 and forbidden.value.detail == {
        "role": "viewer",
        "needs": "write:traces",
    }
    viewer.close()

    with prodloop.Client(live_server.url, admin_key) as client:
        with pytest.raises(NotFound) as missing:
            client.trace("ab" * 16)
        assert "not found" in missing.value.message

        with pytest.raises(ValidationFailed) as invalid:
            client.send_signals([{"trace_id": "ab" * 16, "kind": "explicit", "name": "rating", "value": 6}])
        assert "rating value 6" in invalid.value.message
        assert invalid.value.detail[0]["loc"] == "signals.0"

        with pytest.raises(InvalidRequest) as bad_cursor:
            client.traces(cursor="garbage!")
        assert "cursor" in bad_cursor.value.message

        # A bad item fails the call that logs it, before it can spoil a batch of good ones.
        with pytest.raises(ValidationFailed, match="trace_id or join_key"):
            client.log_signal(kind="explicit", name="stars")
        client.flush()
    assert issubclass(ValidationFailed, ProdloopError)


def test_async_client_batches_and_flushes_on_exit(app: Any, admin_key: str, engine: sa.Engine) -> None:
    transport = CountingASGITransport(app)

    async def scenario() -> list[str]:
        async with prodloop.AsyncClient(
            "http://prodloop.test", admin_key, transport=transport, batch_size=4
        ) as client:
            ids = [await client.log_trace(feature="async", output=f"a{i}") for i in range(9)]
            await client.log_signal(trace_id=ids[0], name="thumbs_up")
            assert _posts(transport.sent) == [("/api/v1/traces", 4), ("/api/v1/traces", 4)]
        return ids

    ids = asyncio.run(scenario())
    assert _posts(transport.sent)[2:] == [("/api/v1/traces", 1), ("/api/v1/signals", 1)]
    assert row_counts(engine) == {"spans": 9, "traces": 9, "signals": 1}

    async def read() -> dict[str, Any]:
        async with prodloop.AsyncClient("http://prodloop.test", admin_key, transport=transport) as client:
            return await client.trace(ids[0])

    assert asyncio.run(read())["signals"][0]["value"] == "up"


def test_async_client_reads_and_raises(app: Any, admin_key: str) -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with prodloop.AsyncClient("http://prodloop.test", admin_key, transport=transport) as client:
            await client.send_traces([{"feature": "faq", "output": str(i)} for i in range(3)])
            page = await client.traces(feature="faq", limit=2)
            assert len(page["traces"]) == 2 and page["next_cursor"]
            numbers = await client.coverage("faq")
            assert numbers["traces"] == 3
            with pytest.raises(NotFound):
                await client.trace("cd" * 16)
        async with prodloop.AsyncClient("http://prodloop.test", "pl_nobody", transport=transport) as stranger:
            with pytest.raises(Unauthorized):
                await stranger.traces()

    asyncio.run(scenario())


def test_async_client_iter_traces_like_the_sync_client(app: Any, admin_key: str) -> None:
    """AsyncClient is documented as the asyncio twin of Client, which has iter_traces."""

    async def scenario() -> list[dict[str, Any]]:
        transport = httpx.ASGITransport(app=app)
        async with prodloop.AsyncClient("http://prodloop.test", admin_key, transport=transport) as client:
            await client.send_traces([{"feature": "faq"} for _ in range(5)])
            return [trace async for trace in client.iter_traces(feature="faq", limit=2)]  # type: ignore[attr-defined]

    assert len(asyncio.run(scenario())) == 5


def test_a_refused_batch_does_not_take_the_rest_of_the_buffer_with_it(
    engine: sa.Engine, admin_key: str, tmp_path: Any
) -> None:
    """The server refuses a batch (here: larger than its batch limit); the items buffered behind it
    are still sent by the next flush, and only the refused batch is dropped."""
    from prodloop.server import create_app
    from prodloop.settings import Settings
    from tests.conftest import LiveServer

    app = create_app(engine, Settings(home=tmp_path, max_batch_items=1))
    with LiveServer(app) as server, prodloop.Client(server.url, admin_key, batch_size=2) as client:
        client.log_trace(trace_id="a" * 32, feature="f", input="q0", output="a")
        with pytest.raises(ValidationFailed, match="larger than the limit"):
            # The second trace fills a batch of 2, which is sent at once and refused.
            client.log_trace(trace_id="b" * 32, feature="f", input="q1", output="a")
        client.log_trace(trace_id="c" * 32, feature="f", input="q2", output="a")
        client.log_signal(trace_id="c" * 32, kind="explicit", name="thumbs", value="up")
        client.flush()  # one trace and one signal: within the limit
        stored = {t["trace_id"] for t in client.traces(feature="f")["traces"]}
        assert stored == {"c" * 32}
        assert client.trace("c" * 32)["signals"][0]["name"] == "thumbs"


def test_coverage_of_a_feature_whose_name_needs_quoting(live_server: Any, admin_key: str) -> None:
    with prodloop.Client(live_server.url, admin_key) as client:
        client.send_traces([{"feature": "support?chat#1", "input": "q", "output": "a"}])
        client.send_traces([{"feature": "support", "input": "q", "output": "a"}])
        assert client.coverage("support?chat#1")["traces"] == 1
        assert client.coverage("support")["traces"] == 1
