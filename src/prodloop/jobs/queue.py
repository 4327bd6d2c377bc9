"""The job table: enqueue, claim, complete, fail, and look.

A job is one row of ``jobs``: a ``kind`` (the name of the handler that runs it), a JSON ``payload``, a
``priority`` and the time it may run (``run_after_ns``). Its life::

    queued ──claim──► running ──complete──► done
      ▲                  │
      └──── fail, attempts left (retry after a backoff)
                         └──── fail, no attempts left ──► failed

Claiming, on PostgreSQL, is one transaction: ``SELECT … FOR UPDATE SKIP LOCKED`` over the due jobs in
order (priority first, then the time they became due, then id), then an ``UPDATE`` that marks them
running with the worker's name and a lock time. Workers that claim at once lock different rows and
never wait on each other. On SQLite the same two statements run in one ``BEGIN IMMEDIATE`` transaction
through the store's writer, so claims run one at a time.

A running job whose lock time has passed belongs to a worker that died (or hung without calling
:meth:`JobContext.heartbeat <prodloop.jobs.JobContext.heartbeat>`); the next claim takes it over as a
new attempt, or fails it when it had no attempts left.

``dedup_key`` is unique while a job holds it: enqueueing the same key again while the first job is
queued or running adds nothing. A job gives its key back when it ends (done or failed: the column is
set to null), so that a periodic job can be scheduled again.

Times are the clock of the machine that calls (nanoseconds since the epoch, UTC); the machines that
run workers should keep their clocks in sync (NTP), far inside the lock time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from prodloop.errors import Conflict, NotFound, ValidationFailed
from prodloop.settings import Settings
from prodloop.store import dialect_insert, read_transaction, run_write
from prodloop.store.schema import jobs

#: The states of a job.
JOB_STATUSES = ("queued", "running", "done", "failed")
#: Longest wait between two attempts, however many failed before.
MAX_RETRY_SECONDS = 3600
_NS = 1_000_000_000
_KIND_LENGTH = 100
_KEY_LENGTH = 300


#: The time columns and the names that :meth:`Job.to_dict` shows them under (ISO 8601).
_TIMES = {
    "run_after_ns": "run_after",
    "locked_until_ns": "locked_until",
    "created_ns": "created_at",
    "started_ns": "started_at",
    "finished_ns": "finished_at",
}


class JobLost(Conflict):
    """The worker no longer holds the job: its lock expired and the job was taken over or failed."""


@dataclass(frozen=True)
class Job:
    """One row of the job table."""

    id: int
    project_id: int | None
    kind: str
    payload: dict[str, Any]
    status: str
    priority: int
    run_after_ns: int
    attempts: int
    max_attempts: int
    dedup_key: str | None
    worker: str | None
    locked_until_ns: int | None
    created_ns: int
    started_ns: int | None
    finished_ns: int | None
    error: str | None
    result: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, times as ISO 8601 (UTC)."""
        from prodloop.capture.queries import iso

        values = asdict(self)
        for name, shown in _TIMES.items():
            values[shown] = iso(values.pop(name))
        return values


def _job(row: Any) -> Job:
    return Job(**{column.name: getattr(row, column.name) for column in jobs.columns})


def _now() -> int:
    return time.time_ns()


def retry_delay_seconds(attempts: int, base_seconds: float | None = None) -> float:
    """How long a job waits after its ``attempts``-th failed attempt: ``base * 2 ** (attempts - 1)``, at most
    an hour. ``base`` defaults to ``PRODLOOP_JOB_RETRY_SECONDS``."""
    base = Settings().job_retry_seconds if base_seconds is None else base_seconds
    return float(min(base * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS))


def enqueue(
    engine: sa.Engine | sa.Connection,
    kind: str,
    payload: dict[str, Any],
    *,
    project_id: int | None = None,
    priority: int = 0,
    run_after: datetime | None = None,
    dedup_key: str | None = None,
    max_attempts: int = 3,
) -> int | None:
    """Add a job; returns its id, or None when a job with the same ``dedup_key`` is queued or running.

    Higher ``priority`` runs first; ``run_after`` (UTC when it has no offset) holds the job back until
    then; ``max_attempts`` counts the first attempt too. Given a connection instead of an engine, the
    job is added inside that connection's transaction (commits or rolls back with it).
    """
    from prodloop.capture.queries import to_ns
    from prodloop.store.engine import dumps_json

    if not kind or len(kind) > _KIND_LENGTH:
        raise ValidationFailed(f"a job's kind is a name of 1 to 100 characters, not {kind!r}")
    if dedup_key is not None and not 0 < len(dedup_key) <= _KEY_LENGTH:
        raise ValidationFailed(f"a dedup key has 1 to 300 characters; got {len(dedup_key)}")
    if max_attempts < 1:
        raise ValidationFailed(
            f"max_attempts counts the first attempt, so it is at least 1, not {max_attempts}"
        )
    if not isinstance(payload, dict):
        raise ValidationFailed(f"a job's payload is a JSON object, not {type(payload).__name__}")
    try:
        dumps_json(payload)
    except TypeError as exc:
        raise ValidationFailed(f"the payload of a {kind!r} job is not JSON: {exc}") from exc
    now = _now()
    values = {
        "project_id": project_id,
        "kind": kind,
        "payload": payload,
        "status": "queued",
        "priority": priority,
        "run_after_ns": now if run_after is None else to_ns(run_after),
        "attempts": 0,
        "max_attempts": max_attempts,
        "dedup_key": dedup_key,
        "created_ns": now,
    }

    def write(connection: sa.Connection) -> int | None:
        statement = dialect_insert(connection, jobs).values(**values)
        if dedup_key is not None:
            statement = statement.on_conflict_do_nothing(index_elements=[jobs.c.dedup_key])
        return connection.execute(statement.returning(jobs.c.id)).scalar()  # type: ignore[no-any-return]

    if isinstance(engine, sa.Connection):
        return write(engine)
    return run_write(engine, write)


def claim_jobs(
    engine: sa.Engine,
    worker: str,
    *,
    limit: int = 1,
    kinds: Sequence[str] | None = None,
    lock_seconds: int | None = None,
    now_ns: int | None = None,
) -> list[Job]:
    """Take up to ``limit`` due jobs (of ``kinds``, when given) for ``worker``, and mark them running.

    Each claimed job is locked until ``now + lock_seconds`` (default ``PRODLOOP_JOB_LOCK_SECONDS``); the
    worker renews the lock with :func:`renew_lock` while it works. Jobs whose worker let the lock
    expire are taken over here (their attempt counted), or failed when they have no attempts left.
    ``now_ns`` is for tests: the time the claim happens at.
    """
    if kinds is not None and not kinds:
        return []
    lock = Settings().job_lock_seconds if lock_seconds is None else lock_seconds
    kind_filter = [] if kinds is None else [jobs.c.kind.in_(list(kinds))]

    def write(connection: sa.Connection) -> list[Job]:
        now = _now() if now_ns is None else now_ns
        _fail_abandoned(connection, now, kind_filter)
        due = sa.or_(
            sa.and_(jobs.c.status == "queued", jobs.c.run_after_ns <= now),
            sa.and_(
                jobs.c.status == "running",
                jobs.c.locked_until_ns < now,
                jobs.c.attempts < jobs.c.max_attempts,
            ),
        )
        rows = connection.execute(
            sa.select(jobs.c.id, jobs.c.status, jobs.c.worker, jobs.c.attempts)
            .where(due, *kind_filter)
            .order_by(jobs.c.priority.desc(), jobs.c.run_after_ns, jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return []
        for row in rows:
            if row.status == "running":
                connection.execute(
                    jobs.update()
                    .where(jobs.c.id == row.id)
                    .values(error=_abandoned(row.worker, row.attempts))
                )
        claimed = connection.execute(
            jobs.update()
            .where(jobs.c.id.in_([row.id for row in rows]))
            .values(
                status="running",
                worker=worker,
                attempts=jobs.c.attempts + 1,
                started_ns=now,
                locked_until_ns=now + int(lock * _NS),
            )
            .returning(*jobs.columns)
        ).all()
        found = [_job(row) for row in claimed]
        return sorted(found, key=lambda job: (-job.priority, job.run_after_ns, job.id))

    return run_write(engine, write)


def _abandoned(worker: str | None, attempt: int) -> str:
    return (
        f"attempt {attempt} stopped unfinished: worker {worker!r} let the job's lock expire "
        "(the worker died, or ran longer than the lock without calling heartbeat())"
    )


def _fail_abandoned(connection: sa.Connection, now: int, kind_filter: list[Any]) -> None:
    """Fail the running jobs whose lock expired on their last attempt."""
    rows = connection.execute(
        sa.select(jobs.c.id, jobs.c.worker, jobs.c.attempts)
        .where(
            jobs.c.status == "running",
            jobs.c.locked_until_ns < now,
            jobs.c.attempts >= jobs.c.max_attempts,
            *kind_filter,
        )
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        connection.execute(
            jobs.update()
            .where(jobs.c.id == row.id)
            .values(
                status="failed",
                finished_ns=now,
                locked_until_ns=None,
                dedup_key=None,
                error=_abandoned(row.worker, row.attempts) + "; no attempts left",
            )
        )


def _held(job_id: int, worker: str) -> Any:
    return sa.and_(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.status == "running")


def renew_lock(engine: sa.Engine, job_id: int, worker: str, lock_seconds: int | None = None) -> int:
    """Extend ``worker``'s lock on a running job; returns the new lock time (ns).

    Raises :class:`JobLost` when the worker no longer holds the job.
    """
    lock = Settings().job_lock_seconds if lock_seconds is None else lock_seconds

    def write(connection: sa.Connection) -> int:
        until = _now() + int(lock * _NS)
        done = connection.execute(jobs.update().where(_held(job_id, worker)).values(locked_until_ns=until))
        if done.rowcount == 0:
            raise JobLost(
                f"worker {worker!r} no longer holds job {job_id}: its lock expired and another worker "
                "took it over (call heartbeat() more often than PRODLOOP_JOB_LOCK_SECONDS)",
                {"job_id": job_id, "worker": worker},
            )
        return until

    return run_write(engine, write)


def complete_job(engine: sa.Engine, job_id: int, worker: str, result: dict[str, Any] | None = None) -> bool:
    """Record that ``worker`` finished the job with ``result``; it becomes ``done`` and frees its dedup key.

    Returns False (and records nothing) when the worker no longer holds the job, because its lock
    expired and another worker took it over.
    """

    def write(connection: sa.Connection) -> bool:
        now = _now()
        done = connection.execute(
            jobs.update()
            .where(_held(job_id, worker))
            .values(status="done", result=result, finished_ns=now, locked_until_ns=None, dedup_key=None)
        )
        return bool(done.rowcount)

    return run_write(engine, write)


def fail_job(
    engine: sa.Engine,
    job_id: int,
    worker: str,
    error: str,
    *,
    retry: bool = True,
    retry_seconds: float | None = None,
) -> str | None:
    """Record that the job's attempt failed with ``error``.

    With attempts left (and ``retry``), the job is queued again after :func:`retry_delay_seconds`
    (its base ``retry_seconds``, default ``PRODLOOP_JOB_RETRY_SECONDS``); otherwise it ends ``failed``
    and frees its dedup key. Returns the job's new status (``queued`` or ``failed``), or None when the
    worker no longer holds the job (nothing is recorded).
    """
    retry_base = Settings().job_retry_seconds if retry_seconds is None else retry_seconds

    def write(connection: sa.Connection) -> str | None:
        row = connection.execute(
            sa.select(jobs.c.attempts, jobs.c.max_attempts).where(_held(job_id, worker))
        ).first()
        if row is None:
            return None
        now = _now()
        if retry and row.attempts < row.max_attempts:
            delay = retry_delay_seconds(row.attempts, retry_base)
            values: dict[str, Any] = {
                "status": "queued",
                "run_after_ns": now + int(delay * _NS),
                "locked_until_ns": None,
            }
        else:
            values = {"status": "failed", "finished_ns": now, "locked_until_ns": None, "dedup_key": None}
        connection.execute(jobs.update().where(jobs.c.id == job_id).values(error=error, **values))
        return str(values["status"])

    return run_write(engine, write)


def get_job(engine: sa.Engine, job_id: int) -> dict[str, Any]:
    """One job as a JSON-ready dict; 404 when there is none with that id."""
    with read_transaction(engine) as connection:
        row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"there is no job {job_id}; `prodloop jobs ls` lists the jobs")
    return _job(row).to_dict()


def list_jobs(
    engine: sa.Engine,
    *,
    status: str | None = None,
    kind: str | None = None,
    project_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Jobs, newest first, optionally of one status, kind or project."""
    if status is not None and status not in JOB_STATUSES:
        raise ValidationFailed(f"job status {status!r} is not one of: {', '.join(JOB_STATUSES)}")
    query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(jobs.c.status == status)
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    if project_id is not None:
        query = query.where(jobs.c.project_id == project_id)
    with read_transaction(engine) as connection:
        return [_job(row).to_dict() for row in connection.execute(query)]


def count_jobs(engine: sa.Engine) -> dict[str, int]:
    """How many jobs are in each status (every status named, zero when none)."""
    with read_transaction(engine) as connection:
        rows = connection.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all()
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def prune_jobs(
    engine: sa.Engine, older_than_days: float, *, batch: int = 1000, now_ns: int | None = None
) -> int:
    """Delete the jobs that ended (done or failed) more than ``older_than_days`` ago; returns how many.

    Deletes in batches of locked rows, so several workers pruning at once neither wait on each other
    nor delete a row twice.
    """
    cutoff = (_now() if now_ns is None else now_ns) - int(older_than_days * 86400 * _NS)
    ended = (
        sa.select(jobs.c.id)
        .where(jobs.c.status.in_(["done", "failed"]), jobs.c.finished_ns < cutoff)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    deleted = 0
    while True:
        gone = run_write(
            engine, lambda connection: connection.execute(jobs.delete().where(jobs.c.id.in_(ended))).rowcount
        )
        deleted += gone
        if gone < batch:
            return deleted
