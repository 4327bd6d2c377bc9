"""Who is looking at the UI: the API key in a cookie, and pages (never JSON) for every failure.

Every UI route is a :class:`PageRoute`, so an error raised while answering (no key, a key that may
not read, a trace that does not exist, a bad parameter) becomes a redirect to the login page or an
HTML error page, not the API's JSON error shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from prodloop.errors import Forbidden, InvalidRequest, NotFound, ProdloopError, Unauthorized, ValidationFailed
from prodloop.server.auth import Permission, Principal
from prodloop.server.deps import principal_of
from prodloop.server.ui.views import templates

log = logging.getLogger("prodloop.ui")
COOKIE = "prodloop_key"
READ_ONLY_KEY = "This key can only send data; use a viewer, annotator or admin key to open the UI."

#: Sent with every UI page: only our own scripts and styles run, no one may frame the UI, and the
#: pages (which show production data) are not stored by the browser or proxies.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def viewer(request: Request) -> Principal:
    """The principal behind the cookie, who must be allowed to read; raises otherwise."""
    principal = principal_of(request, request.cookies.get(COOKIE))
    principal.require(Permission.READ)
    request.state.principal = principal
    return principal


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a UI path of this server, never another site."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/traces"


def login_redirect(request: Request) -> Response:
    """To the login page, coming back here after; htmx requests get told to load it as a whole page."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = (
        "/ui/login"
        if here in ("/", "/ui", "/ui/", "/ui/traces")
        else f"/ui/login?next={quote(here, safe='')}"
    )
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    return templates.TemplateResponse(
        request,
        "error.html",
        {"title": title, "message": message, "principal": getattr(request.state, "principal", None)},
        status_code=status,
        headers=PAGE_HEADERS,
    )


def login_page(
    request: Request, error: str | None, status: int = 200, next_path: str | None = None
) -> Response:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"error": error, "next": safe_next(next_path) if next_path else "", "principal": None},
        status_code=status,
        headers=PAGE_HEADERS,
    )


class PageRoute(APIRoute):
    """A route whose failures are pages: login for a missing or unknown key, HTML for the rest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except Unauthorized:
                response = login_redirect(request)
                response.delete_cookie(COOKIE, path="/ui")
                return response
            except Forbidden:
                response = login_page(request, READ_ONLY_KEY, status=403)
                response.delete_cookie(COOKIE, path="/ui")
                return response
            except NotFound as exc:
                return error_page(request, 404, "Not found", exc.message)
            except (InvalidRequest, ValidationFailed) as exc:
                return error_page(request, exc.status, "That request did not make sense", exc.message)
            except RequestValidationError:
                return error_page(request, 400, "That request did not make sense", "a parameter is malformed")
            except ProdloopError as exc:
                return error_page(request, exc.status, "prodloop could not do that", exc.message)
            except Exception:
                log.exception("unexpected error on %s %s", request.method, request.url.path)
                return error_page(
                    request,
                    500,
                    "Something went wrong",
                    "prodloop hit an unexpected error; the server log has the details",
                )
            for name, value in PAGE_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return page
