"""The web UI: server-rendered pages over the same domain functions as the API."""

from fastapi import APIRouter

from prodloop.server.ui import health, pages, workbench

router = APIRouter(include_in_schema=False)
router.include_router(workbench.router)  # before the pages' catch-all for unknown /ui/ paths
router.include_router(health.router)
router.include_router(pages.router)

__all__ = ["router"]
