"""Alembic environment: runs migrations on the engine prodloop hands over."""

from __future__ import annotations

from alembic import context

from prodloop.store.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # run from the alembic command line
    from prodloop.store.engine import create_store_engine

    engine = create_store_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
