"""Engines for the two stores: embedded SQLite (WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite

from prodloop.settings import Settings, normalise_database_url


def create_store_engine(url: str | None = None, settings: Settings | None = None) -> sa.Engine:
    """An engine for ``url`` (or the configured store), set up for prodloop's access pattern.

    SQLite runs in WAL mode so that readers never wait for the writer; write transactions start with
    ``BEGIN IMMEDIATE`` (see :func:`write_transaction`) so that a read that decides a write cannot be
    overtaken by another writer.
    """
    settings = settings or Settings()
    url = normalise_database_url(url) if url else settings.resolved_database_url()
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, settings)
    # No pre-ping (a round trip per request); connections are recycled instead, and one that the
    # server dropped is detected on its first error and the pool refreshed.
    return sa.create_engine(
        parsed,
        pool_size=settings.pool_size,
        max_overflow=10,
        pool_recycle=1800,
        json_serializer=dumps_json,
        json_deserializer=loads_json,
    )


def _sqlite_engine(url: sa.URL, settings: Settings) -> sa.Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=settings.pool_size,
        max_overflow=10,
        json_serializer=dumps_json,
        json_deserializer=loads_json,
    )
    synchronous = settings.sqlite_synchronous.upper()
    if synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(
            f"PRODLOOP_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}"
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Checkpoints run beside the writer (store/writer.py), not inside a commit.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def dumps_json(value: Any) -> str:
    """JSON text for the store: orjson (fast, and NaN becomes null, which PostgreSQL's JSONB accepts),
    falling back to the standard library for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def loads_json(value: Any) -> Any:
    """Read a JSON column. SQLite gives JSON columns numeric affinity, so a document that is a bare
    number comes back as that number rather than as text."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value


def is_sqlite(engine: sa.Engine | sa.Connection) -> bool:
    return engine.dialect.name == "sqlite"


def dialect_insert(engine: sa.Engine | sa.Connection, table: sa.Table) -> Any:
    """``INSERT`` with the dialect's ``ON CONFLICT`` clauses (SQLite and PostgreSQL spell them alike)."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


_WRITERS: dict[str, threading.Lock] = {}
_WRITERS_GUARD = threading.Lock()


def sqlite_writer_lock(engine: sa.Engine) -> threading.Lock:
    """The in-process lock that the writers of one SQLite database queue on."""
    key = str(engine.url)
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(key, threading.Lock())


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that writes: all of it commits, or none of it does.

    On SQLite it takes the write lock at the start (``BEGIN IMMEDIATE``), so a read inside it that
    decides a write sees the state the write applies to. SQLite admits one writer at a time, and a
    writer that finds the database locked sleeps and polls; so the threads of one process queue on an
    in-process lock first, which hands the database over without those sleeps (other processes still
    wait through ``busy_timeout``).
    """
    if not is_sqlite(engine):
        with engine.connect() as connection, connection.begin():
            yield connection
        return
    with sqlite_writer_lock(engine), engine.connect() as connection:
        connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            yield connection


@contextmanager
def read_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only transaction: one consistent view of the store."""
    with engine.connect() as connection, connection.begin():
        yield connection
