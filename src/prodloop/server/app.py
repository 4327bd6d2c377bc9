"""The FastAPI application: REST API, OTLP endpoint and web UI over one store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from prodloop import __version__
from prodloop.capture import SignalBatch, TraceBatch
from prodloop.errors import StoreNotReady
from prodloop.server import annotation_api, api, datasets_api, monitoring_api, otlp, ui
from prodloop.server.errors import install_error_handlers
from prodloop.settings import Settings
from prodloop.store import create_store_engine, is_up_to_date


def _document_read_bodies(app: FastAPI) -> None:
    """Routes that read their own body (to bound its size) name its model in ``openapi_extra``; add
    those models to the spec's components so the references resolve."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in (TraceBatch, SignalBatch):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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
    if not is_up_to_date(app.state.engine):
        raise StoreNotReady(
            f"the store at {app.state.engine.url.render_as_string()} is not migrated to this version of "
            "prodloop; run `prodloop db upgrade` (prodloop serve does it by itself)"
        )
    app.state.key_cache = {}
    install_error_handlers(app)
    app.include_router(otlp.router)
    app.include_router(api.router)
    app.include_router(annotation_api.router)
    app.include_router(datasets_api.router)
    app.include_router(monitoring_api.router)
    app.include_router(ui.router)

    _document_read_bodies(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    return app
