"""Flywheel health: labels added and gain per 1,000 labels per checkpoint, the stall rule, and the
attribution of a stall, on checkpoints and snapshots built through the annotation and datasets API
(SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats
from scipy.optimize import curve_fit

from prodloop.annotation import (
    ItemIn,
    QueueSettings,
    add_items,
    correct_label,
    create_queue,
    lease_next_item,
    register_annotator,
    save_schema,
    submit_label,
)
from prodloop.annotation.labels import Author
from prodloop.capture import TraceIn, ingest_traces
from prodloop.datasets import register_checkpoint, snapshot_queue
from prodloop.errors import NotFound, ValidationFailed
from prodloop.monitoring.checks import CheckContext, check_arguments
from prodloop.monitoring.definitions import parse_definition
from prodloop.monitoring.findings import Finding
from prodloop.monitoring.flywheel import (
    FINDING_KEY,
    FlywheelCheck,
    StallRule,
    checkpoint_eval_score,
    fit_learning_curve,
    flywheel_health,
    stalled_flywheel_finding,
)
from prodloop.server.auth import ensure_project

SCHEMA = {
    "name": "intent",
    "guidelines": "The customer's main intent.",
    "fields": [{"name": "intent", "type": "categorical", "options": ["billing", "refund", "bug", "other"]}],
}
INTENTS = ("billing", "refund", "bug", "other")
#: Per round: 4 items, each labelled by two annotators, so every checkpoint adds 8 labels.
ITEMS_PER_ROUND = 4
#: The rule of the store tests: small rounds, so a window of two steps needs 16 new labels.
RULE = StallRule(window=2, min_labels=16, min_gain_points=1.0, min_quality_drop=0.1)

NOW = datetime.now(UTC)
#: Today's traffic is compared with the training inputs over this window.
CURRENT = (NOW - timedelta(days=1), NOW + timedelta(hours=1))

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
PLANS = ("basic", "family", "premium", "student", "business")


def billing_question(n: int) -> str:
    """Questions about charges and invoices (the topics the training data covers)."""
    return (
        f"I was charged twice for my {PLANS[n % 5]} plan in {MONTHS[n % 8]}, "
        f"invoice {1000 + 7 * n} shows a duplicate payment, please refund it"
    )


def crash_question(n: int) -> str:
    """Questions about the mobile app crashing (a topic the training data never saw)."""
    devices = ("android tablet", "iphone", "pixel phone", "galaxy watch", "ipad")
    return (
        f"The mobile app crashes with a black screen on my {devices[n % 5]} whenever I open the camera "
        f"to scan a receipt, build {300 + 3 * n}, after the latest update"
    )


def power_curve(labels: float) -> float:
    """A learning curve that levels off at 0.8: big gains early, almost none after 24 labels."""
    return 0.8 - 102.4 * labels**-3.0


@dataclass
class Flywheel:
    """A project whose queue ``intents`` is labelled in rounds; a checkpoint is trained after each."""

    engine: sa.Engine
    pid: int
    people: dict[str, Any]
    rounds: int = 0
    items: list[int] = field(default_factory=list)
    labels: dict[tuple[int, str], int] = field(default_factory=dict)

    def label_round(
        self, *, disagree: int = 0, gold: int = 0, gold_right: bool = True, topic: Any = billing_question
    ) -> None:
        """Four new traces (30 days old) become items, and ``gold`` gold items join the queue; alice
        and bob label each item, bob disagreeing with alice on the first ``disagree`` of them, and
        answer the gold items they are served right or (``gold_right`` False) wrong."""
        start = self.rounds * ITEMS_PER_ROUND
        numbers = range(start, start + ITEMS_PER_ROUND)
        ids = [f"{n + 1:032x}" for n in numbers]
        ingest_traces(
            self.engine,
            self.pid,
            [
                TraceIn(
                    trace_id=trace_id,
                    feature="support",
                    input=topic(n),
                    output="ok",
                    start_time=NOW - timedelta(days=30),
                )
                for n, trace_id in zip(numbers, ids, strict=True)
            ],
        )
        items = [
            ItemIn(trace_id=trace_id, metadata={"n": n}) for n, trace_id in zip(numbers, ids, strict=True)
        ]
        for g in range(gold):
            answer = INTENTS[(self.rounds + g) % 4]
            items.append(
                ItemIn(
                    input=f"gold question {self.rounds}-{g}",
                    gold={"intent": answer},
                    metadata={"gold": True, "answer": answer},
                )
            )
        add_items(self.engine, self.pid, "intents", items)
        disagreeing = set(numbers[:disagree])

        def answer(who: str, item: dict[str, Any]) -> str:
            meta = item["metadata"]
            if meta.get("gold"):
                return str(meta["answer"]) if gold_right else INTENTS[(INTENTS.index(meta["answer"]) + 1) % 4]
            n = meta["n"]
            return INTENTS[(n + 1) % 4] if who == "bob" and n in disagreeing else INTENTS[n % 4]

        def label_next(who: str) -> dict[str, Any] | None:
            person = self.people[who]
            leased = lease_next_item(self.engine, self.pid, "intents", person.id)
            if leased is None:
                return None
            item = leased["item"]
            result = submit_label(self.engine, self.pid, item["id"], person.id, {"intent": answer(who, item)})
            if "n" in item["metadata"]:
                self.labels[(item["metadata"]["n"], who)] = result["label"]["id"]
            return item

        for _ in numbers:
            for who in ("alice", "bob"):
                while (item := label_next(who)) is not None and item["metadata"].get("gold"):
                    pass
        for who in ("alice", "bob"):
            while label_next(who) is not None:
                pass
        self.rounds += 1

    def checkpoint(self, name: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        snapshot = snapshot_queue(self.engine, self.pid, "intents", f"train-{name}")
        return register_checkpoint(
            self.engine, self.pid, name, [(snapshot["id"], "train")], base_model="base", metadata=metadata
        )

    def traffic(self, topic: Any, count: int = 30) -> list[str]:
        """``count`` production traces of today, about ``topic``."""
        ids = [f"{0xF000 + n:032x}" for n in range(count)]
        ingest_traces(
            self.engine,
            self.pid,
            [
                TraceIn(
                    trace_id=trace_id,
                    feature="support",
                    input=topic(500 + n),
                    output="ok",
                    start_time=NOW - timedelta(hours=2),
                )
                for n, trace_id in enumerate(ids)
            ],
        )
        return ids


def new_flywheel(engine: sa.Engine) -> Flywheel:
    pid = ensure_project(engine, "shop")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="intents", schema="intent@1", overlap=2, gold_share=0.3))
    people = {who: register_annotator(engine, pid, who) for who in ("alice", "bob")}
    return Flywheel(engine, pid, people)


def accuracy(score: float) -> dict[str, Any]:
    return {"eval": {"metric": "accuracy", "score": score, "n": 500}}


def causes_by_name(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cause["cause"]: cause for cause in health["causes"]}


# --------------------------------------------------------------------------------------------------
# Learning curves against scipy and hand-computed values


def test_log_learning_curve_matches_scipy_linregress_and_hand_computed_readings() -> None:
    labels = np.array([500.0, 1000.0, 2000.0, 4000.0, 8000.0])
    scores = np.array([0.612, 0.648, 0.671, 0.709, 0.731])
    curve = fit_learning_curve(labels, scores, model="log")
    reference = stats.linregress(np.log(labels), scores)
    assert curve["model"] == "log"
    assert curve["params"]["a"] == pytest.approx(reference.intercept, rel=1e-9)
    assert curve["params"]["b"] == pytest.approx(reference.slope, rel=1e-9)
    assert curve["r2"] == pytest.approx(reference.rvalue**2, abs=1e-6)
    b = reference.slope
    # d(score)/d(labels) = b / n, in points (0.01) per 1,000 labels.
    assert curve["slope_per_1000"] == pytest.approx(b / 8000 * 1000 / 0.01, rel=1e-5)
    # a + b ln(n + m) = a + b ln(n) + 0.01  <=>  m = n (e^(0.01 / b) - 1).
    assert curve["labels_for_one_point"] == math.ceil(8000 * (math.exp(0.01 / b) - 1))


def test_power_learning_curve_recovers_the_generating_curve_and_agrees_with_curve_fit() -> None:
    labels = np.array([200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0])
    scores = 0.9 - 2.5 * labels**-0.5
    curve = fit_learning_curve(labels, scores)
    assert curve["model"] == "power"
    assert curve["r2"] == pytest.approx(1.0, abs=1e-9)
    assert curve["params"]["c"] == pytest.approx(0.9, abs=1e-6)
    assert curve["params"]["alpha"] == pytest.approx(0.5, abs=1e-5)
    assert curve["params"]["a"] == pytest.approx(2.5, rel=1e-4)
    assert curve["asymptote"] == pytest.approx(0.9, abs=1e-6)

    def power(n: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
        return c - a * n**-alpha

    (c, _, alpha), _ = curve_fit(power, labels, scores, p0=[1.0, 1.0, 0.3], maxfev=20000)
    assert curve["params"]["c"] == pytest.approx(c, abs=1e-6)
    assert curve["params"]["alpha"] == pytest.approx(alpha, abs=1e-5)
    # Slope a·alpha·n^(-alpha-1), and the labels for +1 point: c - a (n + m)^-alpha = f(n) + 0.01.
    n = 6400.0
    assert curve["slope_per_1000"] == pytest.approx(2.5 * 0.5 * n**-1.5 * 1000 / 0.01, rel=1e-4)
    headroom = 2.5 * n**-0.5  # 0.03125 below the asymptote
    needed = (((headroom - 0.01) / 2.5) ** (-1 / 0.5)) - n
    assert curve["labels_for_one_point"] == pytest.approx(needed, rel=1e-4)
    assert curve["alternatives"]["log"]["r2"] < curve["r2"]


def test_a_curve_that_levels_off_within_a_point_says_no_amount_of_labels_gives_one() -> None:
    labels = np.array([12.0, 24.0, 36.0, 48.0, 60.0])
    curve = fit_learning_curve(labels, [power_curve(n) for n in labels])
    assert curve["model"] == "power"
    assert curve["asymptote"] == pytest.approx(0.8, abs=1e-6)
    assert curve["labels_for_one_point"] is None


def test_learning_curve_inputs_are_checked() -> None:
    with pytest.raises(ValidationFailed, match="different label counts"):
        fit_learning_curve([100, 100], [0.5, 0.6])
    with pytest.raises(ValidationFailed, match="positive label counts"):
        fit_learning_curve([0, 100], [0.5, 0.6])


def test_eval_score_convention() -> None:
    assert checkpoint_eval_score({"eval": {"metric": "f1", "score": 0.7, "n": 300}}) == {
        "score": 0.7,
        "metric": "f1",
        "n": 300,
        "source": "metadata.eval",
    }
    assert checkpoint_eval_score({"eval_score": 71.5, "eval_metric": "bleu"}) == {
        "score": 71.5,
        "metric": "bleu",
        "n": None,
        "source": "metadata.eval_score",
    }
    assert checkpoint_eval_score({"lr": 0.1}) is None
    assert checkpoint_eval_score({"eval": {"score": "high"}}) is None
    assert checkpoint_eval_score(None) is None


# --------------------------------------------------------------------------------------------------
# The per-checkpoint table and a healthy flywheel


def test_labels_added_and_gain_per_1000_labels_per_checkpoint(engine: sa.Engine) -> None:
    fly = new_flywheel(engine)
    fly.label_round()
    fly.checkpoint("ft-1", accuracy(0.70))
    fly.label_round()
    fly.checkpoint("ft-2", {"eval_score": 0.75})
    fly.label_round()
    # A correction: the snapshot now holds alice's new label in place of her old one.
    correct_label(
        engine, fly.pid, fly.labels[(0, "alice")], Author(fly.people["alice"].id), {"intent": "bug"}, "x"
    )
    fly.checkpoint("ft-3")  # its score comes from the override below
    snapshot = snapshot_queue(engine, fly.pid, "intents", "eval-only")
    register_checkpoint(engine, fly.pid, "judge", [(snapshot["id"], "eval")])

    health = flywheel_health(engine, fly.pid, scores={"ft-3": 0.81}, rule=RULE, current=CURRENT)

    table = [
        (e["name"], e["labels"], e["labels_added"], e["labels_removed"], e["score"], e["score_source"])
        for e in health["checkpoints"]
    ]
    assert table == [
        ("ft-1", 8, 8, 0, 0.70, "metadata.eval"),
        ("ft-2", 16, 8, 0, 0.75, "metadata.eval_score"),
        ("ft-3", 24, 9, 1, 0.81, "override"),
    ]
    assert health["skipped"] == [{"name": "judge", "reason": "no training snapshot"}]
    assert health["point"] == 0.01
    first, second, third = health["checkpoints"]
    assert first["score_change"] is None and first["gain_per_1000"] is None
    assert second["score_change_points"] == pytest.approx(5.0)
    # +5 points for 8 labels: 5 / 8 * 1000 points per 1,000 labels.
    assert second["gain_per_1000"] == pytest.approx(5 / 8 * 1000, abs=1e-3)
    assert third["score_change_points"] == pytest.approx(6.0)
    assert third["gain_per_1000"] == pytest.approx(6 / 9 * 1000, abs=1e-3)
    assert first["metric"] == "accuracy" and first["eval_n"] == 500
    assert second["rows"] == 8

    # Score rising with labels: healthy, nothing to attribute, no finding.
    stall = health["stall"]
    assert stall["status"] == "healthy"
    assert stall["window"]["from"] == "ft-1" and stall["window"]["to"] == "ft-3"
    assert stall["window"]["labels_added"] == 17  # 24 labels, 8 of them in ft-1, one replaced
    assert stall["window"]["score_change_points"] == pytest.approx(11.0)
    assert stall["window"]["gain_per_1000"] == pytest.approx(11 / 17 * 1000, abs=1e-3)
    assert health["causes"] == [] and health["finding"] is None

    # Only some checkpoints, and the errors a user can make.
    two = flywheel_health(engine, fly.pid, checkpoints=["ft-2", "ft-1"], rule=RULE, current=CURRENT)
    assert [e["name"] for e in two["checkpoints"]] == ["ft-1", "ft-2"]
    assert two["stall"]["status"] == "not_enough_checkpoints"
    with pytest.raises(NotFound, match="ft-9"):
        flywheel_health(engine, fly.pid, checkpoints=["ft-9"])
    with pytest.raises(ValidationFailed, match="ft-9"):
        flywheel_health(engine, fly.pid, scores={"ft-9": 0.9})


# --------------------------------------------------------------------------------------------------
# Stalls and their causes


def test_plateauing_learning_curve_is_a_stall_from_diminishing_returns(engine: sa.Engine) -> None:
    fly = new_flywheel(engine)
    for k in range(5):
        fly.label_round()
        fly.checkpoint(f"ft-{k + 1}", accuracy(power_curve(8 * (k + 1))))
    fly.traffic(billing_question)  # today's traffic is about what the model was trained on

    health = flywheel_health(engine, fly.pid, rule=RULE, current=CURRENT)

    window = health["stall"]["window"]
    assert health["stall"]["status"] == "stalled"
    assert window["labels_added"] == 16
    assert window["score_change_points"] == pytest.approx(
        (power_curve(40) - power_curve(24)) / 0.01, abs=1e-4
    )
    curve = health["learning_curve"]
    labels = np.array([8.0, 16.0, 24.0, 32.0, 40.0])
    scores = np.array([power_curve(n) for n in labels])
    (c, _, alpha), _ = curve_fit(lambda n, c, a, al: c - a * n**-al, labels, scores, p0=[0.8, 100, 2.5])
    assert curve["model"] == "power"
    assert curve["params"]["c"] == pytest.approx(c, abs=1e-6)
    assert curve["params"]["alpha"] == pytest.approx(alpha, abs=1e-4)

    causes = causes_by_name(health)
    diminishing = causes["diminishing_returns"]
    assert diminishing["supported"]
    assert diminishing["evidence"]["basis"] == "earlier checkpoints"
    # The curve of ft-1..ft-3 foresaw the plateau: it predicted what ft-5 got.
    assert diminishing["evidence"]["predicted_gain_points"] == pytest.approx(
        window["score_change_points"], abs=1e-3
    )
    assert not causes["label_quality"]["supported"]
    assert causes["label_quality"]["evidence"]["alpha_earlier"] == pytest.approx(1.0)
    assert causes["label_quality"]["evidence"]["alpha_recent"] == pytest.approx(1.0)
    assert not causes["distribution_shift"]["supported"]
    assert health["causes"][0]["cause"] == "diminishing_returns"

    json.dumps(health, allow_nan=False)  # JSON-ready, as the monitor run stores it
    finding = health["finding"]
    assert finding["key"] == FINDING_KEY and finding["severity"] == "warning"
    assert "diminishing returns" in finding["title"] and "16 labels" in finding["title"]
    assert finding["slice"] == {
        "feature": "support",
        "since": CURRENT[0].isoformat(),
        "until": CURRENT[1].isoformat(),
    }
    assert finding["detail"]["labels_added"] == 16


def test_later_labels_with_lower_agreement_are_a_stall_from_label_quality(engine: sa.Engine) -> None:
    fly = new_flywheel(engine)
    scores = [0.60, 0.70, 0.80, 0.80, 0.78]
    for k, score in enumerate(scores):
        # From ft-4 on, bob stops following the guidelines and both miss the gold answers.
        fly.label_round(disagree=3 if k >= 3 else 0, gold=2, gold_right=k < 3)
        fly.checkpoint(f"ft-{k + 1}", accuracy(score))

    health = flywheel_health(engine, fly.pid, rule=RULE, current=CURRENT)

    assert health["stall"]["status"] == "stalled"
    causes = causes_by_name(health)
    quality = causes["label_quality"]
    assert quality["supported"]
    series = quality["evidence"]["checkpoints"]
    assert [q["checkpoint"] for q in series] == ["ft-1", "ft-2", "ft-3", "ft-4", "ft-5"]
    assert [q["new_labels"] for q in series] == [8] * 5
    assert [q["alpha"] for q in series[:3]] == [1.0, 1.0, 1.0]
    assert all(q["alpha"] < 0.2 for q in series[3:])
    assert quality["evidence"]["alpha_drop"] > 0.8
    assert all(q["gold_accuracy"] == 1.0 for q in series[:3] if q["gold_labels"])
    assert all(q["gold_accuracy"] == 0.0 for q in series[3:] if q["gold_labels"])
    assert quality["evidence"]["gold_accuracy_earlier"] == 1.0
    assert quality["evidence"]["gold_accuracy_recent"] == 0.0
    assert "gold accuracy from 100.0% to 0.0%" in quality["summary"]
    # Gains came linearly up to ft-3: the curve of those checkpoints predicted far more than ft-5 got.
    diminishing = causes["diminishing_returns"]
    assert not diminishing["supported"]
    assert diminishing["evidence"]["shortfall_points"] > 5
    # No traffic today: nothing to compare the training inputs with.
    assert not causes["distribution_shift"]["supported"]
    assert "too few traces" in causes["distribution_shift"]["summary"]
    assert health["causes"][0]["cause"] == "label_quality"

    finding = stalled_flywheel_finding(health)
    assert isinstance(finding, Finding)
    assert finding.severity == "critical"  # more labels made it 2 points worse
    assert "falling label quality" in finding.title

    # As a monitor check: the report is the run's result, the stall its finding.
    definition = parse_definition(
        {"name": "fly", "feature": "support", "checks": [{"type": "flywheel", "min_labels": 16}]}
    )
    check = FlywheelCheck()
    arguments = check_arguments(check, definition.checks[0].arguments(), 0)
    context = CheckContext(engine, fly.pid, definition, CURRENT[1], CURRENT, None, None)
    result = check.run(context, arguments)
    assert result.results["stall"]["status"] == "stalled"
    assert "finding" not in result.results
    assert [(f.key, f.severity) for f in result.findings] == [(FINDING_KEY, "critical")]
    assert result.findings[0].slice["since"] == CURRENT[0].isoformat()
    with pytest.raises(ValidationFailed, match="window"):
        check_arguments(check, {"window": 0}, 0)


def test_training_inputs_about_other_topics_than_todays_traffic_are_a_distribution_shift(
    engine: sa.Engine,
) -> None:
    fly = new_flywheel(engine)
    for k, score in enumerate([0.60, 0.70, 0.80, 0.803, 0.805]):
        fly.label_round()
        fly.checkpoint(f"ft-{k + 1}", accuracy(score))
    today = fly.traffic(crash_question)

    health = flywheel_health(engine, fly.pid, rule=RULE, current=CURRENT)

    assert health["stall"]["status"] == "stalled"
    causes = causes_by_name(health)
    shift = causes["distribution_shift"]
    assert shift["supported"]
    evidence = shift["evidence"]
    assert evidence["checkpoint"] == "ft-5" and evidence["feature"] == "support"
    assert (evidence["n_reference"], evidence["n_current"]) == (20, 30)
    text = next(c for c in evidence["drift"]["columns"] if c["column"] == "input")
    assert text["type"] == "text" and text["drift"] and text["statistic"] > 0.9
    # The terms that mark today's traffic are words of the crash reports, never of the billing questions.
    today_words = {w for n in range(500, 530) for w in crash_question(n).lower().replace(",", "").split()}
    training_words = {w for n in range(20) for w in billing_question(n).lower().replace(",", "").split()}
    assert evidence["current_terms"] and evidence["training_terms"]
    assert all(t in today_words and t not in training_words for t in evidence["current_terms"])
    assert all(t in training_words and t not in today_words for t in evidence["training_terms"])
    assert not causes["label_quality"]["supported"]
    assert not causes["diminishing_returns"]["supported"]
    assert health["causes"][0]["cause"] == "distribution_shift"

    finding = health["finding"]
    assert finding["severity"] == "warning"
    assert "distribution shift" in finding["title"]
    assert finding["slice"]["feature"] == "support"
    assert finding["slice"]["trace_ids"] and set(finding["slice"]["trace_ids"]) <= set(today)


def test_a_flat_score_without_new_labels_is_idle_not_stalled(engine: sa.Engine) -> None:
    fly = new_flywheel(engine)
    fly.label_round()
    fly.checkpoint("ft-1", accuracy(0.7))
    fly.checkpoint("ft-2", accuracy(0.7))  # same snapshot: no new labels
    fly.label_round()
    fly.checkpoint("ft-3", accuracy(0.7))
    health = flywheel_health(engine, fly.pid, rule=RULE, current=CURRENT)
    assert health["stall"]["status"] == "idle"  # 8 labels < 16
    assert health["finding"] is None
    assert [e["labels_added"] for e in health["checkpoints"]] == [8, 0, 8]
    assert health["checkpoints"][1]["gain_per_1000"] is None
