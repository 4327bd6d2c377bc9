"""The worker: take due jobs from the store, run their handlers, record the outcome.

``run_worker`` runs ``concurrency`` slots (threads); each claims one job at a time, runs its handler,
and records the result, or the failure, which the job table turns into a retry or a final ``failed``.
The calling thread runs the schedulers on every tick (each ``poll_seconds``), prunes old jobs once an
hour, and waits for ``stop``; once it is set, each slot finishes the job in hand and the worker returns.

A handler's failure never stops the worker: its exception is caught and stored as the job's error,
naming the handler, so that it reads as the handler's failure and not prodloop's. A scheduler's
failure is logged the same way and the tick goes on.

Each job is logged on one line (logger ``prodloop.jobs``): id, kind, outcome, duration.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from prodloop.jobs.queue import (
    Job,
    JobLost,
    claim_jobs,
    complete_job,
    fail_job,
    prune_jobs,
    renew_lock,
    retry_delay_seconds,
)
from prodloop.jobs.registry import callable_name, handled_kinds, handler_for, load_handler_modules, schedulers
from prodloop.settings import Settings

log = logging.getLogger("prodloop.jobs")

#: How often a worker deletes the jobs that ended more than ``PRODLOOP_JOB_KEEP_DAYS`` ago.
PRUNE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class JobContext:
    """What a handler gets: the store, the job, and a way to keep holding it."""

    engine: sa.Engine
    job_id: int
    project_id: int | None
    kind: str
    payload: dict[str, Any]
    attempt: int
    worker: str
    #: Seconds each heartbeat extends the lock by; None: ``PRODLOOP_JOB_LOCK_SECONDS``.
    lock_seconds: int | None = None

    def heartbeat(self) -> None:
        """Extend the job's lock. A job that runs longer than the lock time calls this now and then
        (say once per batch); otherwise another worker takes the job over as if this one had died.

        Raises :class:`~prodloop.jobs.JobLost` when that already happened: stop working on it.
        """
        renew_lock(self.engine, self.job_id, self.worker, self.lock_seconds)


@dataclass
class WorkerStats:
    """What one ``run_worker`` call did."""

    name: str
    #: Jobs finished.
    done: int = 0
    #: Attempts that failed and were queued again.
    retried: int = 0
    #: Jobs that failed for good (no attempts left).
    failed: int = 0
    #: Jobs taken from this worker because it let their lock expire.
    lost: int = 0
    #: Jobs that the schedulers enqueued.
    scheduled: int = 0
    #: Scheduler calls that raised.
    scheduler_errors: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, outcome: str, n: int = 1) -> None:
        with self._guard:
            setattr(self, outcome, getattr(self, outcome) + n)

    def to_dict(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in ("name", "done", "retried", "failed", "lost", "scheduled", "scheduler_errors")
        }


def default_worker_name() -> str:
    """``host:pid``: unique among the workers sharing a store."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _failure(handler: Any, exc: BaseException) -> str:
    """The stored error of a handler that raised: its name first, then the exception and traceback."""
    trace = "".join(traceback.format_exception(exc)).rstrip()
    text = f"handler {callable_name(handler)} raised {type(exc).__name__}: {exc}\n\n{trace}"
    return text.replace("\x00", "\\0")  # PostgreSQL's text holds no NUL characters


def _bad_result(handler: Any, result: Any) -> str | None:
    """Why a handler's result cannot be stored, or None when it can (a JSON object, or None)."""
    from prodloop.store.engine import dumps_json

    if result is not None and not isinstance(result, dict):
        return (
            f"handler {callable_name(handler)} returned a {type(result).__name__}; "
            "a handler returns a JSON object (dict) or None"
        )
    try:
        dumps_json(result)
    except TypeError as exc:
        return f"handler {callable_name(handler)} returned a result that is not JSON: {exc}"
    return None


def run_job(
    engine: sa.Engine,
    job: Job,
    worker: str,
    *,
    lock_seconds: int | None = None,
    retry_seconds: float | None = None,
    stats: WorkerStats | None = None,
) -> str:
    """Run one claimed job's handler and record the outcome; returns ``done``, ``retried``, ``failed``
    or ``lost``. Never raises for the handler's sake."""
    started = time.perf_counter()
    handler = handler_for(job.kind)
    error: str | None = None
    result: dict[str, Any] | None = None
    if handler is None:
        error = f"worker {worker!r} has no handler for job kind {job.kind!r}"
    else:
        context = JobContext(
            engine=engine,
            job_id=job.id,
            project_id=job.project_id,
            kind=job.kind,
            payload=job.payload,
            attempt=job.attempts,
            worker=worker,
            lock_seconds=lock_seconds,
        )
        try:
            result = handler(context)
        except JobLost:
            return _finish(job, "lost", started, stats)
        except (Exception, SystemExit) as exc:  # the handler's failure, reported as theirs
            error = _failure(handler, exc)
        else:
            error = _bad_result(handler, result)
    if error is None:
        outcome = "done" if complete_job(engine, job.id, worker, result) else "lost"
        return _finish(job, outcome, started, stats)
    status = fail_job(engine, job.id, worker, error, retry_seconds=retry_seconds)
    outcome = {"queued": "retried", "failed": "failed"}.get(status or "", "lost")
    delay = retry_delay_seconds(job.attempts, retry_seconds)
    return _finish(job, outcome, started, stats, error.split("\n", 1)[0], delay)


def _finish(
    job: Job, outcome: str, started: float, stats: WorkerStats | None, why: str = "", delay: float = 0.0
) -> str:
    seconds = time.perf_counter() - started
    attempt = f"attempt {job.attempts} of {job.max_attempts}"
    if outcome == "done":
        log.info("job %d %s done in %.2f s (%s)", job.id, job.kind, seconds, attempt)
    elif outcome == "retried":
        log.warning(
            "job %d %s failed in %.2f s (%s), retry in %.0f s: %s",
            *(job.id, job.kind, seconds, attempt, delay, why),
        )
    elif outcome == "failed":
        log.error(
            "job %d %s failed in %.2f s (%s, no retries left): %s", job.id, job.kind, seconds, attempt, why
        )
    else:
        log.warning(
            "job %d %s lost after %.2f s: its lock expired and another worker took it over",
            *(job.id, job.kind, seconds),
        )
    if stats is not None:
        stats.count(outcome)
    return outcome


def run_schedulers(
    engine: sa.Engine, now_ns: int | None = None, stats: WorkerStats | None = None, *, builtin: bool = True
) -> int:
    """Call every registered scheduler once (without ``builtin``, not prodloop's own); returns the jobs
    they enqueued. A scheduler that raises is logged (as its own failure) and the others still run."""
    total = 0
    for name, scheduler in schedulers(builtin=builtin).items():
        try:
            total += int(scheduler(engine, time.time_ns() if now_ns is None else now_ns) or 0)
        except Exception:
            log.exception("scheduler %r (%s) failed", name, callable_name(scheduler))
            if stats is not None:
                stats.count("scheduler_errors")
    if stats is not None and total:
        stats.count("scheduled", total)
    return total


class _Worker:
    def __init__(
        self,
        engine: sa.Engine,
        name: str,
        once: bool,
        poll_seconds: float,
        lock_seconds: int,
        retry_seconds: float,
        builtin: bool,
        stop: threading.Event,
    ) -> None:
        self.engine = engine
        self.once = once
        self.poll_seconds = poll_seconds
        self.lock_seconds = lock_seconds
        self.retry_seconds = retry_seconds
        self.builtin = builtin
        self.stop = stop
        self.stats = WorkerStats(name=name)
        self.errors: list[BaseException] = []

    def guarded_slot(self, worker: str) -> None:
        """A slot in a thread: an error that escapes it (the store unreachable with ``once``) stops
        the other slots and is raised by :func:`run_worker`."""
        try:
            self.slot(worker)
        except BaseException as exc:
            self.errors.append(exc)
            self.stop.set()

    def slot(self, worker: str) -> None:
        """Claim, run, record; until stopped (or, with ``once``, until nothing is due)."""
        failures = 0
        while not self.stop.is_set():
            try:
                claimed = claim_jobs(
                    self.engine,
                    worker,
                    limit=1,
                    kinds=handled_kinds(builtin=self.builtin),
                    lock_seconds=self.lock_seconds,
                )
            except sa.exc.DBAPIError as exc:
                if self.once:
                    raise
                failures += 1
                wait = min(self.poll_seconds * 2**failures, 60.0)
                log.warning("worker %s cannot claim jobs (%s); trying again in %.0f s", worker, exc, wait)
                self.stop.wait(wait)
                continue
            failures = 0
            if not claimed:
                if self.once:
                    return
                self.stop.wait(self.poll_seconds)
                continue
            for job in claimed:
                try:
                    run_job(
                        self.engine,
                        job,
                        worker,
                        lock_seconds=self.lock_seconds,
                        retry_seconds=self.retry_seconds,
                        stats=self.stats,
                    )
                except sa.exc.DBAPIError as exc:
                    # The outcome could not be stored: the lock expires and another attempt runs.
                    log.error("worker %s could not record job %d: %s", worker, job.id, exc)
                    if self.once:
                        raise


def run_worker(
    engine: sa.Engine,
    *,
    name: str | None = None,
    once: bool = False,
    poll_seconds: float | None = None,
    concurrency: int | None = None,
    stop: threading.Event | None = None,
    modules: Sequence[str] | None = None,
    lock_seconds: int | None = None,
    settings: Settings | None = None,
) -> WorkerStats:
    """Run jobs until ``stop`` is set (or, with ``once``, until no job is due), ``concurrency`` at a time.

    Imports the handler modules first: prodloop's own that are installed (unless
    ``PRODLOOP_WORKER_BUILTIN_HANDLERS`` is off), then ``modules`` (default: ``PRODLOOP_WORKER_MODULES``).
    Arguments left None come from ``settings`` (default: the environment).
    """
    settings = settings or Settings()
    poll = settings.worker_poll_seconds if poll_seconds is None else poll_seconds
    slots = settings.worker_concurrency if concurrency is None else concurrency
    lock = settings.job_lock_seconds if lock_seconds is None else lock_seconds
    if slots < 1:
        raise ValueError(f"a worker runs at least one job at a time, not {slots}")
    extra = settings.worker_module_list() if modules is None else list(modules)
    builtin = settings.worker_builtin_handlers
    load_handler_modules(extra, builtin=builtin)
    name = name or default_worker_name()
    stop = stop or threading.Event()
    worker = _Worker(engine, name, once, poll, lock, settings.job_retry_seconds, builtin, stop)
    log.info(
        "worker %s started: %d at a time, handling %s",
        name,
        slots,
        ", ".join(handled_kinds(builtin=builtin)) or "no job kinds (no handler modules found)",
    )
    run_schedulers(engine, stats=worker.stats, builtin=builtin)
    threads = [
        threading.Thread(target=worker.guarded_slot, args=(name if slots == 1 else f"{name}/{i + 1}",))
        for i in range(slots)
    ]
    for thread in threads:
        thread.start()
    next_prune = time.monotonic()
    while not once and any(thread.is_alive() for thread in threads):
        if settings.job_keep_days > 0 and time.monotonic() >= next_prune:
            next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            _prune(engine, settings.job_keep_days)
        if stop.wait(poll):
            break
        run_schedulers(engine, stats=worker.stats, builtin=builtin)
    for thread in threads:
        thread.join()
    if worker.errors:
        raise worker.errors[0]
    log.info("worker %s stopped: %s", name, worker.stats.to_dict())
    return worker.stats


def _prune(engine: sa.Engine, keep_days: float) -> None:
    try:
        pruned = prune_jobs(engine, keep_days)
    except sa.exc.DBAPIError as exc:
        log.warning("could not delete old jobs: %s", exc)
        return
    if pruned:
        log.info("deleted %d jobs that ended more than %g days ago", pruned, keep_days)
