"""Feedback and outcome signals through the HTTP API: joined to their trace whatever the order of
arrival, stored once, edit distances, and the coverage numbers a team reads."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.capture.support import (
    MS,
    PROTOBUF,
    T0,
    auth,
    chat_attributes,
    otlp_request,
    otlp_span,
    row_counts,
    span_id,
    trace_id,
)


def post_traces(client: TestClient, key: str, traces: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/api/v1/traces", json={"traces": traces}, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def post_signals(client: TestClient, key: str, signals: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/api/v1/signals", json={"signals": signals}, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def get_trace(client: TestClient, key: str, trace: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/traces/{trace}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def listed(client: TestClient, key: str, **params: Any) -> set[str]:
    response = client.get("/api/v1/traces", params={"limit": 1000, **params}, headers=auth(key))
    assert response.status_code == 200, response.text
    return {t["trace_id"] for t in response.json()["traces"]}


def coverage(client: TestClient, key: str, feature: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/features/{feature}/coverage", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_signal_that_arrives_before_its_trace_is_joined_by_join_key(
    client: TestClient, admin_key: str
) -> None:
    refunded = {"join_key": "ORDER-1", "kind": "outcome", "name": "refunded", "value": True}
    assert post_signals(client, admin_key, [refunded]) == {
        "accepted": 1,
        "duplicates": 0,
        "joined": 0,
        "waiting": 1,
    }
    assert coverage(client, admin_key, "support")["signals_without_trace"] == 1

    [trace] = post_traces(client, admin_key, [{"feature": "support", "join_key": "ORDER-1", "output": "ok"}])[
        "trace_ids"
    ]
    [signal] = get_trace(client, admin_key, trace)["signals"]
    assert signal["trace_id"] == trace and signal["name"] == "refunded" and signal["value"] is True
    assert listed(client, admin_key, has_signal="true") == {trace}
    numbers = coverage(client, admin_key, "support")
    assert numbers["with_outcome"] == 1 and numbers["signals_without_trace"] == 0


def test_signal_that_arrives_before_its_trace_is_joined_by_trace_id(
    client: TestClient, admin_key: str
) -> None:
    trace = trace_id()
    thumbs = {"trace_id": trace.upper(), "kind": "explicit", "name": "thumbs", "value": "down"}
    assert post_signals(client, admin_key, [thumbs])["waiting"] == 1
    assert listed(client, admin_key, has_signal="true") == set()

    post_traces(client, admin_key, [{"trace_id": trace, "feature": "support", "output": "ok"}])
    [signal] = get_trace(client, admin_key, trace)["signals"]
    assert signal["trace_id"] == trace and signal["value"] == "down"
    assert listed(client, admin_key, signal="thumbs") == {trace}
    assert coverage(client, admin_key, "support")["with_explicit"] == 1


def test_outcome_days_after_the_trace_is_joined_at_once(client: TestClient, admin_key: str) -> None:
    [trace] = post_traces(
        client,
        admin_key,
        [
            {
                "feature": "support",
                "join_key": "CASE-77",
                "start_time": "2024-03-01T10:00:00Z",
                "output": "sent",
            }
        ],
    )["trace_ids"]
    churned = {
        "join_key": "CASE-77",
        "kind": "outcome",
        "name": "churned",
        "value": False,
        "timestamp": "2024-03-05T09:30:00Z",
        "metadata": {"source": "billing"},
    }
    assert post_signals(client, admin_key, [churned]) == {
        "accepted": 1,
        "duplicates": 0,
        "joined": 1,
        "waiting": 0,
    }
    [signal] = get_trace(client, admin_key, trace)["signals"]
    assert signal["timestamp"] == "2024-03-05T09:30:00Z"
    assert signal["value"] is False and signal["metadata"] == {"source": "billing"}
    assert signal["received_at"] > signal["timestamp"]


def test_a_signal_id_is_stored_once(client: TestClient, admin_key: str, engine: sa.Engine) -> None:
    [trace] = post_traces(client, admin_key, [{"feature": "support", "output": "ok"}])["trace_ids"]
    batch = [
        {"id": "sig-1", "trace_id": trace, "kind": "implicit", "name": "copy"},
        {"id": "sig-1", "trace_id": trace, "kind": "implicit", "name": "copy"},
        {"id": "sig-2", "trace_id": trace, "kind": "explicit", "name": "rating", "value": 4},
        {"id": "sig-3", "join_key": "LATER", "kind": "outcome", "name": "resolved", "value": True},
    ]
    assert post_signals(client, admin_key, batch) == {
        "accepted": 3,
        "duplicates": 1,
        "joined": 2,
        "waiting": 1,
    }
    # The client retries the whole batch after a timeout; then the late trace arrives; then another retry.
    assert post_signals(client, admin_key, batch) == {
        "accepted": 0,
        "duplicates": 4,
        "joined": 0,
        "waiting": 0,
    }
    post_traces(client, admin_key, [{"feature": "support", "join_key": "LATER", "output": "ok"}])
    assert post_signals(client, admin_key, batch[2:])["accepted"] == 0

    assert len(get_trace(client, admin_key, trace)["signals"]) == 2
    assert row_counts(engine)["signals"] == 3
    numbers = coverage(client, admin_key, "support")
    assert [(s["name"], s["signals"]) for s in numbers["by_signal"]] == [
        ("rating", 1),
        ("copy", 1),
        ("resolved", 1),
    ]


# kitten -> sitting: substitute k/s, substitute e/i, insert g (the textbook Levenshtein example).
OUTPUT = "The kitten sat on the mat."
EDITED = "The sitting sat on the mat."
DISTANCE = 3


@pytest.mark.parametrize("when", ["after-trace", "before-by-join-key", "before-by-trace-id"])
def test_edit_signal_gets_the_edit_distance_to_the_trace_output(
    client: TestClient, admin_key: str, when: str
) -> None:
    trace = trace_id()
    edit = {"kind": "implicit", "name": "edit", "text": EDITED}
    edit |= {"trace_id": trace} if when == "before-by-trace-id" else {"join_key": "DOC-5"}
    if when != "after-trace":
        post_signals(client, admin_key, [edit])
    post_traces(
        client, admin_key, [{"trace_id": trace, "join_key": "DOC-5", "input": "Draft", "output": OUTPUT}]
    )
    if when == "after-trace":
        post_signals(client, admin_key, [edit])

    [signal] = get_trace(client, admin_key, trace)["signals"]
    assert signal["name"] == "edit" and signal["text"] == EDITED
    assert signal["edit_distance"] == DISTANCE


def test_edit_distance_follows_the_trace_output_when_the_root_span_arrives_later(
    client: TestClient, admin_key: str
) -> None:
    """The exporter sends the LLM span first and the root span in a later batch; an edit that comes
    in between must end up measured against the output the trace finally shows."""
    trace, root, chat = trace_id(), span_id(), span_id()
    llm = otlp_span(
        trace, chat, "chat", T0 + MS, T0 + 2 * MS, root, chat_attributes("gpt-4o", "q", "kitten", 1, 1)
    )
    response = client.post(
        "/v1/traces", content=otlp_request([llm]).SerializeToString(), headers={**auth(admin_key), **PROTOBUF}
    )
    assert response.status_code == 200
    post_signals(client, admin_key, [{"trace_id": trace, "kind": "implicit", "name": "edit", "text": EDITED}])

    root_span = otlp_span(trace, root, "handle", T0, T0 + 3 * MS, attributes={"output.value": OUTPUT})
    response = client.post(
        "/v1/traces",
        content=otlp_request([root_span]).SerializeToString(),
        headers={**auth(admin_key), **PROTOBUF},
    )
    assert response.status_code == 200

    got = get_trace(client, admin_key, trace)
    assert got["output"] == OUTPUT
    assert got["signals"][0]["edit_distance"] == DISTANCE


def test_thumbs_up_and_down_are_thumbs_signals(client: TestClient, admin_key: str) -> None:
    up, down, other = (trace_id() for _ in range(3))
    post_traces(
        client, admin_key, [{"trace_id": t, "feature": "support", "output": "x"} for t in (up, down, other)]
    )
    result = post_signals(
        client,
        admin_key,
        [
            {"trace_id": up, "name": "thumbs_up"},
            {"trace_id": down, "kind": "explicit", "name": "thumbs_down"},
        ],
    )
    assert result["joined"] == 2

    [signal] = get_trace(client, admin_key, up)["signals"]
    assert (signal["kind"], signal["name"], signal["value"]) == ("explicit", "thumbs", "up")
    assert get_trace(client, admin_key, down)["signals"][0]["value"] == "down"
    assert listed(client, admin_key, signal="thumbs") == {up, down}
    assert listed(client, admin_key, signal="thumbs_up") == {up}  # the same signal, by its value
    assert listed(client, admin_key, signal="thumbs_down") == {down}
    page = client.get("/api/v1/traces", headers=auth(admin_key)).json()["traces"]
    badges = {t["trace_id"]: t["signals"] for t in page}
    assert badges == {up: {"thumbs:up": 1}, down: {"thumbs:down": 1}, other: {}}
    [thumbs] = coverage(client, admin_key, "support")["by_signal"]
    assert (thumbs["kind"], thumbs["name"], thumbs["traces"], thumbs["signals"]) == (
        "explicit",
        "thumbs",
        2,
        2,
    )


def test_has_signal_and_signal_filters(client: TestClient, admin_key: str) -> None:
    liked, edited, escalated, silent = (trace_id() for _ in range(4))
    post_traces(
        client, admin_key, [{"trace_id": t, "output": "answer"} for t in (liked, edited, escalated, silent)]
    )
    post_signals(
        client,
        admin_key,
        [
            {"trace_id": liked, "name": "thumbs_up"},
            {"trace_id": edited, "kind": "implicit", "name": "edit", "text": "answer!"},
            {"trace_id": escalated, "kind": "outcome", "name": "escalated", "value": True},
            {"join_key": "NOT-YET", "kind": "outcome", "name": "escalated", "value": True},
        ],
    )
    assert listed(client, admin_key) == {liked, edited, escalated, silent}
    assert listed(client, admin_key, has_signal="true") == {liked, edited, escalated}
    assert listed(client, admin_key, has_signal="false") == {silent}
    assert listed(client, admin_key, signal="edit") == {edited}
    assert listed(client, admin_key, signal="escalated") == {escalated}
    assert listed(client, admin_key, signal="escalated", has_signal="false") == set()
    assert listed(client, admin_key, signal="regenerate") == set()


# Coverage on a hand-built set: 200 traces of `support` over two days, 100 a day:
# explicit feedback on 2 (both on day 1), implicit on 30 (day 1), outcomes on 150 (all 100 of day 1 and
# 50 of day 2), and 5 signals whose trace never arrived.

DAY1, DAY2 = "2024-05-01", "2024-05-02"


@pytest.fixture
def coverage_set(client: TestClient, admin_key: str) -> list[str]:
    ids = [trace_id() for _ in range(200)]
    traces = [
        {
            "trace_id": tid,
            "feature": "support",
            "join_key": f"T-{i}",
            "start_time": f"{DAY1 if i < 100 else DAY2}T20:{(i % 100) // 60:02d}:{i % 60:02d}Z",
            "output": "answer",
        }
        for i, tid in enumerate(ids)
    ]
    # Another feature's signals must not count towards `support`.
    other = [{"trace_id": trace_id(), "feature": "search", "join_key": f"S-{i}"} for i in range(10)]
    post_traces(client, admin_key, traces + other)
    signals = [
        {"trace_id": ids[0], "name": "thumbs_up"},
        {"trace_id": ids[1], "kind": "explicit", "name": "rating", "value": 4},
        *({"trace_id": ids[i], "kind": "implicit", "name": "copy"} for i in range(30)),
        {"trace_id": ids[5], "kind": "implicit", "name": "regenerate"},
        *(
            {"join_key": f"T-{i}", "kind": "outcome", "name": "resolved", "value": i % 3 != 0}
            for i in range(150)
        ),
        *({"join_key": f"S-{i}", "kind": "outcome", "name": "resolved", "value": True} for i in range(10)),
        *({"join_key": f"GHOST-{i}", "kind": "outcome", "name": "resolved", "value": True} for i in range(3)),
        *({"trace_id": trace_id(), "kind": "implicit", "name": "copy"} for _ in range(2)),
    ]
    result = post_signals(client, admin_key, signals)
    assert result["waiting"] == 5
    return ids


def test_coverage_counts_and_shares(client: TestClient, admin_key: str, coverage_set: list[str]) -> None:
    numbers = coverage(client, admin_key, "support")
    assert numbers["traces"] == 200
    assert (
        numbers["with_explicit"],
        numbers["with_implicit"],
        numbers["with_outcome"],
        numbers["with_any"],
    ) == (
        2,
        30,
        150,
        150,
    )
    assert numbers["explicit_share"] == 0.01
    assert numbers["implicit_share"] == 0.15
    assert numbers["outcome_share"] == 0.75
    assert numbers["any_share"] == 0.75
    assert numbers["signals_without_trace"] == 5
    assert [(s["kind"], s["name"], s["traces"], s["signals"], s["share"]) for s in numbers["by_signal"]] == [
        ("explicit", "rating", 1, 1, 0.005),
        ("explicit", "thumbs", 1, 1, 0.005),
        ("implicit", "copy", 30, 30, 0.15),
        ("implicit", "regenerate", 1, 1, 0.005),
        ("outcome", "resolved", 150, 150, 0.75),
    ]
    assert numbers["daily"] == [
        {
            "date": DAY1,
            "traces": 100,
            "explicit_share": 0.02,
            "implicit_share": 0.3,
            "outcome_share": 1.0,
            "any_share": 1.0,
        },
        {
            "date": DAY2,
            "traces": 100,
            "explicit_share": 0.0,
            "implicit_share": 0.0,
            "outcome_share": 0.5,
            "any_share": 0.5,
        },
    ]


def test_coverage_windows(client: TestClient, admin_key: str, coverage_set: list[str]) -> None:
    second_day = coverage(client, admin_key, "support", since=f"{DAY2}T00:00:00Z")
    assert second_day["traces"] == 100
    assert (second_day["with_explicit"], second_day["with_implicit"], second_day["with_outcome"]) == (
        0,
        0,
        50,
    )
    assert second_day["outcome_share"] == 0.5
    assert [d["date"] for d in second_day["daily"]] == [DAY2]

    first_day = coverage(client, admin_key, "support", since=f"{DAY1}T00:00:00Z", until=f"{DAY2}T00:00:00Z")
    assert (
        first_day["traces"] == 100 and first_day["explicit_share"] == 0.02 and first_day["any_share"] == 1.0
    )
    assert first_day["since"].startswith(DAY1) and first_day["until"].startswith(DAY2)

    # The first 30 seconds of day 1: traces 0..29, every one with a copy signal and an outcome.
    early = coverage(client, admin_key, "support", since=f"{DAY1}T20:00:00Z", until=f"{DAY1}T20:00:30Z")
    assert (early["traces"], early["with_implicit"], early["implicit_share"]) == (30, 30, 1.0)

    empty = coverage(client, admin_key, "support", since="2030-01-01T00:00:00Z")
    assert empty["traces"] == 0 and empty["any_share"] == 0.0 and empty["daily"] == []
    assert coverage(client, admin_key, "no-such-feature")["traces"] == 0


@contextmanager
def server_time_zone(name: str) -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_coverage_and_trace_list_read_a_time_without_offset_the_same_way(
    client: TestClient, admin_key: str, coverage_set: list[str]
) -> None:
    """`prodloop serve` on a laptop runs in local time; a window written without an offset must mean the
    same on every endpoint (the trace list reads it as UTC)."""
    with server_time_zone("Asia/Tokyo"):
        in_list = listed(client, admin_key, feature="support", since=f"{DAY2}T00:00:00")
        numbers = coverage(client, admin_key, "support", since=f"{DAY2}T00:00:00")
    assert len(in_list) == 100
    assert numbers["traces"] == len(in_list)
