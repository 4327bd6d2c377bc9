"""What every ``prodloop`` command shares: consoles, the store options, opening the store."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from prodloop.settings import Settings

console = Console()
err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Store URL (default: PRODLOOP_DATABASE_URL, else SQLite under .prodloop/)."),
]
ProjectOption = Annotated[str, typer.Option("--project", "-p", help="Project name.")]


def settings_for(db: str | None = None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if db:
        values["database_url"] = db
    return Settings(**values)


def open_store(db: str | None, migrate: bool = True) -> Any:
    """The store's engine, migrated to the newest schema unless ``migrate`` is false."""
    from prodloop.store import create_store_engine, upgrade

    engine = create_store_engine(settings=settings_for(db))
    if migrate:
        upgrade(engine)
    return engine


def project_of(engine: Any, project: str, create: bool = False) -> int:
    """The id of ``project``: 404 if it does not exist (or, with ``create``, created)."""
    from prodloop.server.auth import ensure_project, project_id

    return ensure_project(engine, project) if create else project_id(engine, project)
