"""A monitor check whose findings each test decides, for the monitor, alert and routing tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from prodloop.monitoring.checks import CheckContext, CheckResult
from prodloop.monitoring.findings import Finding

NOW = datetime(2026, 3, 1, tzinfo=UTC)


class FakeArguments(BaseModel):
    label: str = "fake"


class FakeCheck:
    """Findings come from ``plan`` (a list of Findings, or an exception to raise)."""

    name = "fake"
    arguments = FakeArguments

    def __init__(self) -> None:
        self.plan: list[Finding] | Exception = []
        self.contexts: list[CheckContext] = []

    def run(self, context: CheckContext, arguments: Any) -> CheckResult:
        self.contexts.append(context)
        if isinstance(self.plan, Exception):
            raise self.plan
        return CheckResult({"label": arguments.label, "n": len(self.plan)}, list(self.plan))


def finding(key: str = "outcome:handled_rate", title: str = "handled rate fell", **slice_: Any) -> Finding:
    return Finding(key, title, "critical", {"drop": 0.2}, {"feature": "support", **slice_})
