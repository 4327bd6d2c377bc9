"""The web UI: server-rendered pages over the same domain functions as the API."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)

__all__ = ["router"]
