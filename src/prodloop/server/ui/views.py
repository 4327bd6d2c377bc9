"""What the pages show, shaped for the templates: the template environment and its filters, the
trace-list query read from the URL, the span waterfall, chat messages and the coverage chart."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi.templating import Jinja2Templates
from starlette.datastructures import QueryParams

from prodloop.capture import TraceFilter

HERE = Path(__file__).parent
STATIC = HERE / "static"

#: The files under ``static/`` that may be served, with a short hash of each for cache-busting URLs.
STATIC_FILES = {
    path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    for path in STATIC.iterdir()
    if path.is_file()
}


def static_url(name: str) -> str:
    return f"/ui/static/{name}?v={STATIC_FILES[name]}"


#: What a cell shows when there is no value.
BLANK = "\N{EN DASH}"


def when(value: str | None) -> str:
    """``2024-05-01T10:00:03.123456Z`` as ``2024-05-01 10:00:03`` (UTC, to the second)."""
    if not value:
        return BLANK
    return value.replace("T", " ")[:19]


def duration(ms: float | None) -> str:
    if ms is None:
        return BLANK
    if ms == 0:
        return "0 ms"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{minutes:.0f} min {seconds:.0f} s"


def time_input(raw: str) -> str:
    """A time from the URL as a ``datetime-local`` input's value (UTC, no zone), so that the form shows
    it and sends it back; what cannot be read is returned as it came."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return raw
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds" if value.second else "minutes")


def percent(share: float) -> str:
    """A share as a percentage that keeps small numbers visible: 0.012 → ``1.2%``, 0.0004 → ``0.04%``."""
    if share <= 0:
        return "0%"
    value = share * 100
    if value >= 10:
        return f"{value:.0f}%"
    if value >= 0.1:
        return f"{value:.1f}%"
    return f"{value:.2f}%"


def number(value: int | float | None) -> str:
    return BLANK if value is None else f"{value:,}"


def shown(value: Any) -> str:
    """An attribute or signal value as text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def preview(text: str | None, length: int = 160) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= length else flat[: length - 1] + "…"


def badge_class(label: str) -> str:
    """A colour for a signal badge: a thumbs up is good, a thumbs down or a correction is bad; the rest
    (whose meaning depends on the feature: is ``escalated:True`` bad? is ``resolved:True`` good?) neutral."""
    if label == "thumbs:up":
        return "good"
    if label in ("thumbs:down", "correction"):
        return "bad"
    return "neutral"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        time_input=time_input,
        duration=duration,
        percent=percent,
        number=number,
        shown=shown,
        pretty=pretty,
        preview=preview,
        badge_class=badge_class,
    )
    env.globals["static_url"] = static_url
    return env


templates = Jinja2Templates(env=_environment())


# --- the trace list's query --------------------------------------------------------------------------

HAS_SIGNAL = {"": None, "with": True, "without": False}


def _when_param(label: str, raw: str, problems: list[str]) -> datetime | None:
    """A ``datetime-local`` value (or any ISO 8601 time), read as UTC when it names no zone."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        problems.append(f"{label} {raw!r} is not a date and time such as 2024-05-01T09:30")
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True)
class TraceQuery:
    """The trace list's filters and page, as strings from the URL (so the form can show them again)."""

    feature: str = ""
    release: str = ""
    model: str = ""
    since: str = ""
    until: str = ""
    has_signal: str = ""
    signal: str = ""
    status: str = ""
    q: str = ""
    cursor: str = ""
    limit: str = ""

    @classmethod
    def from_params(cls, params: QueryParams) -> TraceQuery:
        # Values are taken as sent: a release or model may itself have spaces at its ends.
        return cls(**{f.name: params.get(f.name, "") for f in fields(cls)})

    def page_size(self) -> int:
        return min(max(int(self.limit), 1), 200) if self.limit.isdigit() else 50

    def to_filter(self) -> tuple[TraceFilter, list[str]]:
        """The filter for :func:`prodloop.capture.list_traces`, and what was wrong with the input."""
        problems: list[str] = []
        if self.has_signal not in HAS_SIGNAL:
            problems.append(f"has_signal {self.has_signal!r} must be with, without or empty")
        if self.status not in ("", "ok", "error"):
            problems.append(f"status {self.status!r} must be ok, error or empty")
        return (
            TraceFilter(
                feature=self.feature or None,
                since=_when_param("since", self.since, problems),
                until=_when_param("until", self.until, problems),
                release=self.release or None,
                model=self.model or None,
                has_signal=HAS_SIGNAL.get(self.has_signal),
                signal=self.signal.strip() or None,
                status=self.status if self.status in ("ok", "error") else None,
                search=self.q.strip() or None,
            ),
            problems,
        )

    def url(self, **changes: str) -> str:
        """``/ui/traces`` with these filters (empty ones left out), after ``changes``."""
        query = replace(self, **changes)
        pairs = [(f.name, getattr(query, f.name)) for f in fields(query) if getattr(query, f.name)]
        return "/ui/traces" + ("?" + urlencode(pairs) if pairs else "")

    def is_filtered(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name not in ("cursor", "limit"))


# --- one trace ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaterfallRow:
    span: dict[str, Any]
    depth: int
    left: float  # percent of the trace's time from its start to the span's start
    width: float  # percent of the trace's time the span lasts (at least a sliver, to stay visible)


def _walk(spans: list[dict[str, Any]], depth: int) -> Iterator[tuple[dict[str, Any], int]]:
    for span in spans:
        yield span, depth
        yield from _walk(span["children"], depth + 1)


def waterfall(trace: dict[str, Any]) -> list[WaterfallRow]:
    """The span tree as rows in depth-first order, each with its bar's offset and width in percent."""
    walked = list(_walk(trace["spans"], 0))
    end_ms = max([trace["duration_ms"], *((s["offset_ms"] or 0) + s["duration_ms"] for s, _ in walked)])
    scale = 100 / end_ms if end_ms > 0 else 0
    rows = []
    for span, depth in walked:
        left = min(max((span["offset_ms"] or 0) * scale, 0), 99.5)
        width = max(span["duration_ms"] * scale, 0.5)
        rows.append(WaterfallRow(span=span, depth=depth, left=left, width=min(width, 100 - left)))
    return rows


def message_view(message: Any) -> dict[str, Any]:
    """A chat message as ``{"role", "text", "extra"}``: its text, and everything else it carried."""
    if not isinstance(message, dict):
        return {"role": "message", "text": shown(message), "extra": {}}
    content = message.get("content")
    extra = {k: v for k, v in message.items() if k not in ("role", "content", "parts") and v is not None}
    if content is None and message.get("parts") is not None:
        extra["parts"] = message["parts"]
    return {
        "role": str(message.get("role") or "message"),
        "text": "" if content is None else shown(content),
        "extra": extra,
    }


def genai_fields(span: dict[str, Any]) -> list[tuple[str, Any]]:
    """The GenAI fields that prodloop mapped out of the span's attributes, those that are set."""
    names = (
        "operation",
        "provider",
        "request_model",
        "response_model",
        "input_tokens",
        "output_tokens",
        "finish_reasons",
        "tool_name",
        "conversation_id",
        "release",
        "join_key",
    )
    return [(name, span[name]) for name in names if span.get(name) not in (None, "", [])]


# --- coverage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayBar:
    x: float
    width: float
    height: float  # the day's traces, scaled to the chart
    covered: float  # the part of them with any signal
    label: str


def coverage_bars(daily: list[dict[str, Any]], width: int = 600, height: int = 48) -> list[DayBar]:
    """Daily trace volume as SVG bars, with the share of traces that carry any signal filled in."""
    if not daily:
        return []
    most = max(day["traces"] for day in daily) or 1
    step = width / len(daily)
    bars = []
    for i, day in enumerate(daily):
        bar_height = max(day["traces"] / most * height, 1)
        bars.append(
            DayBar(
                x=i * step,
                width=max(step - 1, 1),
                height=bar_height,
                covered=bar_height * day["any_share"],
                label=f"{day['date']}: {day['traces']:,} traces, {percent(day['any_share'])} with a signal",
            )
        )
    return bars
