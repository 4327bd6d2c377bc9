"""The store's migrations and schema module describe the same database, on every backend."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from prodloop.store import create_store_engine, current_revision, head_revision, is_up_to_date, upgrade
from prodloop.store.schema import metadata


def test_migrated_store_matches_schema_module(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == [], f"schema.py and the migrations disagree; add a revision: {differences}"


def test_store_is_at_head_after_upgrade(engine: sa.Engine) -> None:
    assert current_revision(engine) == head_revision(engine)
    assert is_up_to_date(engine)


def test_upgrade_twice_is_harmless(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    upgrade(engine)
    assert is_up_to_date(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"projects", "api_keys", "traces", "spans", "signals"} <= tables


def test_new_sqlite_store_is_not_up_to_date_until_upgraded(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert current_revision(engine) is None
    assert not is_up_to_date(engine)
