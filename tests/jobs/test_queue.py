"""The job table on SQLite and PostgreSQL: enqueue, claim, complete, fail, retry, take-over, dedup."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from prodloop.errors import NotFound, ValidationFailed
from prodloop.jobs import (
    JobLost,
    claim_jobs,
    complete_job,
    count_jobs,
    enqueue,
    fail_job,
    get_job,
    list_jobs,
    prune_jobs,
    renew_lock,
    retry_delay_seconds,
)

S = 1_000_000_000


def test_enqueue_then_claim_marks_the_job_running_for_that_worker(engine: sa.Engine) -> None:
    job_id = enqueue(engine, "monitor.run", {"monitor": 7}, project_id=None, max_attempts=2)
    assert job_id is not None
    job = get_job(engine, job_id)
    assert (job["status"], job["attempts"], job["payload"], job["worker"]) == (
        "queued",
        0,
        {"monitor": 7},
        None,
    )

    before = time.time_ns()
    [claimed] = claim_jobs(engine, "w1", lock_seconds=60)
    assert (claimed.id, claimed.status, claimed.worker, claimed.attempts) == (job_id, "running", "w1", 1)
    assert claimed.payload == {"monitor": 7}
    assert before + 60 * S <= claimed.locked_until_ns <= time.time_ns() + 60 * S
    # Held: nobody else gets it.
    assert claim_jobs(engine, "w2") == []
    assert get_job(engine, job_id)["worker"] == "w1"


def test_claim_order_is_priority_then_due_time_then_id(engine: sa.Engine) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    low = enqueue(engine, "k", {}, priority=0)
    early = enqueue(engine, "k", {}, priority=0, run_after=past)
    high = enqueue(engine, "k", {}, priority=5)
    later_same = enqueue(engine, "k", {}, priority=0)
    future = enqueue(engine, "k", {}, priority=9, run_after=datetime.now(UTC) + timedelta(hours=1))
    claimed = claim_jobs(engine, "w", limit=10)
    assert [job.id for job in claimed] == [high, early, low, later_same]
    assert future not in [job.id for job in claimed]
    assert get_job(engine, future)["status"] == "queued"


def test_claim_takes_only_the_kinds_asked_for(engine: sa.Engine) -> None:
    embed = enqueue(engine, "embed.traces", {})
    monitor = enqueue(engine, "monitor.run", {})
    assert claim_jobs(engine, "w", limit=5, kinds=[]) == []
    assert [job.id for job in claim_jobs(engine, "w", limit=5, kinds=["monitor.run"])] == [monitor]
    assert get_job(engine, embed)["status"] == "queued"


def test_complete_stores_the_result_and_only_the_holder_can_complete(engine: sa.Engine) -> None:
    job_id = enqueue(engine, "k", {})
    assert job_id is not None
    claim_jobs(engine, "w1")
    assert complete_job(engine, job_id, "w2", {"x": 1}) is False
    assert get_job(engine, job_id)["status"] == "running"
    assert complete_job(engine, job_id, "w1", {"drifted": ["intent"], "n": 3}) is True
    job = get_job(engine, job_id)
    assert (job["status"], job["result"], job["locked_until"]) == (
        "done",
        {"drifted": ["intent"], "n": 3},
        None,
    )
    assert job["finished_at"] is not None
    # Done is final: completing again records nothing.
    assert complete_job(engine, job_id, "w1", {"x": 2}) is False
    assert get_job(engine, job_id)["result"] == {"drifted": ["intent"], "n": 3}


def test_a_failed_attempt_is_retried_with_doubling_backoff_then_fails(engine: sa.Engine) -> None:
    job_id = enqueue(engine, "k", {}, max_attempts=3)
    assert job_id is not None
    [job] = claim_jobs(engine, "w")
    before = time.time_ns()
    assert fail_job(engine, job_id, "w", "boom 1", retry_seconds=10) == "queued"
    state = get_job(engine, job_id)
    assert (state["status"], state["error"], state["worker"] is not None) == ("queued", "boom 1", True)
    # Not due again before the backoff has passed.
    assert claim_jobs(engine, "w") == []
    assert claim_jobs(engine, "w", now_ns=before + 9 * S) == []
    [job] = claim_jobs(engine, "w", now_ns=time.time_ns() + 10 * S)
    assert job.attempts == 2

    before = time.time_ns()
    assert fail_job(engine, job_id, "w", "boom 2", retry_seconds=10) == "queued"
    assert claim_jobs(engine, "w", now_ns=before + 19 * S) == []  # the second wait is twice the first
    [job] = claim_jobs(engine, "w", now_ns=time.time_ns() + 20 * S)
    assert job.attempts == 3

    assert fail_job(engine, job_id, "w", "boom 3", retry_seconds=10) == "failed"
    state = get_job(engine, job_id)
    assert (state["status"], state["attempts"], state["error"]) == ("failed", 3, "boom 3")
    assert state["finished_at"] is not None
    assert claim_jobs(engine, "w", now_ns=time.time_ns() + 10_000 * S) == []


def test_retry_delay_doubles_up_to_an_hour() -> None:
    assert [retry_delay_seconds(n, 10) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_delay_seconds(30, 10) == 3600


def test_fail_without_retry_ends_the_job_at_once(engine: sa.Engine) -> None:
    job_id = enqueue(engine, "k", {}, max_attempts=5)
    assert job_id is not None
    claim_jobs(engine, "w")
    assert fail_job(engine, job_id, "other", "not mine") is None
    assert fail_job(engine, job_id, "w", "bad payload", retry=False) == "failed"
    assert get_job(engine, job_id)["status"] == "failed"


def test_dedup_key_adds_no_second_job_until_the_first_ends(engine: sa.Engine) -> None:
    first = enqueue(engine, "monitor.run", {"m": 1}, dedup_key="monitor:1")
    assert first is not None
    assert enqueue(engine, "monitor.run", {"m": 1}, dedup_key="monitor:1") is None  # queued
    claim_jobs(engine, "w")
    assert enqueue(engine, "monitor.run", {"m": 1}, dedup_key="monitor:1") is None  # running
    # A failed attempt that will be retried still holds the key.
    fail_job(engine, first, "w", "boom", retry_seconds=0)
    assert enqueue(engine, "monitor.run", {"m": 1}, dedup_key="monitor:1") is None
    claim_jobs(engine, "w")
    complete_job(engine, first, "w", None)
    assert get_job(engine, first)["dedup_key"] is None
    second = enqueue(engine, "monitor.run", {"m": 1}, dedup_key="monitor:1")
    assert second is not None and second != first
    # A job that failed for good gives its key back too.
    claim_jobs(engine, "w")
    fail_job(engine, second, "w", "boom", retry=False)
    assert enqueue(engine, "monitor.run", {"m": 1}, dedup_key="monitor:1") is not None
    # Other keys and jobs without a key are independent.
    assert enqueue(engine, "monitor.run", {"m": 2}, dedup_key="monitor:2") is not None
    assert enqueue(engine, "monitor.run", {}) is not None
    assert enqueue(engine, "monitor.run", {}) is not None


def test_a_dead_workers_job_is_taken_over_once_its_lock_expires(engine: sa.Engine) -> None:
    job_id = enqueue(engine, "k", {}, max_attempts=2)
    assert job_id is not None
    claim_jobs(engine, "dead", lock_seconds=30)
    now = time.time_ns()
    assert claim_jobs(engine, "alive", now_ns=now + 29 * S) == []
    [taken] = claim_jobs(engine, "alive", lock_seconds=30, now_ns=now + 31 * S)
    assert (taken.id, taken.worker, taken.attempts) == (job_id, "alive", 2)
    assert "'dead'" in (taken.error or "") and "attempt 1" in (taken.error or "")
    # The dead worker, should it come back, can neither renew nor record anything.
    with pytest.raises(JobLost):
        renew_lock(engine, job_id, "dead")
    assert complete_job(engine, job_id, "dead", {"late": True}) is False
    assert fail_job(engine, job_id, "dead", "late") is None
    assert complete_job(engine, job_id, "alive", {"ok": True}) is True
    assert get_job(engine, job_id)["result"] == {"ok": True}


def test_an_expired_last_attempt_fails_the_job(engine: sa.Engine) -> None:
    job_id = enqueue(engine, "k", {}, max_attempts=1, dedup_key="once")
    assert job_id is not None
    claim_jobs(engine, "dead", lock_seconds=5)
    assert claim_jobs(engine, "alive", now_ns=time.time_ns() + 6 * S) == []
    job = get_job(engine, job_id)
    assert job["status"] == "failed"
    assert "'dead'" in job["error"] and "no attempts left" in job["error"]
    assert enqueue(engine, "k", {}, dedup_key="once") is not None


def test_heartbeat_keeps_the_job(engine: sa.Engine) -> None:
    job_id = enqueue(engine, "k", {})
    assert job_id is not None
    claim_jobs(engine, "w", lock_seconds=5)
    until = renew_lock(engine, job_id, "w", lock_seconds=100)
    assert until >= time.time_ns() + 99 * S
    # What would have expired without the heartbeat is still held.
    assert claim_jobs(engine, "other", now_ns=time.time_ns() + 10 * S) == []


def test_concurrent_claims_never_share_a_job(engine: sa.Engine) -> None:
    ids = {enqueue(engine, "k", {"i": i}) for i in range(60)}
    taken: dict[str, list[int]] = {}

    def claim_all(worker: str) -> None:
        mine = taken.setdefault(worker, [])
        while batch := claim_jobs(engine, worker, limit=3):
            mine.extend(job.id for job in batch)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job_id for mine in taken.values() for job_id in mine]
    assert sorted(everything) == sorted(ids)  # each job once, none left


def test_list_and_count_jobs(engine: sa.Engine) -> None:
    a = enqueue(engine, "a", {})
    b = enqueue(engine, "b", {})
    enqueue(engine, "b", {})
    assert a is not None and b is not None
    claim_jobs(engine, "w", kinds=["a"])
    complete_job(engine, a, "w", None)
    assert [job["id"] for job in list_jobs(engine)] == [b + 1, b, a]
    assert [job["id"] for job in list_jobs(engine, status="done")] == [a]
    assert [job["id"] for job in list_jobs(engine, kind="b", limit=1)] == [b + 1]
    assert count_jobs(engine) == {"queued": 2, "running": 0, "done": 1, "failed": 0}
    with pytest.raises(ValidationFailed, match="not one of"):
        list_jobs(engine, status="finished")
    with pytest.raises(NotFound):
        get_job(engine, 999)


def test_prune_deletes_only_jobs_that_ended_long_ago(engine: sa.Engine) -> None:
    old_done, old_failed, queued = (enqueue(engine, "k", {}) for _ in range(3))
    assert old_done and old_failed and queued
    claim_jobs(engine, "w", limit=2)
    complete_job(engine, old_done, "w", None)
    fail_job(engine, old_failed, "w", "x", retry=False)
    assert prune_jobs(engine, 1) == 0  # ended just now
    assert prune_jobs(engine, 1, batch=1, now_ns=time.time_ns() + 2 * 86400 * S) == 2
    assert [job["id"] for job in list_jobs(engine)] == [queued]


def test_bad_jobs_are_refused(engine: sa.Engine) -> None:
    with pytest.raises(ValidationFailed, match="not JSON"):
        enqueue(engine, "k", {"tags": {"a", "b"}})
    with pytest.raises(ValidationFailed, match="at least 1"):
        enqueue(engine, "k", {}, max_attempts=0)
    with pytest.raises(ValidationFailed, match="kind"):
        enqueue(engine, "", {})
    with pytest.raises(ValidationFailed, match="JSON object"):
        enqueue(engine, "k", [1, 2])  # type: ignore[arg-type]
    assert list_jobs(engine) == []


def test_enqueue_inside_a_transaction_commits_or_rolls_back_with_it(engine: sa.Engine) -> None:
    from prodloop.store import run_write

    def enqueue_then_fail(connection: sa.Connection) -> None:
        enqueue(connection, "k", {"n": 1})
        raise RuntimeError("the monitor update failed")

    with pytest.raises(RuntimeError):
        run_write(engine, enqueue_then_fail)
    assert list_jobs(engine) == []
    job_id = run_write(engine, lambda connection: enqueue(connection, "k", {"n": 2}, dedup_key="d"))
    assert job_id is not None and get_job(engine, job_id)["payload"] == {"n": 2}
    assert run_write(engine, lambda connection: enqueue(connection, "k", {}, dedup_key="d")) is None
