"""The FastAPI application: REST API, OTLP endpoint and web UI over one store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from prodloop import __version__
from prodloop.server import api, otlp, ui
from prodloop.server.errors import install_error_handlers
from prodloop.settings import Settings
from prodloop.store import create_store_engine


def create_app(engine: sa.Engine | None = None, settings: Settings | None = None) -> FastAPI:
    """The prodloop server over ``engine`` (default: the configured store, which must be migrated)."""
    settings = settings or Settings()
    app = FastAPI(
        title="prodloop",
        version=__version__,
        description="Capture production traces and signals, and keep AI features from decaying silently.",
    )
    app.state.settings = settings
    app.state.engine = engine if engine is not None else create_store_engine(settings=settings)
    app.state.key_cache = {}
    install_error_handlers(app)
    app.include_router(otlp.router)
    app.include_router(api.router)
    app.include_router(ui.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    return app
