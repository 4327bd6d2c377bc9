"""Workers: handlers run once, failures are the handler's, dead workers are replaced, and real
``prodloop worker`` processes share one job table without running any job twice."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from prodloop.cli import app
from prodloop.errors import ValidationFailed
from prodloop.jobs import (
    JobContext,
    claim_jobs,
    count_jobs,
    enqueue,
    get_job,
    handled_kinds,
    list_jobs,
    load_handler_modules,
    register_handler,
    register_scheduler,
    registry,
    run_worker,
)
from prodloop.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FAST = Settings(job_retry_seconds=0, worker_poll_seconds=0.05, job_keep_days=0)


@pytest.fixture
def handlers() -> Iterator[Callable[[str, Any], None]]:
    """Register handlers for one test; they are gone afterwards."""
    added: list[str] = []

    def add(kind: str, handler: Any) -> None:
        register_handler(kind, handler)
        added.append(kind)

    yield add
    for kind in added:
        registry._HANDLERS.pop(kind, None)


@pytest.fixture
def no_schedulers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only the schedulers that the test registers (prodloop's own are put back afterwards)."""
    monkeypatch.setattr(registry, "HANDLER_MODULES", ())
    saved = dict(registry._SCHEDULERS)
    registry._SCHEDULERS.clear()
    yield
    registry._SCHEDULERS.clear()
    registry._SCHEDULERS.update(saved)


def summarise(ctx: JobContext) -> dict[str, Any]:
    return {"sum": sum(ctx.payload["values"]), "attempt": ctx.attempt, "worker": ctx.worker}


def explode(ctx: JobContext) -> None:
    raise ValueError(f"the model is down ({ctx.payload['model']})")


def returns_a_list(ctx: JobContext) -> Any:
    return [1, 2, 3]


def calls_exit(ctx: JobContext) -> None:
    sys.exit(3)


def returns_no_json(ctx: JobContext) -> dict[str, Any]:
    return {"client": object()}


def raises_with_nul(ctx: JobContext) -> None:
    raise ValueError("bad byte \x00 in input")


def test_a_worker_runs_the_due_jobs_once_and_stores_their_results(
    engine: sa.Engine, handlers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handlers("test.sum", summarise)
    ids = [enqueue(engine, "test.sum", {"values": [i, i, 1]}) for i in range(5)]
    later = enqueue(engine, "test.sum", {"values": [1]}, run_after=datetime.now(UTC) + timedelta(hours=1))
    with caplog.at_level(logging.INFO, logger="prodloop.jobs"):
        stats = run_worker(engine, name="w", once=True, settings=FAST)
    assert (stats.done, stats.failed, stats.retried) == (5, 0, 0)
    for i, job_id in enumerate(ids):
        assert job_id is not None
        job = get_job(engine, job_id)
        assert (job["status"], job["result"]) == ("done", {"sum": 2 * i + 1, "attempt": 1, "worker": "w"})
    assert later is not None and get_job(engine, later)["status"] == "queued"
    # One line per job: id, kind, outcome, duration.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"job {ids[0]} ")]
    assert len(lines) == 1 and " test.sum done in " in lines[0] and " s (attempt 1 of 3)" in lines[0]


def test_a_failing_handler_is_reported_as_its_own_failure_retried_then_failed(
    engine: sa.Engine, handlers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handlers("test.explode", explode)
    handlers("test.sum", summarise)
    bad = enqueue(engine, "test.explode", {"model": "gpt-x"}, max_attempts=3, priority=1)
    good = enqueue(engine, "test.sum", {"values": [2]})
    assert bad is not None and good is not None
    with caplog.at_level(logging.INFO, logger="prodloop.jobs"):
        stats = run_worker(engine, name="w", once=True, settings=FAST)
    # The worker lived through three failures and still ran the other job.
    assert (stats.done, stats.retried, stats.failed) == (1, 2, 1)
    assert get_job(engine, good)["status"] == "done"
    job = get_job(engine, bad)
    assert (job["status"], job["attempts"]) == ("failed", 3)
    first_line = job["error"].split("\n")[0]
    assert first_line == "handler tests.jobs.test_worker.explode raised ValueError: the model is down (gpt-x)"
    assert "Traceback" in job["error"] and "in explode" in job["error"]
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"job {bad} ")]
    assert len(failures) == 3
    assert "retry in 0 s" in failures[0] and "no retries left" in failures[2]
    assert "tests.jobs.test_worker.explode" in failures[2]


def test_handlers_that_return_no_object_or_exit_fail_only_their_job(engine: sa.Engine, handlers: Any) -> None:
    kinds = {
        "test.list": returns_a_list,
        "test.exit": calls_exit,
        "test.nojson": returns_no_json,
        "test.nul": raises_with_nul,
    }
    ids = {}
    for kind, handler in kinds.items():
        handlers(kind, handler)
        ids[kind] = enqueue(engine, kind, {}, max_attempts=1)
    stats = run_worker(engine, name="w", once=True, concurrency=2, settings=FAST)
    assert stats.failed == 4
    errors = {kind: get_job(engine, job_id)["error"] for kind, job_id in ids.items() if job_id}
    assert errors["test.list"].startswith(
        "handler tests.jobs.test_worker.returns_a_list returned a list; a handler returns a JSON object"
    )
    assert errors["test.exit"].startswith("handler tests.jobs.test_worker.calls_exit raised SystemExit")
    assert errors["test.nojson"].startswith(
        "handler tests.jobs.test_worker.returns_no_json returned a result that is not JSON"
    )
    assert errors["test.nul"].startswith(
        "handler tests.jobs.test_worker.raises_with_nul raised ValueError: bad byte \\0 in input"
    )


def test_a_worker_claims_only_the_kinds_it_has_handlers_for(engine: sa.Engine, handlers: Any) -> None:
    handlers("test.sum", summarise)
    foreign = enqueue(engine, "someone-else.kind", {})
    assert foreign is not None and "someone-else.kind" not in handled_kinds()
    run_worker(engine, name="w", once=True, settings=FAST)
    assert get_job(engine, foreign)["status"] == "queued"


def test_schedulers_run_each_tick_and_one_that_fails_is_reported_as_its_own(
    engine: sa.Engine, handlers: Any, no_schedulers: None, caplog: pytest.LogCaptureFixture
) -> None:
    handlers("test.sum", summarise)
    calls: list[int] = []

    def nightly(eng: sa.Engine, now_ns: int) -> int:
        calls.append(now_ns)
        return 1 if enqueue(eng, "test.sum", {"values": [40, 2]}, dedup_key="nightly") else 0

    def broken(eng: sa.Engine, now_ns: int) -> int:
        raise RuntimeError("no monitors table")

    register_scheduler("broken", broken)
    register_scheduler("nightly", nightly)
    with caplog.at_level(logging.INFO, logger="prodloop.jobs"):
        stats = run_worker(engine, name="w", once=True, settings=FAST)
    assert (stats.scheduled, stats.scheduler_errors, stats.done) == (1, 1, 1)
    assert len(calls) == 1 and abs(calls[0] - time.time_ns()) < 60 * 10**9
    [job] = list_jobs(engine)
    assert job["result"]["sum"] == 42
    assert any(
        "scheduler 'broken'" in r.getMessage()
        and "test_worker" in r.getMessage()
        and "broken" in r.getMessage()
        for r in caplog.records
    )


def test_a_long_job_that_lost_its_lock_is_not_recorded_twice(engine: sa.Engine, handlers: Any) -> None:
    seen: list[str] = []

    def slow(ctx: JobContext) -> dict[str, Any]:
        ctx.heartbeat()  # still held: fine
        # Meanwhile the lock expired and another worker took the job over.
        claim_jobs(ctx.engine, "thief", now_ns=time.time_ns() + 10**12)
        try:
            ctx.heartbeat()
        except Exception as exc:
            seen.append(type(exc).__name__)
            raise
        return {"unreachable": True}

    handlers("test.slow", slow)
    job_id = enqueue(engine, "test.slow", {})
    assert job_id is not None
    stats = run_worker(engine, name="w", once=True, settings=FAST)
    assert seen == ["JobLost"] and stats.lost == 1 and stats.failed == stats.done == 0
    job = get_job(engine, job_id)
    assert (job["status"], job["worker"], job["attempts"]) == ("running", "thief", 2)


def test_a_running_worker_takes_new_jobs_and_stops_when_asked(engine: sa.Engine, handlers: Any) -> None:
    handlers("test.sum", summarise)
    stop = threading.Event()
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(run_worker(engine, name="w", stop=stop, concurrency=2, settings=FAST))
    )
    thread.start()
    try:
        ids = [enqueue(engine, "test.sum", {"values": [i]}) for i in range(4)]
        deadline = time.monotonic() + 20
        while count_jobs(engine)["done"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert result[0].done == 4
    workers = {get_job(engine, job_id)["worker"] for job_id in ids if job_id}
    assert workers <= {"w/1", "w/2"}


def test_a_worker_kept_for_your_own_jobs_leaves_prodloops_to_others(
    engine: sa.Engine, handlers: Any, no_schedulers: None
) -> None:
    def builtin_job(ctx: JobContext) -> None:
        return None

    def builtin_scheduler(eng: sa.Engine, now_ns: int) -> int:
        raise AssertionError("prodloop's own scheduler ran in a worker kept for other jobs")

    builtin_job.__module__ = builtin_scheduler.__module__ = "prodloop.monitoring.jobs"
    handlers("monitor.test-run", builtin_job)
    handlers("test.sum", summarise)
    register_scheduler("monitors-test", builtin_scheduler)
    theirs = enqueue(engine, "monitor.test-run", {})
    mine = enqueue(engine, "test.sum", {"values": [1]})
    assert theirs is not None and mine is not None
    own_only = FAST.model_copy(update={"worker_builtin_handlers": False})
    stats = run_worker(engine, name="mine", once=True, settings=own_only)
    assert (stats.done, stats.scheduler_errors) == (1, 0)
    assert (get_job(engine, mine)["status"], get_job(engine, theirs)["status"]) == ("done", "queued")
    # A worker with prodloop's handlers takes it.
    registry._SCHEDULERS.clear()
    assert run_worker(engine, name="all", once=True, settings=FAST).done == 1


def test_handler_modules_missing_ones_skipped_users_ones_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "HANDLER_MODULES", ("prodloop.not_installed.jobs",))
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_jobs_ok.py").write_text(
        "from prodloop.jobs import register_handler\n"
        "def mine(ctx):\n    return None\n"
        "register_handler('mine.job', mine)\n"
    )
    (tmp_path / "my_jobs_broken.py").write_text("import a_dependency_that_is_not_installed\n")
    try:
        assert load_handler_modules(["my_jobs_ok"]) == ["my_jobs_ok"]
        assert "mine.job" in handled_kinds()
        with pytest.raises(ValidationFailed, match=r"'my_jobs_missing'.*cannot be found"):
            load_handler_modules(["my_jobs_missing"])
        # A module that exists but cannot import what it needs says so, instead of being skipped.
        with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
            load_handler_modules(["my_jobs_broken"])
    finally:
        registry._HANDLERS.pop("mine.job", None)
        for name in ("my_jobs_ok", "my_jobs_broken"):
            sys.modules.pop(name, None)


def test_a_kind_belongs_to_one_handler(handlers: Any) -> None:
    handlers("test.sum", summarise)
    handlers("test.sum", summarise)  # the same function again (a module imported twice) is fine
    with pytest.raises(ValidationFailed, match=r"already registered to tests\.jobs\.test_worker\.summarise"):
        register_handler("test.sum", explode)


# --------------------------------------------------------------------------------------------------
# Real worker processes


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODLOOP_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        PRODLOOP_HOME=str(tmp_path / "home"),
        PRODLOOP_WORKER_MODULES="tests.jobs.recording",
        PRODLOOP_SQLITE_SYNCHRONOUS="NORMAL",
        PRODLOOP_JOB_KEEP_DAYS="0",
        # Workers for the test's own jobs only: they start faster without prodloop's monitoring stack.
        PRODLOOP_WORKER_BUILTIN_HANDLERS="false",
        **extra,
    )
    return env


class WorkerProcess:
    """``prodloop worker`` in a process of its own; its stderr is collected line by line."""

    def __init__(self, url: str, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self.started = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prodloop", "worker", "--db", url, "--poll", "0.05", "--name", name],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if f"worker {self.name} started" in line:
                self.started.set()

    def send(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self) -> int:
        code = self.process.wait(20)
        self.reader.join(5)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.send(sig)
        return self.wait()


def _wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_four_worker_processes_run_every_job_exactly_once(engine: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    env = _environment(tmp_path)
    workers = [WorkerProcess(_url(engine), f"w{i}", env) for i in range(4)]
    try:
        for worker in workers:
            assert worker.started.wait(60), "".join(worker.lines)
        # All become due at one moment, with every worker already polling.
        due = datetime.now(UTC) + timedelta(seconds=1)
        ids = {
            enqueue(engine, "test.record", {"log": str(log), "seconds": 0.01}, run_after=due)
            for _ in range(200)
        }
        _wait_for(lambda: count_jobs(engine)["done"] == 200, 60, "200 jobs done")
    finally:
        for worker in workers:
            worker.send(signal.SIGTERM)
        codes = [worker.wait() for worker in workers]
    # SIGTERM stops each worker cleanly, with its summary.
    assert codes == [0, 0, 0, 0], [worker.lines[-3:] for worker in workers]
    assert all("done," in worker.lines[-1] for worker in workers)

    runs = [line.split() for line in log.read_text().splitlines()]
    ran = [int(job_id) for job_id, _ in runs]
    assert sorted(ran) == sorted(ids)  # every job ran, none twice
    by_worker = {name: sum(1 for _, w in runs if w == name) for name in ("w0", "w1", "w2", "w3")}
    assert all(n > 0 for n in by_worker.values()), by_worker  # every worker took some
    assert sum(by_worker.values()) == 200
    # The table agrees with what the handlers saw.
    for job in list_jobs(engine, limit=300):
        assert job["status"] == "done" and job["attempts"] == 1
        assert job["result"] == {"worker": job["worker"]}


def test_a_killed_workers_job_is_taken_over_after_its_lock_expires(engine: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    victim = WorkerProcess(_url(engine), "victim", _environment(tmp_path, PRODLOOP_JOB_LOCK_SECONDS="1"))
    try:
        assert victim.started.wait(60), "".join(victim.lines)
        job_id = enqueue(engine, "test.hang", {"log": str(log), "first_attempt_seconds": 60})
        _wait_for(log.exists, 30, "the first attempt to start")
    finally:
        victim.stop(signal.SIGKILL)  # dies mid-job: no cleanup, no record
    assert job_id is not None
    job = get_job(engine, job_id)
    assert (job["status"], job["worker"]) == ("running", "victim")

    # Another worker takes nothing while the lock holds, and the job once it has expired.
    load_handler_modules(["tests.jobs.recording"])
    _wait_for(lambda: time.time_ns() > (claim_lock(engine, job_id) or 0), 5, "the lock to expire")
    stats = run_worker(engine, name="taker", once=True, settings=FAST)
    assert stats.done == 1
    job = get_job(engine, job_id)
    assert (job["status"], job["worker"], job["attempts"], job["result"]) == (
        "done",
        "taker",
        2,
        {"attempt": 2},
    )
    assert "'victim'" in job["error"]
    assert log.read_text().splitlines() == [f"{job_id} victim attempt 1", f"{job_id} taker attempt 2"]


def test_sigterm_lets_the_job_in_hand_finish(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    worker = WorkerProcess(_url(sqlite_engine), "w", _environment(tmp_path))
    try:
        assert worker.started.wait(60), "".join(worker.lines)
        job_id = enqueue(sqlite_engine, "test.hang", {"log": str(log), "first_attempt_seconds": 1.5})
        _wait_for(log.exists, 30, "the job to start")
    finally:
        worker.send(signal.SIGTERM)
        code = worker.wait()
    assert code == 0, worker.lines
    assert job_id is not None
    job = get_job(sqlite_engine, job_id)
    assert (job["status"], job["attempts"], job["result"]) == ("done", 1, {"attempt": 1})
    assert any("SIGTERM: stopping after the jobs in hand" in line for line in worker.lines)


def claim_lock(engine: sa.Engine, job_id: int) -> int | None:
    from prodloop.store.schema import jobs

    with engine.connect() as connection:
        return connection.execute(sa.select(jobs.c.locked_until_ns).where(jobs.c.id == job_id)).scalar()


def test_worker_once_and_jobs_ls_from_the_cli(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    url = _url(sqlite_engine)
    ids = [enqueue(sqlite_engine, "test.record", {"log": str(log)}) for _ in range(3)]
    runner = CliRunner()
    result = runner.invoke(
        app, ["worker", "--db", url, "--once", "--name", "cron", "--module", "tests.jobs.recording"]
    )
    assert result.exit_code == 0, result.output
    assert "worker cron: 3 done, 0 to retry, 0 failed" in result.output
    assert len(log.read_text().splitlines()) == 3

    listed = runner.invoke(app, ["jobs", "ls", "--db", url, "--status", "done", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [job["id"] for job in json.loads(listed.stdout)] == sorted(ids, reverse=True)  # type: ignore[arg-type]
    shown = runner.invoke(app, ["jobs", "show", str(ids[0]), "--db", url])
    assert json.loads(shown.stdout)["result"] == {"worker": "cron"}
    table = runner.invoke(app, ["jobs", "ls", "--db", url])
    assert table.exit_code == 0 and "0 queued, 0 running, 3 done, 0 failed" in table.output
    missing = runner.invoke(app, ["worker", "--db", url, "--once", "--module", "no_such_module_here"])
    assert missing.exit_code != 0
