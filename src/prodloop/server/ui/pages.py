"""The UI's routes: log in with an API key, list traces, open one. Each parses its input, calls the
capture package, and renders a template."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from prodloop import capture
from prodloop.capture.shapes import EXPLICIT_NAMES, IMPLICIT_NAMES
from prodloop.errors import Forbidden, NotFound, Unauthorized
from prodloop.server.auth import Permission, Role, authenticate
from prodloop.server.deps import engine_of
from prodloop.server.ui.session import (
    COOKIE,
    READ_ONLY_KEY,
    PageRoute,
    login_page,
    safe_next,
    viewer,
)
from prodloop.server.ui.views import (
    STATIC,
    STATIC_FILES,
    TraceQuery,
    coverage_bars,
    genai_fields,
    message_view,
    templates,
    waterfall,
)

router = APIRouter(include_in_schema=False, route_class=PageRoute)

UNKNOWN_KEY = (
    "This key is not known to prodloop, or it was revoked. Check that it was pasted whole, "
    "or ask an admin for a new one (prodloop keys create --role viewer)."
)


@router.get("/")
@router.get("/ui")
@router.get("/ui/")
def home() -> Response:
    return RedirectResponse("/ui/traces", status_code=303)


@router.get("/ui/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return login_page(request, None, next_path=next)


@router.post("/ui/login")
def login(request: Request, key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "") -> Response:
    key = key.strip()
    if not key:
        return login_page(request, "Paste an API key to sign in.", status=400, next_path=next)
    try:
        principal = authenticate(engine_of(request), key)
    except Unauthorized:
        return login_page(request, UNKNOWN_KEY, status=401, next_path=next)
    try:
        principal.require(Permission.READ)
    except Forbidden:
        return login_page(request, READ_ONLY_KEY, status=403, next_path=next)
    # Annotators start at their queues; everyone else at the traces.
    landing = "/ui/queues" if principal.role == Role.ANNOTATOR and not next else safe_next(next)
    response = RedirectResponse(landing, status_code=303)
    response.set_cookie(
        COOKIE,
        key,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/ui/logout")
@router.post("/ui/logout")
def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/ui/traces")
def traces_page(request: Request) -> Response:
    principal = viewer(request)
    engine = engine_of(request)
    query = TraceQuery.from_params(request.query_params)
    filters, problems = query.to_filter()
    page: dict[str, Any] = {"traces": [], "next_cursor": None}
    coverage = None
    if not problems:
        page = capture.list_traces(
            engine, principal.project_id, filters, query.page_size(), query.cursor or None
        )
        if filters.feature:
            coverage = capture.feature_coverage(
                engine, principal.project_id, filters.feature, filters.since, filters.until
            )
    context = {
        "principal": principal,
        "query": query,
        "problems": problems,
        "traces": page["traces"],
        "next_url": query.url(cursor=page["next_cursor"]) if page["next_cursor"] else None,
        "coverage": coverage,
        "coverage_bars": coverage_bars(coverage["daily"]) if coverage else [],
    }
    partial = request.headers.get("hx-request") and not request.headers.get("hx-history-restore-request")
    if partial:
        return templates.TemplateResponse(request, "_results.html", context, headers={"Vary": "HX-Request"})
    features = capture.list_features(engine, principal.project_id)
    context.update(
        features=[f for f in features if f["feature"]],
        project_has_traces=bool(features),
        releases=capture.distinct_values(engine, principal.project_id, "release"),
        models=capture.distinct_values(engine, principal.project_id, "model"),
        signal_names=[*EXPLICIT_NAMES, *IMPLICIT_NAMES],
    )
    return templates.TemplateResponse(request, "traces.html", context, headers={"Vary": "HX-Request"})


@router.get("/ui/traces/{trace_id}")
def trace_page(request: Request, trace_id: str) -> Response:
    principal = viewer(request)
    trace = capture.get_trace(engine_of(request), principal.project_id, trace_id)
    return templates.TemplateResponse(
        request,
        "trace.html",
        {
            "principal": principal,
            "trace": trace,
            "rows": waterfall(trace),
            "genai_fields": genai_fields,
            "message_view": message_view,
        },
    )


@router.get("/ui/static/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_FILES:  # only the files that ship in static/, so no path can escape it
        raise NotFound(f"no static file {name!r}")
    return FileResponse(STATIC / name, headers={"Cache-Control": "public, max-age=86400"})


@router.get("/ui/{path:path}")
def unknown_page(request: Request, path: str) -> Response:
    viewer(request)
    raise NotFound(f"there is no page /ui/{path}; start from the trace list")
