"""Requests that prodloop must refuse: each gets the right status, the one error shape, and leaves the
store exactly as it was."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from prodloop.server import create_api_key, create_app
from prodloop.settings import Settings
from tests.capture.support import (
    JSON,
    MS,
    NOTHING,
    PROTOBUF,
    T0,
    assert_error,
    auth,
    otlp_request,
    otlp_span,
    row_counts,
    span_id,
    trace_id,
)

LIMIT = 2048


def _valid_request(padding: int = 0) -> bytes:
    attributes = {"note": "x" * padding} if padding else {}
    spans = [otlp_span(trace_id(), span_id(), "root", T0, T0 + MS, attributes=attributes)]
    return otlp_request(spans).SerializeToString()


@pytest.fixture
def small_client(engine: sa.Engine, tmp_path: Path) -> Iterator[TestClient]:
    """A server that accepts request bodies of at most 2 KiB."""
    app = create_app(engine, Settings(home=tmp_path, max_request_bytes=LIMIT))
    with TestClient(app) as test_client:
        yield test_client


# OTLP bodies that cannot be read


UNREADABLE = {
    "garbage-protobuf": (b"this is not protobuf \xff\xfe", PROTOBUF, 400, "invalid_request"),
    "invalid-json": (b'{"resourceSpans": [', JSON, 400, "invalid_request"),
    "json-not-an-object": (b"[1, 2, 3]", JSON, 400, "invalid_request"),
    "json-non-hex-id": (
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
        JSON,
        400,
        "invalid_request",
    ),
    "text-plain": (_valid_request(), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    "no-content-type": (_valid_request(), {}, 415, "unsupported_media_type"),
    "unknown-encoding": (
        _valid_request(),
        {**PROTOBUF, "Content-Encoding": "br"},
        415,
        "unsupported_media_type",
    ),
    "bad-gzip": (
        b"\x1f\x8b\x08\x00 not deflate data",
        {**PROTOBUF, "Content-Encoding": "gzip"},
        400,
        "invalid_request",
    ),
    "truncated-gzip": (
        gzip.compress(_valid_request())[:-12],
        {**PROTOBUF, "Content-Encoding": "gzip"},
        400,
        "invalid_request",
    ),
}


def test_unreadable_otlp_bodies_are_refused_and_nothing_is_stored(
    client: TestClient, admin_key: str, engine: sa.Engine, subtests: pytest.Subtests
) -> None:
    for case, (body, headers, status, code) in UNREADABLE.items():
        with subtests.test(case):
            response = client.post("/v1/traces", content=body, headers={**auth(admin_key), **headers})
            assert_error(response, status, code)
            assert row_counts(engine) == NOTHING


def test_truncated_protobuf_is_refused(client: TestClient, admin_key: str, engine: sa.Engine) -> None:
    spans = [otlp_span(trace_id(), span_id(), f"span {i}", T0, T0 + MS) for i in range(5)]
    whole = otlp_request(spans).SerializeToString()
    response = client.post(
        "/v1/traces", content=whole[: len(whole) // 2], headers={**auth(admin_key), **PROTOBUF}
    )
    error = assert_error(response, 400, "invalid_request")
    assert "protobuf" in error["message"]
    assert row_counts(engine) == NOTHING


def test_body_over_the_limit_is_refused_by_its_content_length(
    small_client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    fits = small_client.post("/v1/traces", content=_valid_request(), headers={**auth(admin_key), **PROTOBUF})
    assert fits.status_code == 200
    before = row_counts(engine)

    body = _valid_request(padding=3 * LIMIT)
    response = small_client.post("/v1/traces", content=body, headers={**auth(admin_key), **PROTOBUF})
    error = assert_error(response, 413, "payload_too_large")
    assert error["detail"]["limit"] == LIMIT and error["detail"]["size"] == len(body)
    assert "PRODLOOP_MAX_REQUEST_BYTES" in error["message"]
    assert row_counts(engine) == before


def test_streamed_body_over_the_limit_is_refused(
    small_client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    body = _valid_request(padding=3 * LIMIT)

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for i in range(0, len(body), 512):
            yield body[i : i + 512]

    response = small_client.post("/v1/traces", content=chunks(), headers={**auth(admin_key), **PROTOBUF})
    assert_error(response, 413, "payload_too_large")
    assert row_counts(engine) == NOTHING


def test_gzip_body_that_inflates_beyond_the_limit_is_refused(
    small_client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    body = gzip.compress(_valid_request(padding=20 * LIMIT))
    assert len(body) < LIMIT  # small on the wire: only the decompressed size is over the limit
    headers = {**auth(admin_key), **PROTOBUF, "Content-Encoding": "gzip"}
    response = small_client.post("/v1/traces", content=body, headers=headers)
    assert_error(response, 413, "payload_too_large")
    assert row_counts(engine) == NOTHING


def test_native_api_body_over_the_limit_is_refused(
    small_client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    body = json.dumps({"traces": [{"input": "x" * LIMIT}]})
    response = small_client.post("/api/v1/traces", content=body, headers={**auth(admin_key), **JSON})
    assert_error(response, 413, "payload_too_large")
    assert row_counts(engine) == NOTHING


# Keys and roles


NO_KEY = {
    "missing": {},
    "unknown": {"Authorization": "Bearer pl_not-a-key-prodloop-issued"},
    "not-bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
}
WRITES = {
    "otlp": ("/v1/traces", _valid_request(), PROTOBUF),
    "native-traces": ("/api/v1/traces", json.dumps({"traces": [{"input": "hi"}]}).encode(), JSON),
    "signals": (
        "/api/v1/signals",
        json.dumps({"signals": [{"join_key": "k", "name": "thumbs_up"}]}).encode(),
        JSON,
    ),
}


def test_requests_without_a_known_key_get_401(
    client: TestClient, engine: sa.Engine, subtests: pytest.Subtests
) -> None:
    for who, headers in NO_KEY.items():
        for what, (path, body, content_type) in WRITES.items():
            with subtests.test(f"{who} key, {what}"):
                response = client.post(path, content=body, headers={**headers, **content_type})
                error = assert_error(response, 401, "unauthorized")
                assert "key" in error["message"]
        with subtests.test(f"{who} key, list"):
            assert_error(client.get("/api/v1/traces", headers=headers), 401, "unauthorized")
    assert row_counts(engine) == NOTHING


def _stored_trace(client: TestClient, key: str) -> str:
    response = client.post(
        "/api/v1/traces", json={"traces": [{"input": "q", "output": "a"}]}, headers=auth(key)
    )
    assert response.status_code == 200
    return str(response.json()["trace_ids"][0])


def test_another_projects_key_cannot_see_a_trace(
    client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    trace = _stored_trace(client, admin_key)
    before = row_counts(engine)
    other = create_api_key(engine, "other", "admin")

    error = assert_error(client.get(f"/api/v1/traces/{trace}", headers=auth(other)), 404, "not_found")
    assert trace in error["message"]
    assert client.get("/api/v1/traces", headers=auth(other)).json()["traces"] == []
    assert client.get(f"/api/v1/traces/{trace}", headers=auth(admin_key)).status_code == 200
    assert row_counts(engine) == before


def test_ingest_key_cannot_read(
    client: TestClient, admin_key: str, engine: sa.Engine, subtests: pytest.Subtests
) -> None:
    trace = _stored_trace(client, admin_key)
    ingest = create_api_key(engine, "default", "ingest")
    for path in ("/api/v1/traces", f"/api/v1/traces/{trace}", "/api/v1/features/x/coverage"):
        with subtests.test(path):
            error = assert_error(client.get(path, headers=auth(ingest)), 403, "forbidden")
            assert "ingest" in error["message"]
            assert error["detail"] == {"role": "ingest", "needs": "read"}


def test_viewer_key_cannot_write(client: TestClient, engine: sa.Engine, subtests: pytest.Subtests) -> None:
    viewer = create_api_key(engine, "default", "viewer")
    for what, (path, body, content_type) in WRITES.items():
        with subtests.test(what):
            response = client.post(path, content=body, headers={**auth(viewer), **content_type})
            error = assert_error(response, 403, "forbidden")
            assert error["detail"] == {"role": "viewer", "needs": "write:traces"}
    assert row_counts(engine) == NOTHING


# The native API: a batch is checked whole, and one bad item stores nothing


def _post(client: TestClient, key: str, path: str, document: Any) -> Any:
    return client.post(path, content=json.dumps(document), headers={**auth(key), **JSON})


def test_native_trace_batch_with_one_invalid_trace_stores_nothing(
    client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    batch = {
        "traces": [
            {"feature": "support", "input": "fine", "output": "fine"},
            {"feature": "support", "trace_id": "not-a-trace-id", "input": "bad"},
            {"feature": "support", "spans": [{"name": "retrieve", "duration_ms": 12}]},
        ]
    }
    error = assert_error(_post(client, admin_key, "/api/v1/traces", batch), 422, "validation_failed")
    assert error["detail"] == [
        {"loc": "traces.1.trace_id", "message": error["detail"][0]["message"]},
    ]
    assert "32 hex characters" in error["detail"][0]["message"]
    assert error["message"].startswith("traces.1.trace_id: ")
    assert row_counts(engine) == NOTHING


def test_native_trace_batch_names_every_bad_field(
    client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    batch = {
        "traces": [
            {"input": "fine"},
            {"spans": [{"name": ""}], "input_tokens": -1},
            {"start_time": "2024-01-02T00:00:00Z", "end_time": "2024-01-01T00:00:00Z"},
            {"surprise": 1},
        ]
    }
    error = assert_error(_post(client, admin_key, "/api/v1/traces", batch), 422, "validation_failed")
    locs = {problem["loc"] for problem in error["detail"]}
    assert {"traces.1.spans.0.name", "traces.1.input_tokens", "traces.2", "traces.3.surprise"} <= locs
    assert all(set(problem) == {"loc", "message"} for problem in error["detail"])
    assert "more problems" in error["message"]
    assert row_counts(engine) == NOTHING


def test_empty_and_non_json_native_batches(client: TestClient, admin_key: str, engine: sa.Engine) -> None:
    error = assert_error(_post(client, admin_key, "/api/v1/traces", {"traces": []}), 422, "validation_failed")
    assert error["detail"][0]["loc"] == "traces"
    response = client.post("/api/v1/traces", content=b"{not json", headers={**auth(admin_key), **JSON})
    assert_error(response, 400, "invalid_request")
    assert row_counts(engine) == NOTHING


BAD_SIGNALS = {
    "rating-6": ({"trace_id": "ab" * 16, "kind": "explicit", "name": "rating", "value": 6}, "rating value 6"),
    "unknown-explicit-name": (
        {"trace_id": "ab" * 16, "kind": "explicit", "name": "stars", "value": 4},
        "thumbs, rating, correction",
    ),
    "thumbs-meh": (
        {"trace_id": "ab" * 16, "kind": "explicit", "name": "thumbs", "value": "meh"},
        "'up' or 'down'",
    ),
    "no-trace": ({"kind": "explicit", "name": "thumbs_up"}, "needs trace_id or join_key"),
    "edit-without-text": ({"join_key": "k", "kind": "implicit", "name": "edit"}, "needs `text`"),
    "outcome-without-value": ({"join_key": "k", "kind": "outcome", "name": "resolved"}, "needs a value"),
    "unknown-kind": ({"join_key": "k", "kind": "feeling", "name": "happy", "value": 1}, "explicit"),
}


def test_invalid_signal_is_refused_with_a_clear_message_and_nothing_is_stored(
    client: TestClient, admin_key: str, engine: sa.Engine, subtests: pytest.Subtests
) -> None:
    good = {"join_key": "ORDER-1", "kind": "outcome", "name": "refunded", "value": True}
    for case, (bad, says) in BAD_SIGNALS.items():
        with subtests.test(case):
            response = _post(client, admin_key, "/api/v1/signals", {"signals": [good, bad]})
            error = assert_error(response, 422, "validation_failed")
            assert error["detail"][0]["loc"].startswith("signals.1")
            assert says in error["detail"][0]["message"]
            assert says in error["message"]
    assert row_counts(engine) == NOTHING


def test_otlp_span_after_the_year_2262_is_rejected_not_a_crash(
    client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "ab" * 16,
                                "spanId": "cd" * 8,
                                "name": "far",
                                "startTimeUnixNano": str(2**64 - 1),
                                "endTimeUnixNano": str(2**64 - 1),
                            },
                            {
                                "traceId": "ab" * 16,
                                "spanId": "ef" * 8,
                                "name": "ok",
                                "startTimeUnixNano": "1",
                            },
                        ]
                    }
                ]
            }
        ]
    }
    response = client.post(
        "/v1/traces", json=body, headers={**auth(admin_key), "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "2262" in response.json()["partialSuccess"]["errorMessage"]
    assert row_counts(engine)["spans"] == 1


def test_concatenated_gzip_members_are_read_whole(
    client: TestClient, admin_key: str, engine: sa.Engine
) -> None:
    text = json.dumps({"traces": [{"feature": "f", "input": "q", "output": "a"}]}).encode()
    body = gzip.compress(text[:20]) + gzip.compress(text[20:])
    headers = {**auth(admin_key), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = client.post("/api/v1/traces", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert row_counts(engine)["traces"] == 1
