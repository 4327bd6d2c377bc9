"""The demo's monitors, with the runs a daily schedule would have made over the scenario.

What a new user finds after loading the demo:

- ``support-outcomes``: the handled rate (by the helpdesk's ``resolved`` outcome, broken down by the
  router's intent) and escalations over the last 2 days against the 14 before, with the error rate
  and latency beside them. It stays quiet through the prompt change on day 10 and alerts
  within 3 days of the launch on day 20, while errors and latency stay flat.
- ``support-inputs``: what customers ask. The router's intent (``support.route``), channel and locale,
  the descriptors of inputs and answers (length, refusals, language, tool calls, tokens, cost), and the
  texts themselves through a domain classifier: the new product's questions show up here.
- ``support-content``: the inputs' embeddings against the last 14 days, and the eval set's coverage of
  current traffic. The eval set ``support-eval`` is what the team built when ``support-v2`` shipped:
  answers from before the launch, labelled by a curator, so the new product's questions are the
  uncovered cluster.

Each monitor is run as of the end of each day from the first week on (the content monitor, the
costliest, as of the last day only), as the worker would have run it, so its history and alerts are
there from the start. Nothing is routed to a queue: that is the user's click.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from rich.progress import Progress

from prodloop.annotation import (
    ItemIn,
    QueueSettings,
    add_items,
    create_queue,
    lease_next_item,
    register_annotator,
    submit_label,
)
from prodloop.datasets import snapshot_queue
from prodloop.demo.annotation import _schema_ref, true_value
from prodloop.demo.scenario import FEATURE, DemoScenario, Ticket, launch_day, prompt_change_day
from prodloop.monitoring import list_monitors, run_monitor, save_monitor

EVAL_QUEUE = "support-eval"
EVAL_SNAPSHOT = "support-eval"
CURATOR = "eva-curator"
#: Answers in the eval set, a few of each intent, from the weeks before the launch.
EVAL_ITEMS = 150
#: The first day whose end the daily runs are made as of: from then on the reference holds a week.
FIRST_RUN_DAY = 6
#: Days (from the end) on which the content monitor's runs are made; the others are cheap enough daily.
CONTENT_DAYS = 1


def monitor_definitions(eval_snapshot: str | None) -> list[dict[str, Any]]:
    """The demo's monitors (the content monitor only with an eval set to cover)."""
    outcomes: dict[str, Any] = {
        "name": "support-outcomes",
        "feature": FEATURE,
        "description": "Was the problem solved? Outcomes from the helpdesk, with errors and latency.",
        "schedule": "1d",
        "reference": {"window": "14d"},
        "current": {"window": "2d"},
        "checks": [
            {"type": "outcome", "metric": "handled_rate", "breakdown": "support.route"},
            {"type": "outcome", "metric": "escalation_rate", "breakdown": "support.route"},
            {"type": "outcome", "metric": "error_rate"},
            {"type": "outcome", "metric": "latency_p95"},
        ],
    }
    inputs: dict[str, Any] = {
        "name": "support-inputs",
        "feature": FEATURE,
        "description": "What customers ask about, and how the answers look.",
        "schedule": "1d",
        "reference": {"window": "14d"},
        "current": {"window": "3d"},
        "checks": [
            {"type": "columns", "attributes": ["support.route", "support.channel", "support.locale"]},
            {"type": "descriptors"},
            {"type": "text", "field": "input", "max_rows": 3000},
        ],
    }
    monitors = [outcomes, inputs]
    if eval_snapshot is not None:
        monitors.append(
            {
                "name": "support-content",
                "feature": FEATURE,
                "description": "Where traffic went: embedding drift, and what the eval set no longer covers.",
                "schedule": "1d",
                "reference": {"window": "14d"},
                "current": {"window": "3d"},
                "checks": [
                    {"type": "embedding", "field": "input", "max_rows": 1000},
                    {"type": "coverage", "snapshot": eval_snapshot, "max_traces": 1500},
                ],
            }
        )
    return monitors


def _eval_tickets(scenario: DemoScenario, rng: random.Random) -> list[Ticket]:
    """A few answers of each intent from the second release, before the launch."""
    first, last = prompt_change_day(scenario.days), launch_day(scenario.days)
    by_intent: dict[str, list[Ticket]] = defaultdict(list)
    for ticket in scenario.tickets:
        if first <= ticket.day < last and not ticket.lost and ticket.quality != "error":
            by_intent[ticket.intent].append(ticket)
    chosen: list[Ticket] = []
    per_intent = max(1, EVAL_ITEMS // max(1, len(by_intent)))
    for intent in sorted(by_intent):
        group = by_intent[intent]
        chosen.extend(rng.sample(group, min(per_intent, len(group))))
    return chosen


def build_eval_set(engine: sa.Engine, pid: int, scenario: DemoScenario) -> str | None:
    """Queue ``support-eval``: pre-launch answers labelled by a curator, and its snapshot."""
    rng = random.Random(f"prodloop-demo-eval:{scenario.seed}:{scenario.start.isoformat()}:{scenario.days}")
    tickets = _eval_tickets(scenario, rng)
    if len(tickets) < 10:
        return None
    truth = {t.trace_id: t for t in tickets}
    create_queue(
        engine,
        pid,
        QueueSettings.model_validate(
            {
                "name": EVAL_QUEUE,
                "schema": _schema_ref(engine, pid, 1),
                "description": "The eval set built when support-v2 shipped: answers from before the launch.",
                "overlap": 1,
                "gold_share": 0.0,
            }
        ),
    )
    add_items(engine, pid, EVAL_QUEUE, [ItemIn(trace_id=t.trace_id) for t in tickets], source="demo")
    curator = register_annotator(engine, pid, CURATOR, "human")
    while (leased := lease_next_item(engine, pid, EVAL_QUEUE, curator.id)) is not None:
        item = leased["item"]
        submit_label(engine, pid, item["id"], curator.id, true_value(truth[item["trace_id"]], version=1))
    snapshot = snapshot_queue(
        engine, pid, EVAL_QUEUE, EVAL_SNAPSHOT, aggregation="majority", created_by=CURATOR
    )
    return str(snapshot["id"])


def monitor_demo(
    engine: sa.Engine, pid: int, scenario: DemoScenario, bar: Progress | None = None
) -> dict[str, Any]:
    """Create the demo's eval set and monitors, and backfill their daily runs. Nothing is done when
    the project has monitors already: loading twice runs nothing twice."""
    summary: dict[str, Any] = {"monitors": 0, "runs": 0, "alerts": 0, "eval_snapshot": None}
    if list_monitors(engine, pid) or scenario.days < 3:
        return summary
    summary["eval_snapshot"] = build_eval_set(engine, pid, scenario)
    definitions = monitor_definitions(summary["eval_snapshot"])
    for definition in definitions:
        save_monitor(engine, pid, definition)
    plan = []
    for day in range(min(FIRST_RUN_DAY, scenario.days - 1), scenario.days):
        as_of = scenario.start + timedelta(days=day + 1)
        for definition in definitions:
            content = definition["name"] == "support-content"
            if not content or day >= scenario.days - CONTENT_DAYS:
                plan.append((definition["name"], as_of))
    task = bar.add_task("run demo monitors", total=len(plan)) if bar is not None else None
    for name, as_of in plan:
        run = run_monitor(engine, pid, name, as_of=as_of, route=False)
        summary["runs"] += 1
        summary["alerts"] += len(run["alerts"]["opened"])
        if bar is not None and task is not None:
            bar.update(task, advance=1)
    summary["monitors"] = len(definitions)
    return summary
