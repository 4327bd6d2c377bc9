"""What a monitor is: a stored definition, written in YAML or sent to the API.

A monitor watches one feature. Each run looks at a *current* window that slides with time (the last
day, say) and compares it with a *reference*: the window just before it, a release, or a fixed span of
time. The checks (outcome rates, descriptor drift, text drift, embedding drift) each report findings;
findings become alerts, and an alert can route the affected traces into an annotation queue::

    name: support-decay
    feature: support-assistant
    schedule: 1d
    reference: {window: 14d}
    current: {window: 3d}
    checks:
      - type: outcome
        metric: handled_rate
      - type: descriptors
      - type: text
        field: input
    route: {queue: support-review, items: 50}
    webhook: https://hooks.example.com/prodloop
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from prodloop.documents import read_document_file
from prodloop.errors import ValidationFailed

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any) -> timedelta:
    """``"14d"``, ``"12h"``, ``"30m"``, ``"2w"``, ``"45s"`` or a number of seconds, as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(
            f"{value!r} is not a duration; write a number and a unit: 30m, 12h, 14d, 2w (or seconds)"
        )
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class Reference(BaseModel):
    """What the current window is compared with: exactly one of ``window`` (the span just before the
    current window), ``release`` (that release's traces up to the run) or ``since``/``until``."""

    model_config = ConfigDict(extra="forbid")

    window: Duration | None = None
    release: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Reference:
        kinds = [self.window is not None, self.release is not None, self.since is not None]
        if sum(kinds) != 1:
            raise ValueError("give the reference exactly one of window, release, or since (with until)")
        if (self.since is None) != (self.until is None):
            raise ValueError("a fixed reference needs both since and until")
        if self.since and self.until and _aware(self.since) >= _aware(self.until):
            raise ValueError("the reference's since must be before its until")
        return self

    def describe(self) -> str:
        if self.window is not None:
            return f"the {format_duration(self.window)} before"
        if self.release is not None:
            return f"release {self.release}"
        return f"{_aware(self.since).isoformat()} to {_aware(self.until).isoformat()}"  # type: ignore[arg-type]


class Current(BaseModel):
    """The window each run looks at: the ``window`` that ends at the run's time."""

    model_config = ConfigDict(extra="forbid")

    window: Duration = timedelta(days=1)


class Check(BaseModel):
    """One check of a monitor: its ``type`` (a registered check) and that check's own arguments."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, max_length=100)

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Route(BaseModel):
    """Send each new alert's slice to an annotation queue by itself."""

    model_config = ConfigDict(extra="forbid")

    queue: str = Field(min_length=1, max_length=100)
    items: int = Field(default=50, ge=1, le=10_000)
    priority: int = 0


class MonitorDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    feature: str = Field(min_length=1, max_length=200)
    description: str = ""
    reference: Reference = Reference(window=timedelta(days=14))
    current: Current = Current()
    #: Learned thresholds for the ``columns`` check: the reference is cut into chunks ("hour", "day",
    #: "week", or a number of rows) and a column alerts when a current chunk's statistic leaves the
    #: band of mean ± 3 sigma of the reference chunks' (NannyML's approach). None: the tests' own thresholds.
    chunk: Literal["hour", "day", "week"] | Annotated[int, Field(ge=20)] | None = None
    checks: list[Check] = Field(min_length=1)
    #: How often the worker runs it; none: only when asked (``prodloop monitor run``).
    schedule: Duration | None = None
    route: Route | None = None
    webhook: str | None = Field(default=None, pattern=r"^https?://")
    #: Resolve an alert by itself when a later run no longer finds its problem.
    auto_resolve: bool = True
    enabled: bool = True

    def to_document(self) -> dict[str, Any]:
        """The definition as stored and shown: durations written back as ``14d``, no empty fields."""
        document = self.model_dump(mode="json", exclude_none=True)
        document["reference"] = _durations(document["reference"], self.reference.window, "window")
        document["current"] = {"window": format_duration(self.current.window)}
        if self.schedule is not None:
            document["schedule"] = format_duration(self.schedule)
        document["checks"] = [{"type": check.type, **check.arguments()} for check in self.checks]
        return document


def _durations(part: dict[str, Any], value: timedelta | None, key: str) -> dict[str, Any]:
    if value is not None:
        part[key] = format_duration(value)
    return part


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_definition(document: Any) -> MonitorDefinition:
    """A monitor definition from a mapping (YAML or JSON), or a 422 naming each problem."""
    if not isinstance(document, dict):
        raise ValidationFailed(
            f"a monitor definition is a mapping with name, feature and checks, not {type(document).__name__}"
        )
    try:
        return MonitorDefinition.model_validate(document)
    except ValidationError as error:
        raise ValidationFailed.from_errors(error.errors()) from None


def read_definition_file(path: str | Path) -> dict[str, Any]:
    """The document in a YAML (or JSON) monitor file."""
    return read_document_file(path, "monitor", "a monitor is a mapping with name, feature and checks")


def windows(definition: MonitorDefinition, as_of: datetime) -> dict[str, Any]:
    """The current window and the reference of a run at ``as_of``:
    ``{"current": (since, until), "reference": (since, until) | None, "reference_release": str | None}``."""
    as_of = _aware(as_of)
    current = (as_of - definition.current.window, as_of)
    ref = definition.reference
    if ref.window is not None:
        return {
            "current": current,
            "reference": (current[0] - ref.window, current[0]),
            "reference_release": None,
        }
    if ref.release is not None:
        return {"current": current, "reference": None, "reference_release": ref.release}
    assert ref.since is not None and ref.until is not None
    return {
        "current": current,
        "reference": (_aware(ref.since), _aware(ref.until)),
        "reference_release": None,
    }
