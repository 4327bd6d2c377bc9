"""Fixtures of the monitoring tests."""

from __future__ import annotations

import pytest

from prodloop.monitoring.checks import register_check
from tests.monitoring.support import FakeCheck


@pytest.fixture
def fake() -> FakeCheck:
    """A check registered as ``fake`` whose findings the test sets in ``fake.plan``."""
    check = FakeCheck()
    register_check(check)
    return check
