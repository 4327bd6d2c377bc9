"""The checks a monitor runs, registered by name.

A check takes the run's windows and its own arguments and returns JSON-ready results (for charts and
the run's record) and the findings that become alerts. prodloop's own checks (``outcome``,
``descriptors``, ``text``, ``embedding``) are registered in :mod:`prodloop.monitoring.builtin_checks`;
users register theirs with :func:`register_check`. A check that raises is reported as that check's
failure in the run, never as prodloop's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from prodloop.errors import ValidationFailed
from prodloop.monitoring.definitions import MonitorDefinition
from prodloop.monitoring.findings import Finding


@dataclass(frozen=True)
class CheckContext:
    """What a check may look at: the store, the monitor and the run's windows."""

    engine: sa.Engine
    project_id: int
    monitor: MonitorDefinition
    as_of: datetime
    #: The current window, ``(since, until)``.
    current: tuple[datetime, datetime]
    #: The reference window, or None when the reference is a release.
    reference: tuple[datetime, datetime] | None
    reference_release: str | None
    #: Called with (done, total) by checks that take long.
    progress: Callable[[int, int], None] | None = None

    def slice(self, **extra: Any) -> dict[str, Any]:
        """The current window as an alert slice."""
        return {
            "feature": self.monitor.feature,
            "since": self.current[0].isoformat(),
            "until": self.current[1].isoformat(),
            **extra,
        }


@dataclass
class CheckResult:
    results: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)


class MonitorCheck(Protocol):
    """A named check with a Pydantic model for its arguments."""

    name: str

    @property
    def arguments(self) -> type[BaseModel]:
        """The Pydantic model of the check's arguments."""

    def run(self, context: CheckContext, arguments: Any) -> CheckResult: ...


_CHECKS: dict[str, MonitorCheck] = {}
_BUILTINS = "prodloop.monitoring.builtin_checks"


def register_check(check: MonitorCheck) -> MonitorCheck:
    """Make ``check`` available to monitors as ``type: <check.name>``."""
    _CHECKS[check.name] = check
    return check


def _load_builtins() -> None:
    importlib.import_module(_BUILTINS)


def check_names() -> list[str]:
    _load_builtins()
    return sorted(_CHECKS)


def get_check(name: str) -> MonitorCheck:
    _load_builtins()
    try:
        return _CHECKS[name]
    except KeyError:
        raise ValidationFailed(
            f"no check {name!r}; the checks are: {', '.join(sorted(_CHECKS))}", {"check": name}
        ) from None


def check_arguments(check: MonitorCheck, arguments: dict[str, Any], position: int) -> BaseModel:
    try:
        return check.arguments.model_validate(arguments)
    except ValidationError as error:
        failed = ValidationFailed.from_errors(error.errors())
        raise ValidationFailed(
            f"checks.{position} ({check.name}): {failed.message}",
            [{**problem, "loc": f"checks.{position}.{problem['loc']}"} for problem in failed.detail],
        ) from None


def validate_checks(definition: MonitorDefinition) -> list[tuple[MonitorCheck, BaseModel]]:
    """Each check of ``definition`` with its validated arguments, or a 422 naming the bad one."""
    validated = []
    for position, spec in enumerate(definition.checks):
        try:
            check = get_check(spec.type)
        except ValidationFailed as error:
            raise ValidationFailed(f"checks.{position}: {error.message}", error.detail) from None
        validated.append((check, check_arguments(check, spec.arguments(), position)))
    return validated
