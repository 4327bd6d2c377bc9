"""The full demo, loaded once for every demo test module that reads it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from prodloop.demo import load_demo
from prodloop.store import create_store_engine, upgrade

END = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sa.Engine, dict[str, int]]]:
    """The full default scenario (30 days, about 21,000 traces) with its labelled queue, its monitors
    and their daily runs, as ``make run`` loads it."""
    engine = create_store_engine(f"sqlite:///{tmp_path_factory.mktemp('demo') / 'prodloop.db'}")
    upgrade(engine)
    summary = load_demo(engine, project="demo", end=END)
    yield engine, summary
    engine.dispose()
