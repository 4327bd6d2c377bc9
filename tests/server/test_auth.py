"""API keys: hashed at rest, one project per key, roles that limit what a key may do."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from prodloop.errors import Unauthorized, ValidationFailed
from prodloop.server import authenticate, bootstrap_admin, create_api_key, create_app
from prodloop.server.auth import Role, hash_key
from prodloop.settings import Settings
from prodloop.store.schema import api_keys, projects
from tests.conftest import auth

TRACE = {"traces": [{"feature": "f", "input": "q", "output": "a", "trace_id": "ab" * 16}]}


def test_key_is_stored_only_as_its_hash(engine: sa.Engine) -> None:
    key = create_api_key(engine, "default", "viewer")
    with engine.connect() as connection:
        rows = connection.execute(sa.select(api_keys)).all()
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0])
    assert key not in stored
    assert rows[0].key_hash == hash_key(key)
    assert authenticate(engine, key).role is Role.VIEWER


def test_unknown_role_names_the_allowed_ones(engine: sa.Engine) -> None:
    with pytest.raises(ValidationFailed, match="admin, ingest, annotator, reviewer, viewer"):
        create_api_key(engine, "default", "owner")


def test_unknown_key_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(Unauthorized):
        authenticate(engine, "pl_not-a-key")


@pytest.mark.parametrize(
    ("role", "write", "read"),
    [("admin", 200, 200), ("ingest", 200, 403), ("annotator", 403, 200), ("viewer", 403, 200)],
)
def test_roles(client: TestClient, engine: sa.Engine, role: str, write: int, read: int) -> None:
    key = create_api_key(engine, "default", role)
    assert client.post("/api/v1/traces", json=TRACE, headers=auth(key)).status_code == write
    response = client.get("/api/v1/traces", headers=auth(key))
    assert response.status_code == read
    if read == 403:
        assert response.json()["error"]["code"] == "forbidden"
        assert "ingest" in response.json()["error"]["message"]


def test_a_key_sees_its_own_project_only(client: TestClient, engine: sa.Engine) -> None:
    mine = create_api_key(engine, "alpha", "admin")
    theirs = create_api_key(engine, "beta", "admin")
    assert client.post("/api/v1/traces", json=TRACE, headers=auth(mine)).status_code == 200
    trace_id = TRACE["traces"][0]["trace_id"]
    assert client.get(f"/api/v1/traces/{trace_id}", headers=auth(mine)).status_code == 200
    other = client.get(f"/api/v1/traces/{trace_id}", headers=auth(theirs))
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/traces", headers=auth(theirs)).json()["traces"] == []
    # The same trace id in another project is another trace, not a clash.
    assert client.post("/api/v1/traces", json=TRACE, headers=auth(theirs)).status_code == 200
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(projects)).scalar_one() == 2


@pytest.mark.parametrize("header", [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer pl_wrong"])
def test_requests_without_a_valid_key_get_401(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/traces", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_me_names_project_and_role(client: TestClient, engine: sa.Engine) -> None:
    key = create_api_key(engine, "shop", "ingest")
    assert client.get("/api/v1/me", headers=auth(key)).json() == {"project": "shop", "role": "ingest"}


def test_bootstrap_creates_default_admin_once(engine: sa.Engine, tmp_path: Path) -> None:
    key = bootstrap_admin(engine, tmp_path / "home")
    assert key is not None
    path = tmp_path / "home" / "admin-key"
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    principal = authenticate(engine, key)
    assert (principal.project, principal.role) == ("default", Role.ADMIN)
    assert bootstrap_admin(engine, tmp_path / "home") is None


def test_bootstrap_makes_an_admin_key_for_a_store_filled_without_one(
    engine: sa.Engine, tmp_path: Path
) -> None:
    create_api_key(engine, "default", "annotator", name="ana")  # as `prodloop demo` leaves it
    key = bootstrap_admin(engine, tmp_path / "home")
    assert key is not None and authenticate(engine, key).role == Role.ADMIN
    assert bootstrap_admin(engine, tmp_path / "home") is None


def test_key_cache_does_not_leak_across_apps(engine: sa.Engine, tmp_path: Path) -> None:
    key = create_api_key(engine, "default", "viewer")
    with TestClient(create_app(engine, Settings(home=tmp_path))) as first:
        assert first.get("/api/v1/me", headers=auth(key)).status_code == 200
        assert first.get("/api/v1/me", headers=auth(key + "x")).status_code == 401


def test_replicas_creating_one_project_at_once_agree(engine: sa.Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from prodloop.server.auth import ensure_project

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(lambda _: ensure_project(engine, "shared"), range(16)))
    assert len(ids) == 1
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(projects)).scalar_one() == 1
