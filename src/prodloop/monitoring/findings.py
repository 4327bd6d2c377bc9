"""What a monitor found: the common shape that every check returns and that alerts are made of."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("warning", "critical")


@dataclass(frozen=True)
class Finding:
    """One thing a monitor run found wrong.

    ``key`` names what the finding is about and stays the same from run to run
    (``outcome:handled_rate``, ``column:support.route``, ``text:input``), so that the same problem seen
    again raises no second alert. ``slice`` says how to find the affected traces: ``feature``,
    ``since`` and ``until`` (ISO 8601), optionally ``release``, ``attributes`` ({name: value}) and
    ``trace_ids`` ranked most telling first.
    """

    key: str
    title: str
    severity: str = "warning"
    detail: dict[str, Any] = field(default_factory=dict)
    slice: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
