"""What customers, agents and the helpdesk say about one answer, and when.

- Explicit feedback (thumbs, ratings, corrections) on about 1% of answers, more often on bad ones.
- Implicit signals: customers copy good answers, regenerate or abandon bad ones; on the e-mail channel
  the answer is a draft that an agent edits before sending.
- Outcomes from the helpdesk, by ticket id: ``resolved`` (was the ticket closed without a human?) for
  about 86% of tickets, hours to days later; ``escalated``; a ``csat`` survey score for a few.

A signal that would happen after the scenario's end has not happened yet and is left out, so the
last days carry fewer outcomes, as they do in production. Every signal has an id derived from its
trace id, so loading the scenario again stores nothing twice.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prodloop.capture.shapes import SignalIn

if TYPE_CHECKING:
    from prodloop.demo.scenario import Ticket

#: Chance of each signal by answer quality (good, partial, bad, error).
_RATES = {
    "thumbs": (0.006, 0.010, 0.018, 0.02),
    "rating": (0.0015, 0.0015, 0.002, 0.0),
    "correction": (0.0, 0.002, 0.004, 0.0),
    "copy": (0.14, 0.07, 0.03, 0.0),
    "regenerate": (0.02, 0.06, 0.11, 0.35),
    "abandon": (0.03, 0.08, 0.15, 0.30),
    "edit": (0.15, 0.45, 0.60, 0.0),  # e-mail drafts only
}
_THUMBS_UP = (0.9, 0.45, 0.12, 0.0)
_RATING_WEIGHTS = ((1, 2, 8, 35, 54), (8, 22, 40, 22, 8), (45, 30, 15, 7, 3), (60, 25, 10, 5, 0))
_QUALITIES = ("good", "partial", "bad", "error")
_OUTCOME_RATE = 0.86
_AGENTS = tuple(f"agent-{n:02d}" for n in range(1, 19))


def _hours(rng: random.Random, median: float, sigma: float, low: float, high: float) -> timedelta:
    return timedelta(hours=min(high, max(low, math.exp(rng.gauss(math.log(median), sigma)))))


def _edited(rng: random.Random, answer: str, correction: str, quality: str) -> str:
    greeting = rng.choice(("Hi,", "Hello,", "Hi there,", "Dear customer,"))
    if quality == "good":
        return f"{greeting}\n\n{answer}\n\nBest regards,\nAcme Home Support"
    return f"{greeting}\n\n{correction}\n\nBest regards,\nAcme Home Support"


def ticket_signals(
    rng: random.Random,
    truth: Ticket,
    *,
    ended: datetime,
    channel: str,
    customer: str,
    answer: str,
    correction: str,
    horizon: datetime,
) -> list[SignalIn]:
    """The signals of one ticket that happen before ``horizon``."""
    q = _QUALITIES.index(truth.quality)
    out: list[dict[str, Any]] = []

    def add(name: str, kind: str, after: timedelta, **fields: Any) -> None:
        out.append(
            {"id": f"demo:{truth.trace_id}:{name}", "kind": kind, "name": name, "at": ended + after, **fields}
        )

    def chance(name: str) -> bool:
        return rng.random() < _RATES[name][q]

    seconds = lambda a, b: timedelta(seconds=rng.uniform(a, b))  # noqa: E731
    if chance("thumbs"):
        up = rng.random() < _THUMBS_UP[q]
        add("thumbs", "explicit", seconds(4, 120), value="up" if up else "down", user_id=customer)
    if chance("rating"):
        value = rng.choices(range(1, 6), weights=_RATING_WEIGHTS[q])[0]
        add("rating", "explicit", seconds(10, 300), value=value, user_id=customer)
    if chance("correction"):
        add("correction", "explicit", seconds(60, 900), text=correction, user_id=customer)
    if channel == "email":
        if chance("edit"):
            text = _edited(rng, answer, correction, truth.quality)
            add("edit", "implicit", seconds(30, 1800), text=text, user_id=rng.choice(_AGENTS))
    else:
        for name, window in (("copy", (2, 90)), ("regenerate", (2, 40)), ("abandon", (120, 600))):
            if chance(name):
                add(name, "implicit", seconds(*window), user_id=customer)
    _outcomes(rng, truth, add)
    return [
        SignalIn(
            id=s["id"],
            trace_id=None if s["kind"] == "outcome" else truth.trace_id,
            join_key=truth.ticket if s["kind"] == "outcome" else None,
            kind=s["kind"],
            name=s["name"],
            value=s.get("value"),
            text=s.get("text"),
            user_id=s.get("user_id"),
            timestamp=s["at"],
            metadata=s.get("metadata", {}),
        )
        for s in out
        if s["at"] < horizon
    ]


def _outcomes(rng: random.Random, truth: Ticket, add: Any) -> None:
    """Helpdesk outcomes, joined by ticket id: the resolution first, escalations sooner, surveys later."""
    if rng.random() >= _OUTCOME_RATE:
        return
    closed = _hours(rng, 18, 1.0, 0.5, 24 * 7)
    source = {"source": "helpdesk", "ticket": truth.ticket}
    add("resolved", "outcome", closed, value=truth.handled, metadata=source)
    if rng.random() < 0.7:
        escalated = not truth.handled and rng.random() < 0.75
        add("escalated", "outcome", _hours(rng, 2, 0.8, 0.1, 48), value=escalated, metadata=source)
    if rng.random() < 0.07:
        weights = (2, 3, 10, 35, 50) if truth.handled else (45, 28, 17, 7, 3)
        score = rng.choices(range(1, 6), weights=weights)[0]
        add("csat", "outcome", closed + _hours(rng, 30, 0.5, 2, 24 * 5), value=score, metadata=source)
