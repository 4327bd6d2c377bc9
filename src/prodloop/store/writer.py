"""Group commit for SQLite: many concurrent writers, one transaction, one fsync.

SQLite admits one writer at a time and, with ``synchronous=FULL``, syncs the log on every commit:
a few hundred commits a second at most, whatever the CPU. Under concurrent requests (signals from
many users, exports from many services) :func:`run_write` hands each write to one writer thread per
store, which runs the writes that are waiting together in one transaction, each inside its own
savepoint, and commits them with one sync. A write that fails is rolled back to its savepoint and its
error is raised to its caller; the others commit. Every caller returns only after the commit that
holds its write, so an answered request is durable.

PostgreSQL groups commits itself; there :func:`run_write` is a plain transaction in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from prodloop.store.engine import is_sqlite, sqlite_writer_lock, write_transaction

T = TypeVar("T")

#: Most writes committed together; bounds how long one group holds the write lock.
MAX_GROUP = 64
#: A writer thread with no work for this long ends; the next write starts a new one.
IDLE_SECONDS = 2.0
#: How often the log is checkpointed into the database file while writes come in.
CHECKPOINT_SECONDS = 0.5


class _Job:
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[sa.Connection], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _GroupWriter:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.guard = threading.Lock()
        self.running = False
        self.commits = 0
        self.stopped = threading.Event()

    def submit(self, fn: Callable[[sa.Connection], T]) -> T:
        job = _Job(fn)
        self.jobs.put(job)
        with self.guard:
            if not self.running:
                self.running = True
                self.stopped.clear()
                threading.Thread(target=self._loop, name="prodloop-sqlite-writer", daemon=True).start()
                threading.Thread(
                    target=self._checkpoints, name="prodloop-sqlite-checkpoint", daemon=True
                ).start()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[no-any-return]

    def _next_group(self) -> list[_Job] | None:
        try:
            first = self.jobs.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with self.guard:
                if self.jobs.empty():
                    self.running = False
                    self.stopped.set()
                    return None
            first = self.jobs.get()
        group = [first]
        while len(group) < MAX_GROUP:
            try:
                group.append(self.jobs.get_nowait())
            except queue.Empty:
                break
        return group

    def _loop(self) -> None:
        while (group := self._next_group()) is not None:
            self._commit(group)

    def _checkpoints(self) -> None:
        """Copy the write-ahead log into the database file from a thread of its own.

        SQLite's automatic checkpoint (off on prodloop's connections) would run inside a commit and
        hold up the writes waiting behind it; a passive checkpoint here runs beside the writer.
        """
        done = 0
        while True:
            stopping = self.stopped.wait(CHECKPOINT_SECONDS)
            if self.commits != done:
                done = self.commits
                raw = self.engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                finally:
                    raw.close()
            if stopping:
                return

    def _commit(self, group: list[_Job]) -> None:
        try:
            with sqlite_writer_lock(self.engine), self.engine.connect() as connection:
                connection.execution_options(sqlite_begin="IMMEDIATE")
                with connection.begin():
                    for job in group:
                        savepoint = connection.begin_nested()
                        try:
                            job.result = job.fn(connection)
                        except BaseException as exc:  # the caller's error, raised in the caller's thread
                            savepoint.rollback()
                            job.error = exc
                        else:
                            savepoint.commit()
        except BaseException as exc:  # the commit itself failed: nothing of the group is stored
            for job in group:
                if job.error is None:
                    job.result, job.error = None, exc
        finally:
            self.commits += 1
            for job in group:
                job.done.set()


_WRITERS_GUARD = threading.Lock()


def _writer(engine: sa.Engine) -> _GroupWriter:
    """The engine's group writer; kept on the engine so that it goes when the engine goes."""
    with _WRITERS_GUARD:
        writer: _GroupWriter | None = getattr(engine, "_prodloop_group_writer", None)
        if writer is None:
            writer = _GroupWriter(engine)
            engine._prodloop_group_writer = writer  # type: ignore[attr-defined]
        return writer


def run_write(engine: sa.Engine, fn: Callable[[sa.Connection], T]) -> T:
    """Run ``fn(connection)`` in a write transaction and return its result once it is committed.

    All of ``fn``'s writes commit, or (when it raises) none do, and its exception is raised here.
    """
    if not is_sqlite(engine):
        with write_transaction(engine) as connection:
            return fn(connection)
    return _writer(engine).submit(fn)
