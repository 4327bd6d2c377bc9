"""Reading traces back: every filter of GET /api/v1/traces, and keyset pagination that neither skips
nor repeats a trace, also among traces that started at the same instant."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.capture.support import assert_error, auth, trace_id


def post_traces(client: TestClient, key: str, traces: list[dict[str, Any]]) -> list[str]:
    response = client.post("/api/v1/traces", json={"traces": traces}, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["trace_ids"]  # type: ignore[no-any-return]


def page(client: TestClient, key: str, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/traces", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def listed(client: TestClient, key: str, **params: Any) -> list[str]:
    return [t["trace_id"] for t in page(client, key, limit=1000, **params)["traces"]]


@pytest.fixture
def catalogue(client: TestClient, admin_key: str) -> dict[str, str]:
    """Six traces that differ in one property each, named for what sets them apart."""
    traces = {
        "support-old": {
            "feature": "support",
            "release": "v1",
            "model": "gpt-4o",
            "start_time": "2024-01-01T09:00:00Z",
            "input": "Where is my refund?",
            "output": "It was issued yesterday.",
        },
        "support-new": {
            "feature": "support",
            "release": "v2",
            "model": "gpt-4o-mini",
            "start_time": "2024-01-03T09:00:00Z",
            "input": "Change my address",
            "output": "Done: the address is changed.",
        },
        "support-error": {
            "feature": "support",
            "release": "v2",
            "model": "gpt-4o-mini",
            "start_time": "2024-01-03T10:00:00Z",
            "status": "error",
            "input": "Cancel order 17",
            "output": None,
        },
        "support-span-error": {
            "feature": "support",
            "release": "v2",
            "model": "gpt-4o-mini",
            "start_time": "2024-01-03T11:00:00Z",
            "input": "Track parcel",
            "output": "On its way.",
            "spans": [{"name": "carrier api", "status": "error", "duration_ms": 30}],
        },
        "search": {
            "feature": "search",
            "release": "s1",
            "model": "claude-haiku",
            "start_time": "2024-01-02T09:00:00Z",
            "input": "REFUND policy",
            "output": "Refunds within 30 days.",
        },
        "discount": {
            "feature": "search",
            "release": "s1",
            "model": "claude-haiku",
            "start_time": "2024-01-02T10:00:00Z",
            "input": "Is there a 50% discount?",
            "output": "No.",
        },
    }
    ids = post_traces(
        client, admin_key, [{k: v for k, v in t.items() if v is not None} for t in traces.values()]
    )
    return dict(zip(traces, ids, strict=True))


def names(catalogue: dict[str, str], ids: list[str]) -> list[str]:
    by_id = {v: k for k, v in catalogue.items()}
    return [by_id[i] for i in ids]


def test_list_is_newest_first(client: TestClient, admin_key: str, catalogue: dict[str, str]) -> None:
    assert names(catalogue, listed(client, admin_key)) == [
        "support-span-error",
        "support-error",
        "support-new",
        "discount",
        "search",
        "support-old",
    ]


FILTERS: list[tuple[dict[str, str], set[str]]] = [
    ({"feature": "search"}, {"search", "discount"}),
    ({"feature": "nothing"}, set()),
    ({"release": "v2"}, {"support-new", "support-error", "support-span-error"}),
    ({"model": "gpt-4o"}, {"support-old"}),
    ({"model": "claude-haiku", "feature": "support"}, set()),
    ({"status": "error"}, {"support-error", "support-span-error"}),
    ({"status": "ok", "feature": "support"}, {"support-old", "support-new"}),
    (
        {"since": "2024-01-02T09:00:00Z"},
        {"search", "discount", "support-new", "support-error", "support-span-error"},
    ),
    ({"until": "2024-01-02T09:00:00Z"}, {"support-old"}),
    ({"since": "2024-01-02T00:00:00Z", "until": "2024-01-03T00:00:00Z"}, {"search", "discount"}),
    ({"since": "2024-01-02T10:00:00+01:00", "until": "2024-01-02T11:00:00+01:00"}, {"search"}),
    (
        {"since": "2024-01-02T09:00:00"},
        {"search", "discount", "support-new", "support-error", "support-span-error"},
    ),
    ({"q": "refund"}, {"support-old", "search"}),
    ({"q": "ADDRESS IS"}, {"support-new"}),
    ({"q": "within 30"}, {"search"}),
    ({"q": "refund", "feature": "search", "release": "s1", "status": "ok"}, {"search"}),
]


def test_filters(
    client: TestClient, admin_key: str, catalogue: dict[str, str], subtests: pytest.Subtests
) -> None:
    for params, expected in FILTERS:
        with subtests.test(**params):
            assert set(names(catalogue, listed(client, admin_key, **params))) == expected


def test_search_text_is_matched_literally(
    client: TestClient, admin_key: str, catalogue: dict[str, str]
) -> None:
    """`%` and `_` in what a user types are characters to find, not wildcards."""
    extra = post_traces(client, admin_key, [{"input": "Is there a 500 discount?"}, {"input": "file a_b.txt"}])
    assert set(names(catalogue | {"500": extra[0], "a_b": extra[1]}, listed(client, admin_key, q="50%"))) == {
        "discount"
    }
    assert listed(client, admin_key, q="50% d") == [catalogue["discount"]]
    assert listed(client, admin_key, q="a_b") == [extra[1]]
    post_traces(client, admin_key, [{"input": "axb"}])
    assert listed(client, admin_key, q="a_b") == [extra[1]]


def test_listed_trace_summary_fields(client: TestClient, admin_key: str, catalogue: dict[str, str]) -> None:
    [trace] = page(
        client, admin_key, feature="support", status="error", release="v2", until="2024-01-03T11:00:00Z"
    )["traces"]
    assert trace["trace_id"] == catalogue["support-error"]
    assert trace["status"] == "error" and trace["error_count"] == 1
    assert trace["input"] == "Cancel order 17" and trace["output"] is None
    assert trace["start_time"] == "2024-01-03T10:00:00Z"
    assert trace["signals"] == {}


def _tied_traces(client: TestClient, key: str) -> list[tuple[str, str]]:
    """120 traces; groups of 1 to 5 of them share a start instant. Returns (start, id) newest first."""
    traces = []
    second = 0
    while len(traces) < 120:
        group = 1 + second % 5
        for _ in range(min(group, 120 - len(traces))):
            start = f"2024-02-01T08:{second // 60:02d}:{second % 60:02d}.123456Z"
            traces.append(
                {"trace_id": trace_id(), "start_time": start, "feature": "tied" if second % 2 else "odd"}
            )
        second += 1
    post_traces(client, key, traces)
    return sorted(((t["start_time"], t["trace_id"]) for t in traces), reverse=True)


def test_pagination_returns_every_trace_once_in_order(
    client: TestClient, admin_key: str, subtests: pytest.Subtests
) -> None:
    expected = [tid for _, tid in _tied_traces(client, admin_key)]
    for limit in (1, 7, 50):
        with subtests.test(limit=limit):
            seen: list[str] = []
            cursor = None
            pages = 0
            while True:
                params: dict[str, Any] = {"limit": limit}
                if cursor:
                    params["cursor"] = cursor
                body = page(client, admin_key, **params)
                pages += 1
                assert len(body["traces"]) <= limit
                seen.extend(t["trace_id"] for t in body["traces"])
                cursor = body["next_cursor"]
                if cursor is None:
                    break
                assert pages < 200
            assert seen == expected
            assert pages == -(-120 // limit)


def test_pagination_keeps_the_filters(client: TestClient, admin_key: str) -> None:
    expected = _tied_traces(client, admin_key)
    tied = set(listed(client, admin_key, feature="tied"))
    first = page(client, admin_key, feature="tied", limit=9)
    seen = [t["trace_id"] for t in first["traces"]]
    cursor = first["next_cursor"]
    while cursor:
        body = page(client, admin_key, feature="tied", limit=9, cursor=cursor)
        seen.extend(t["trace_id"] for t in body["traces"])
        cursor = body["next_cursor"]
    assert seen == [tid for _, tid in expected if tid in tied]
    assert 0 < len(tied) < 120


def test_last_page_has_no_cursor(client: TestClient, admin_key: str, catalogue: dict[str, str]) -> None:
    assert page(client, admin_key, limit=6)["next_cursor"] is None
    first = page(client, admin_key, limit=5)
    last = page(client, admin_key, limit=5, cursor=first["next_cursor"])
    assert names(catalogue, [t["trace_id"] for t in last["traces"]]) == ["support-old"]
    assert last["next_cursor"] is None


BAD_CURSORS = {
    "not-base64": "not a cursor!",
    "no-colon": base64.urlsafe_b64encode(b"no-colon-here").decode(),
    "not-a-number": base64.urlsafe_b64encode(b"yesterday:abc").decode(),
    "not-utf8": base64.urlsafe_b64encode(b"\xff\xfe:\x00").decode(),
}


def test_bad_cursor_is_a_400_in_the_error_shape(
    client: TestClient, admin_key: str, subtests: pytest.Subtests
) -> None:
    for case, cursor in BAD_CURSORS.items():
        with subtests.test(case):
            response = client.get("/api/v1/traces", params={"cursor": cursor}, headers=auth(admin_key))
            error = assert_error(response, 400, "invalid_request")
            assert "cursor" in error["message"]


def test_bad_query_parameters_are_422_in_the_error_shape(client: TestClient, admin_key: str) -> None:
    for params in ({"limit": 0}, {"limit": 1001}, {"status": "broken"}, {"since": "last tuesday"}):
        response = client.get("/api/v1/traces", params=params, headers=auth(admin_key))
        error = assert_error(response, 422, "validation_failed")
        assert error["detail"][0]["loc"].startswith("query.")
