"""Every error, whatever raised it, has the one JSON shape and the right status."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import auth


def assert_error_shape(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("get", "/api/v1/nothing-here", {}, 404, "not_found"),
        ("delete", "/api/v1/traces", {}, 405, "method_not_allowed"),
        ("get", "/api/v1/traces?limit=0", {}, 422, "validation_failed"),
        ("get", "/api/v1/traces?since=yesterday", {}, 422, "validation_failed"),
        ("get", "/api/v1/traces?cursor=%%%", {}, 400, "invalid_request"),
        ("get", "/api/v1/traces/" + "0" * 32, {}, 404, "not_found"),
        ("post", "/api/v1/traces", {"content": b"{not json"}, 400, "invalid_request"),
        ("post", "/api/v1/traces", {"json": {"traces": []}}, 422, "validation_failed"),
        ("post", "/api/v1/traces", {"json": {"traces": [{"trace_id": "xyz"}]}}, 422, "validation_failed"),
        (
            "post",
            "/api/v1/signals",
            {"json": {"signals": [{"kind": "outcome", "name": "x"}]}},
            422,
            "validation_failed",
        ),
        (
            "post",
            "/v1/traces",
            {"content": b"x", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
    ],
)
def test_error_shape(
    client: TestClient, admin_key: str, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    headers = {**auth(admin_key), **kwargs.pop("headers", {})}
    response = getattr(client, method)(path, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert_error_shape(response.json(), code)


def test_validation_detail_names_the_field(client: TestClient, admin_key: str) -> None:
    body = {"traces": [{"feature": "f"}, {"trace_id": "not-hex"}]}
    response = client.post("/api/v1/traces", json=body, headers=auth(admin_key))
    error = response.json()["error"]
    assert error["detail"][0]["loc"] == "traces.1.trace_id"
    assert "32 hex characters" in error["message"]


def test_unexpected_errors_keep_the_shape(
    client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prodloop.capture

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(prodloop.capture, "list_features", broken)
    with TestClient(client.app, raise_server_exceptions=False) as quiet:
        response = quiet.get("/api/v1/features", headers=auth(admin_key))
    assert response.status_code == 500
    assert_error_shape(response.json(), "internal_error")
    assert "disk on fire" not in response.text


def test_openapi_describes_the_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/traces", "/api/v1/traces", "/api/v1/signals", "/api/v1/features/{feature}/coverage"} <= set(
        spec["paths"]
    )
    assert "TraceBatch" in spec["components"]["schemas"]
    assert "SignalBatch" in spec["components"]["schemas"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/traces?since=9999-12-31T00:00:00",
        "/api/v1/traces?cursor=OTk5OTk5OTk5OTk5OTk5OTk5OTk6eA",
    ],
)
def test_times_beyond_the_store_are_a_clear_error_not_a_crash(
    client: TestClient, admin_key: str, path: str
) -> None:
    response = client.get(path, headers=auth(admin_key))
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("invalid_request", "validation_failed")


def test_a_duration_beyond_the_store_is_refused_and_nothing_stored(
    client: TestClient, admin_key: str, engine: Any
) -> None:
    import sqlalchemy as sa

    from prodloop.store.schema import spans

    body = {"traces": [{"feature": "f", "input": "ok"}, {"feature": "f", "duration_ms": 1e30}]}
    response = client.post("/api/v1/traces", json=body, headers=auth(admin_key))
    assert response.status_code == 422
    assert "2262" in response.json()["error"]["message"]
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(spans)).scalar_one() == 0


def test_app_refuses_an_unmigrated_store(tmp_path: Any) -> None:
    from prodloop.errors import StoreNotReady
    from prodloop.server import create_app
    from prodloop.store import create_store_engine

    with pytest.raises(StoreNotReady, match="prodloop db upgrade"):
        create_app(create_store_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
