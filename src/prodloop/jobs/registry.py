"""Who runs which job: handlers registered by kind, schedulers that enqueue periodic work.

Packages register at import time::

    from prodloop.jobs import register_handler, register_scheduler

    def run_monitor(ctx: JobContext) -> dict | None: ...
    register_handler("monitor.run", run_monitor)

    def due_monitors(engine, now_ns) -> int: ...     # enqueues what is due; returns how many
    register_scheduler("monitors", due_monitors)

A worker imports the modules of :data:`HANDLER_MODULES` that are installed, then those named in
``PRODLOOP_WORKER_MODULES`` (users' own jobs), and claims only the kinds it has handlers for.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from prodloop.errors import ValidationFailed

if TYPE_CHECKING:
    from prodloop.jobs.worker import JobContext

Handler = Callable[["JobContext"], dict[str, Any] | None]
Scheduler = Callable[[sa.Engine, int], int]

#: prodloop's own handler modules; a worker imports those that are installed and skips the others.
HANDLER_MODULES = ("prodloop.monitoring.jobs", "prodloop.embeddings.jobs")

_HANDLERS: dict[str, Handler] = {}
_SCHEDULERS: dict[str, Scheduler] = {}
_GUARD = threading.Lock()


def callable_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function: how a handler's or scheduler's failure names it."""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"


def _register(table: dict[str, Any], what: str, name: str, fn: Callable[..., Any]) -> None:
    if not callable(fn):
        raise ValidationFailed(f"the {what} for {name!r} must be callable, not {type(fn).__name__}")
    with _GUARD:
        present = table.get(name)
        # The same function again (a module imported twice, or reloaded) replaces itself quietly.
        if present is not None and callable_name(present) != callable_name(fn):
            raise ValidationFailed(
                f"{what} {name!r} is already registered to {callable_name(present)}; "
                f"{callable_name(fn)} needs a name of its own"
            )
        table[name] = fn


def register_handler(kind: str, handler: Handler) -> None:
    """Run ``handler(ctx)`` for jobs of ``kind``; what it returns (a JSON object or None) is stored as
    the job's result, and an exception it raises fails the attempt."""
    if not kind or len(kind) > 100:
        raise ValidationFailed(f"a job kind is a name of 1 to 100 characters, not {kind!r}")
    _register(_HANDLERS, "job kind", kind, handler)


def register_scheduler(name: str, scheduler: Scheduler) -> None:
    """Call ``scheduler(engine, now_ns)`` on every worker tick; it enqueues the jobs that are due and
    returns how many. Every worker calls it, so it must be safe to call at once from several: enqueue
    with a ``dedup_key``."""
    _register(_SCHEDULERS, "scheduler", name, scheduler)


def handler_for(kind: str) -> Handler | None:
    with _GUARD:
        return _HANDLERS.get(kind)


def _is_prodloops(fn: Callable[..., Any]) -> bool:
    return callable_name(fn).startswith("prodloop.")


def handled_kinds(*, builtin: bool = True) -> list[str]:
    """The job kinds that this process has handlers for, sorted; without ``builtin``, only those
    whose handlers are not prodloop's own."""
    with _GUARD:
        return sorted(kind for kind, fn in _HANDLERS.items() if builtin or not _is_prodloops(fn))


def schedulers(*, builtin: bool = True) -> dict[str, Scheduler]:
    """The registered schedulers by name; without ``builtin``, only those that are not prodloop's own."""
    with _GUARD:
        return {name: fn for name, fn in _SCHEDULERS.items() if builtin or not _is_prodloops(fn)}


def _is_missing(exc: ModuleNotFoundError, module: str) -> bool:
    """Whether ``exc`` says that ``module`` (or a package above it) is not installed, as opposed to a
    module that exists but fails to import something of its own."""
    parts = module.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def load_handler_modules(extra: Sequence[str] = (), *, builtin: bool = True) -> list[str]:
    """Import prodloop's handler modules that are installed (unless ``builtin`` is false), then each
    of ``extra``; returns the modules imported.

    A module of :data:`HANDLER_MODULES` that is not installed is skipped; one of ``extra`` that is
    missing is an error, since a user asked for it.
    """
    loaded = []
    for module in HANDLER_MODULES if builtin else ():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _is_missing(exc, module):
                raise
            continue
        loaded.append(module)
    for module in extra:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not _is_missing(exc, module):
                raise
            raise ValidationFailed(
                f"handler module {module!r} (PRODLOOP_WORKER_MODULES or --module) cannot be found; "
                "check its name and that it is on the worker's Python path"
            ) from exc
        loaded.append(module)
    return loaded
