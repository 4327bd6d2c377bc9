"""What every ``prodloop`` command shares: consoles, the store options, opening the store."""

from __future__ import annotations

import json
import math
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


def open_store_for_command(ctx: typer.Context, db: str | None) -> Any:
    """The store's engine, closed when the command ends (its pooled connections with it)."""
    engine = open_store(db)
    ctx.call_on_close(engine.dispose)
    return engine


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout; numbers that are not finite become null."""
    print(json.dumps(_finite(value), indent=2, ensure_ascii=False, allow_nan=False))
