"""The web UI: server-rendered pages over the same domain functions as the API."""

from prodloop.server.ui.pages import router

__all__ = ["router"]
