"""Fixtures shared by the whole suite: stores on SQLite and (when configured) PostgreSQL, the app,
keys, and a real server on a free port."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient

from prodloop.server import create_api_key, create_app
from prodloop.settings import Settings
from prodloop.store import create_store_engine, upgrade
from prodloop.store.schema import metadata

PG_URL = os.environ.get("PRODLOOP_TEST_DATABASE_URL")


def _fresh_postgres(url: str) -> str:
    """A new empty database next to the one named by PRODLOOP_TEST_DATABASE_URL; returns its URL."""
    base = sa.make_url(url)
    name = f"prodloop_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _drop_postgres(url: str, fresh: str) -> None:
    admin = sa.create_engine(sa.make_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.make_url(fresh).database}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One migrated PostgreSQL database for the session (tables are emptied between tests)."""
    if not PG_URL:
        if os.environ.get("PRODLOOP_REQUIRE_POSTGRES"):
            pytest.fail("PRODLOOP_REQUIRE_POSTGRES is set but PRODLOOP_TEST_DATABASE_URL is not")
        pytest.skip("PostgreSQL tests need PRODLOOP_TEST_DATABASE_URL (.ci/run sets it)")
    fresh = _fresh_postgres(PG_URL)
    engine = create_store_engine(fresh)
    upgrade(engine)
    engine.dispose()
    yield fresh
    _drop_postgres(PG_URL, fresh)


def _empty_postgres(engine: sa.Engine) -> None:
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated, empty store on each backend: storage tests run on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        eng = create_store_engine(f"sqlite:///{tmp_path / 'prodloop.db'}")
        upgrade(eng)
    else:
        eng = create_store_engine(request.getfixturevalue("postgres_url"))
        _empty_postgres(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated, empty SQLite store, for tests whose subject is not the storage backend."""
    eng = create_store_engine(f"sqlite:///{tmp_path / 'prodloop.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / ".prodloop")


@pytest.fixture
def app(engine: sa.Engine, settings: Settings):  # type: ignore[no-untyped-def]
    return create_app(engine, settings)


@pytest.fixture
def admin_key(engine: sa.Engine) -> str:
    return create_api_key(engine, "default", "admin")


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """prodloop served by uvicorn on a free loopback port, in a thread of the test process."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A long keep-alive: with uvicorn's 5 s, a pooled client connection idle that long can be
        # closed by the server just as a test thread reuses it, and the request fails with a reset.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", timeout_keep_alive=120
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("prodloop test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(app) as server:
        yield server
