"""``prodloop worker`` runs background jobs; ``prodloop jobs …`` shows them. Thin shells over
``prodloop.jobs``."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from prodloop.cli.common import DbOption, console, err, open_store_for_command, print_json, settings_for

jobs_app = typer.Typer(help="Background jobs: what is queued, running, done or failed.", no_args_is_help=True)


@contextmanager
def _job_log() -> Iterator[None]:
    """The ``prodloop.jobs`` log on stderr, one line per job, for as long as the command runs."""
    logger = logging.getLogger("prodloop.jobs")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM: finish the jobs in hand, then stop. A second one quits at once (the jobs in
    hand run again elsewhere once their locks expire)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logging.getLogger("prodloop.jobs").warning(
                "%s again: quitting now; the jobs in hand run again once their locks expire", name
            )
            os._exit(128 + signum)
        logging.getLogger("prodloop.jobs").info(
            "%s: stopping after the jobs in hand (send it again to quit now)", name
        )
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def worker_command(
    ctx: typer.Context,
    db: DbOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run the jobs that are due, then exit (for cron).")
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", min=1, help="Jobs run at a time (default: PRODLOOP_WORKER_CONCURRENCY)."
        ),
    ] = None,
    poll: Annotated[
        float | None,
        typer.Option(
            "--poll",
            min=0.001,
            help="Seconds between looks for due jobs (default: PRODLOOP_WORKER_POLL_SECONDS).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="This worker's name in the job table (default: host:pid).")
    ] = None,
    module: Annotated[
        list[str] | None,
        typer.Option(
            "--module",
            help="A module of your own job handlers (repeatable; adds to PRODLOOP_WORKER_MODULES).",
        ),
    ] = None,
) -> None:
    """Run background jobs (scheduled monitors, embeddings, …) from the store until Ctrl-C or SIGTERM.

    Start as many workers as you like, on any machines that reach the store: they share the jobs, and
    each job runs once. A job whose worker dies is taken over by another once its lock expires.
    """
    from prodloop.jobs import run_worker

    settings = settings_for(db)
    engine = open_store_for_command(ctx, db)
    stop = threading.Event()
    modules = settings.worker_module_list() + list(module or [])
    with _job_log(), _stop_on_signals(stop):
        stats = run_worker(
            engine,
            name=name,
            once=once,
            poll_seconds=poll,
            concurrency=concurrency,
            stop=stop,
            modules=modules,
            settings=settings,
        )
    err.print(
        f"worker {escape(stats.name)}: {stats.done} done, {stats.retried} to retry, {stats.failed} failed, "
        f"{stats.lost} taken over by other workers",
        soft_wrap=True,
    )


def _minute(iso: str | None) -> str:
    """``2026-11-26T05:53:33.14Z`` as ``2026-11-26 05:53`` (UTC)."""
    return iso[:16].replace("T", " ") if iso else ""


StatusOption = Annotated[
    Literal["queued", "running", "done", "failed"] | None,
    typer.Option("--status", help="Only jobs in this state: queued, running, done or failed."),
]


@jobs_app.command("ls")
def jobs_ls(
    ctx: typer.Context,
    status: StatusOption = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    output: Annotated[Literal["table", "json"], typer.Option("--format", help="table or json.")] = "table",
    db: DbOption = None,
) -> None:
    """List jobs, newest first (times in UTC), with how many are in each state."""
    from prodloop.jobs import count_jobs, list_jobs

    engine = open_store_for_command(ctx, db)
    found = list_jobs(engine, status=status, kind=kind, limit=limit)
    if output == "json":
        print_json(found)
        return
    table = Table("id", "kind", "status", "tries", "worker", "created", "finished")
    errors = []
    for job in found:
        table.add_row(
            str(job["id"]),
            escape(job["kind"]),
            job["status"],
            f"{job['attempts']}/{job['max_attempts']}",
            escape(job["worker"] or ""),
            _minute(job["created_at"]),
            _minute(job["finished_at"]),
        )
        if job["error"] and job["status"] != "done":
            errors.append(f"job {job['id']}: {escape(job['error'].split(chr(10), 1)[0])}")
    console.print(table)
    for line in errors:
        console.print(line, soft_wrap=True)
    counts = count_jobs(engine)
    err.print(", ".join(f"{n} {state}" for state, n in counts.items()))


@jobs_app.command("show")
def jobs_show(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job's id.", show_default=False)],
    db: DbOption = None,
) -> None:
    """Print one job as JSON: payload, result, and the full error of its last failed attempt."""
    from prodloop.jobs import get_job

    print_json(get_job(open_store_for_command(ctx, db), job_id))
