"""Group commit: concurrent writes share transactions, yet each commits or fails on its own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from prodloop.store import read_transaction, run_write
from prodloop.store.schema import projects


def _add(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
    def write(connection: sa.Connection) -> str:
        connection.execute(projects.insert().values(name=name, created_ns=1))
        if fail:
            raise ValueError(f"{name} refused")
        return name

    return write


def _names(engine: sa.Engine) -> set[str]:
    with read_transaction(engine) as connection:
        return set(connection.execute(sa.select(projects.c.name)).scalars())


def test_concurrent_writes_all_commit_and_failures_stay_their_own(engine: sa.Engine) -> None:
    start = threading.Barrier(24)

    def one(i: int) -> str:
        start.wait()
        return run_write(engine, _add(f"p{i}", fail=i % 5 == 0))

    results: dict[int, str | Exception] = {}
    with ThreadPoolExecutor(max_workers=24) as pool:
        futures = {i: pool.submit(one, i) for i in range(24)}
        for i, future in futures.items():
            try:
                results[i] = future.result()
            except ValueError as exc:
                results[i] = exc
    for i, result in results.items():
        if i % 5 == 0:
            assert isinstance(result, ValueError) and str(result) == f"p{i} refused"
        else:
            assert result == f"p{i}"
    assert _names(engine) == {f"p{i}" for i in range(24) if i % 5}


def test_a_write_that_breaks_a_constraint_leaves_nothing(engine: sa.Engine) -> None:
    run_write(engine, _add("taken"))

    def two_rows(connection: sa.Connection) -> None:
        connection.execute(projects.insert().values(name="fresh", created_ns=1))
        connection.execute(projects.insert().values(name="taken", created_ns=1))

    with pytest.raises(sa.exc.IntegrityError):
        run_write(engine, two_rows)
    assert _names(engine) == {"taken"}


def test_result_is_returned_after_commit(engine: sa.Engine) -> None:
    assert run_write(engine, _add("visible")) == "visible"
    # Another connection sees it at once: the write was committed before run_write returned.
    assert "visible" in _names(engine)


def test_sqlite_log_is_checkpointed_beside_the_writer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Commits never pay for a checkpoint; a thread of the writer copies the log into the database file."""
    import time

    from prodloop.store import create_store_engine, upgrade

    path = tmp_path / "ckpt.db"
    engine = create_store_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    before = path.stat().st_size
    for i in range(40):
        run_write(engine, _add(f"{i:03d}" + "x" * 90))
    deadline = time.monotonic() + 10
    while path.stat().st_size == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.stat().st_size > before, "the write-ahead log was never checkpointed"
    engine.dispose()
