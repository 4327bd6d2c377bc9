"""A labelled queue built through the annotation API, for the dataset tests.

Six traces become items of queue ``intents`` (overlap 2). Alice and Bob label every item; they
disagree on item 3 (which a reviewer adjudicates) and on item 5 (left waiting for review).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from prodloop.annotation import (
    Author,
    ItemIn,
    QueueSettings,
    add_items,
    adjudicate,
    correct_label,
    create_queue,
    lease_next_item,
    register_annotator,
    save_schema,
    submit_label,
)
from prodloop.capture import TraceIn, ingest_traces
from prodloop.server.auth import ensure_project

SCHEMA = {
    "name": "support-intent",
    "guidelines": "Pick the customer's main intent.",
    "fields": [
        {"name": "intent", "type": "categorical", "options": ["billing", "refund", "bug", "other"]},
        {"name": "urgent", "type": "categorical", "options": ["yes", "no"], "required": False},
    ],
}

#: Per item number: what Alice and Bob answer.
ANSWERS: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {
    0: ({"intent": "billing", "urgent": "no"}, {"intent": "billing", "urgent": "no"}),
    1: ({"intent": "refund", "urgent": "yes"}, {"intent": "refund", "urgent": "yes"}),
    2: ({"intent": "bug", "urgent": "no"}, {"intent": "bug", "urgent": "no"}),
    3: ({"intent": "billing", "urgent": "no"}, {"intent": "refund", "urgent": "no"}),
    4: ({"intent": "other", "urgent": "no"}, {"intent": "other", "urgent": "no"}),
    5: ({"intent": "bug", "urgent": "yes"}, {"intent": "other", "urgent": "yes"}),
}


def trace_id(n: int) -> str:
    return f"{n + 1:032x}"


@dataclass
class Labelled:
    engine: sa.Engine
    pid: int
    queue: str
    people: dict[str, Any]
    items: dict[int, int] = field(default_factory=dict)  # item number -> queue item id
    labels: dict[tuple[int, str], int] = field(default_factory=dict)  # (number, annotator) -> label id

    def label(self, number: int, who: str, value: dict[str, Any]) -> None:
        """``who`` labels item ``number`` through a lease, as an annotator does."""
        person = self.people[who]
        leased = lease_next_item(self.engine, self.pid, self.queue, person.id)
        assert leased is not None and leased["item"]["id"] == self.items[number], leased
        result = submit_label(self.engine, self.pid, self.items[number], person.id, value)
        self.labels[(number, who)] = result["label"]["id"]

    def correct(self, number: int, who: str, value: dict[str, Any], reason: str = "misread") -> int:
        person = self.people[who]
        result = correct_label(
            self.engine, self.pid, self.labels[(number, who)], Author(person.id), value, reason
        )
        self.labels[(number, who)] = result["id"]
        return int(result["id"])

    def add(self, numbers: range) -> None:
        """Traces and queue items for item ``numbers`` (the input is ``question N``)."""
        ingest_traces(
            self.engine,
            self.pid,
            [
                TraceIn(trace_id=trace_id(n), feature="support", input=f"question {n}", output=f"answer {n}")
                for n in numbers
            ],
        )
        add_items(
            self.engine,
            self.pid,
            self.queue,
            [ItemIn(trace_id=trace_id(n), metadata={"n": n}) for n in numbers],
        )
        from prodloop.store.schema import queue_items

        with self.engine.connect() as connection:
            for row in connection.execute(
                sa.select(queue_items.c.id, queue_items.c.trace_id).where(
                    queue_items.c.trace_id.in_([trace_id(n) for n in numbers])
                )
            ):
                self.items[int(row.trace_id, 16) - 1] = row.id


def labelled_queue(engine: sa.Engine, project: str = "shop", queue: str = "intents") -> Labelled:
    """The queue of the module docstring: items 0-5, labelled; item 3 adjudicated, item 5 in review."""
    pid = ensure_project(engine, project)
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name=queue, schema="support-intent@1", overlap=2))
    people = {
        "alice": register_annotator(engine, pid, "alice"),
        "bob": register_annotator(engine, pid, "bob"),
        "rita": register_annotator(engine, pid, "rita"),
    }
    setup = Labelled(engine, pid, queue, people)
    setup.add(range(6))
    for number in sorted(ANSWERS):
        for who, value in zip(("alice", "bob"), ANSWERS[number], strict=True):
            setup.label(number, who, value)
    adjudicate(
        engine,
        pid,
        setup.items[3],
        people["rita"].id,
        {"intent": "refund", "urgent": "no"},
        "asked for money back",
    )
    return setup
