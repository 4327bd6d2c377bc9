"""The store: one schema, one migration history, SQLite and PostgreSQL engines."""

from prodloop.store.engine import (
    create_store_engine,
    dialect_insert,
    is_sqlite,
    read_transaction,
    write_transaction,
)
from prodloop.store.migrate import current_revision, head_revision, is_up_to_date, upgrade
from prodloop.store.writer import run_write

__all__ = [
    "create_store_engine",
    "current_revision",
    "dialect_insert",
    "head_revision",
    "is_sqlite",
    "is_up_to_date",
    "read_transaction",
    "run_write",
    "upgrade",
    "write_transaction",
]
