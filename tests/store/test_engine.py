"""Engine set-up: SQLite in WAL mode under the home folder, PostgreSQL URLs in every common spelling,
and write transactions that leave nothing behind when they fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from prodloop.settings import Settings, normalise_database_url
from prodloop.store import create_store_engine, read_transaction, write_transaction
from prodloop.store.schema import projects


def test_default_store_is_sqlite_in_wal_mode_under_home(tmp_path: Path) -> None:
    engine = create_store_engine(settings=Settings(home=tmp_path / "home"))
    assert engine.url.database == str(tmp_path / "home" / "prodloop.db")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        # FULL (2): an answered write survives power loss.
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_spellings(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_explicit_url_beats_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRODLOOP_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert Settings().resolved_database_url().endswith("env.db")
    engine = create_store_engine(f"sqlite:///{tmp_path / 'explicit.db'}")
    assert engine.url.database.endswith("explicit.db")


def test_bad_synchronous_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SYNCHRONOUS"):
        create_store_engine(f"sqlite:///{tmp_path / 'x.db'}", Settings(sqlite_synchronous="SOMETIMES"))


def test_failed_write_transaction_leaves_nothing(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError), write_transaction(engine) as connection:
        connection.execute(projects.insert().values(name="half", created_ns=1))
        raise RuntimeError("boom")
    with read_transaction(engine) as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(projects)).scalar_one() == 0
