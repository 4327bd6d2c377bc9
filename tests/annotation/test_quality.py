"""Label quality from the store, checked against the reference packages on the same labels."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss
from statsmodels.stats.proportion import proportion_confint

from prodloop.annotation import (
    ItemIn,
    QueueSettings,
    add_items,
    adjudicate,
    aggregate_queue,
    agreement_by_schema_version,
    annotator_stats,
    change_queue_schema,
    create_queue,
    escalate_item,
    final_labels,
    gold_accuracy,
    lease_next_item,
    queue_agreement,
    register_annotator,
    save_schema,
    submit_label,
    throughput,
)
from prodloop.errors import ValidationFailed
from prodloop.server.auth import ensure_project

INTENTS = ["billing", "bug", "refund", "other"]
SCHEMA = {
    "name": "intent",
    "guidelines": "Pick the customer's main intent.",
    "fields": [
        {"name": "intent", "type": "categorical", "options": INTENTS, "required": True},
        {"name": "severity", "type": "ordinal", "options": ["low", "mid", "high"], "required": False},
        {"name": "note", "type": "text", "required": False},
    ],
}
ACCURACY = {"careful": 0.95, "average": 0.8, "sloppy": 0.55, "judge": 0.85}


def _answer(rng: np.random.Generator, truth: int, accuracy: float) -> int:
    if rng.random() < accuracy:
        return truth
    return int(rng.choice([c for c in range(len(INTENTS)) if c != truth]))


def _label_queue(engine: sa.Engine, n_items: int = 40, n_gold: int = 10, seed: int = 3) -> dict[str, Any]:
    """A queue with overlap 3, gold items, and four annotators of known accuracy who pull in turns."""
    pid = ensure_project(engine, "quality")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="q", schema="intent@1", overlap=3, gold_share=0.2))
    rng = np.random.default_rng(seed)
    truth = {f"i{n}": int(rng.integers(len(INTENTS))) for n in range(n_items)}
    gold = {f"g{n}": int(rng.integers(len(INTENTS))) for n in range(n_gold)}
    items = [ItemIn(id=key, input=f"text {key}") for key in truth]
    items += [ItemIn(id=key, input=f"gold {key}", gold={"intent": INTENTS[t]}) for key, t in gold.items()]
    add_items(engine, pid, "q", items)
    people = {
        name: register_annotator(engine, pid, name, "model" if name == "judge" else "human")
        for name in ACCURACY
    }
    keys = {**truth, **gold}
    active = set(people)
    while active:
        for name in sorted(active):
            leased = lease_next_item(engine, pid, "q", people[name].id)
            if leased is None:
                active.discard(name)
                continue
            key = str(leased["item"]["input"]).split()[-1]
            value = {
                "intent": INTENTS[_answer(rng, keys[key], ACCURACY[name])],
                "severity": ["low", "mid", "high"][int(rng.integers(3))] if rng.random() < 0.9 else None,
            }
            submit_label(engine, pid, leased["item"]["id"], people[name].id, value)
    return {"pid": pid, "truth": truth, "gold": gold, "people": people}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from prodloop.store import create_store_engine, upgrade

    engine = create_store_engine(f"sqlite:///{tmp_path_factory.mktemp('quality') / 'q.db'}")
    upgrade(engine)
    return engine, _label_queue(engine)


def _stored(engine: sa.Engine, field: str) -> pd.DataFrame:
    from prodloop.store.schema import annotators, labels, queue_items

    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(labels.c.item_id, annotators.c.name, labels.c.value)
            .join(annotators, annotators.c.id == labels.c.annotator_id)
            .join(queue_items, queue_items.c.id == labels.c.item_id)
            .where(queue_items.c.gold.is_(None))
        ).all()
    frame = pd.DataFrame(
        [(r.item_id, r.name, r.value.get(field)) for r in rows], columns=["item", "who", "value"]
    )
    return frame.pivot(index="who", columns="item", values="value")


def test_agreement_matches_krippendorff_statsmodels_and_sklearn(labelled: Any) -> None:
    engine, setup = labelled
    report = queue_agreement(engine, setup["pid"], "q", n_resamples=200)
    by_field = {entry["field"]: entry for entry in report["fields"]}
    assert set(by_field) == {"intent", "severity"}  # free text is not compared

    table = _stored(engine, "intent")
    codes = table.map(lambda v: np.nan if v is None or v != v else INTENTS.index(v)).to_numpy(dtype=float)
    intent = by_field["intent"]
    assert intent["level"] == "nominal"
    assert intent["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal"), abs=1e-12
    )
    low, high = intent["alpha_ci"]
    assert low < intent["krippendorff_alpha"] < high
    per_item = np.array([column[~np.isnan(column)] for column in codes.T])  # every item has 3 raters
    counts, _ = aggregate_raters(per_item.astype(int), n_cat=len(INTENTS))
    assert intent["fleiss_kappa"] == pytest.approx(statsmodels_fleiss(counts), abs=1e-12)
    assert set(intent["per_class"]) == set(INTENTS)
    pairs = {(pair["a"], pair["b"]): pair for pair in intent["cohen_kappa"]}
    a, b = "average", "careful"
    pair = pairs.get((a, b)) or pairs[(b, a)]
    both = ~np.isnan(codes[list(table.index).index(a)]) & ~np.isnan(codes[list(table.index).index(b)])
    expected = cohen_kappa_score(
        codes[list(table.index).index(a)][both], codes[list(table.index).index(b)][both]
    )
    assert pair["n_items"] == int(both.sum())
    assert pair["kappa"] == pytest.approx(expected, abs=1e-12)

    severity_table = _stored(engine, "severity")
    order = ["low", "mid", "high"]
    severity = severity_table.map(lambda v: np.nan if v is None or v != v else order.index(v)).to_numpy(
        dtype=float
    )
    assert by_field["severity"]["level"] == "ordinal"
    assert by_field["severity"]["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=severity, level_of_measurement="ordinal"), abs=1e-12
    )
    assert by_field["severity"]["kappa_weights"] == "linear"


def test_agreement_of_an_empty_time_range_says_why(labelled: Any) -> None:
    engine, setup = labelled
    future = datetime.now(UTC) + timedelta(days=1)
    report = queue_agreement(engine, setup["pid"], "q", since=future)
    intent = report["fields"][0]
    assert intent["krippendorff_alpha"] is None
    assert "undefined" in intent["error"]


def test_gold_accuracy_orders_annotators_and_matches_wilson(labelled: Any) -> None:
    engine, setup = labelled
    report = gold_accuracy(engine, setup["pid"], "q", threshold=0.7)
    by_name = {entry["annotator"]: entry for entry in report["annotators"]}
    assert set(by_name) == set(ACCURACY)
    assert by_name["judge"]["kind"] == "model"
    for entry in by_name.values():
        assert entry["n_gold"] >= 2  # gold items were interleaved for everyone
        low, high = proportion_confint(entry["n_correct"], entry["n_gold"], alpha=0.05, method="wilson")
        assert entry["ci"] == pytest.approx([low, high], abs=1e-12)
        assert entry["flagged"] == (entry["accuracy"] < 0.7)
        assert entry["confidently_below"] == (high < 0.7)
    assert by_name["careful"]["accuracy"] > by_name["sloppy"]["accuracy"]


def test_dawid_skene_matches_crowd_kit_on_the_stored_labels(labelled: Any) -> None:
    engine, setup = labelled
    from crowdkit.aggregation import DawidSkene

    table = _stored(engine, "intent")
    long = table.stack().dropna().reset_index()
    long.columns = ["worker", "task", "label"]
    long["label"] = long["label"].map(INTENTS.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = DawidSkene(n_iter=100, tol=1e-12).fit_predict(long)
    result = aggregate_queue(engine, setup["pid"], "q", method="dawid-skene")
    intent = next(field for field in result["fields"] if field["field"] == "intent")
    got = {item["item_id"]: INTENTS.index(item["label"]) for item in intent["items"]}
    same = sum(got[task] == label for task, label in expected.items())
    assert same >= len(expected) - 1
    careful = next(person for person in intent["annotators"] if person["annotator"] == "careful")
    assert np.asarray(careful["confusion"]).sum(axis=1) == pytest.approx(np.ones(len(INTENTS)))
    # Dawid-Skene recovers the truth at least as well as any single annotator.
    truth = setup["truth"]
    with engine.connect() as connection:
        from prodloop.store.schema import queue_items

        keys = dict(connection.execute(sa.select(queue_items.c.id, queue_items.c.item_key)).all())
    correct = np.mean(
        [INTENTS.index(item["label"]) == truth[keys[item["item_id"]]] for item in intent["items"]]
    )
    assert correct >= 0.9


def test_majority_final_labels_carry_the_labels_behind_them(labelled: Any) -> None:
    engine, setup = labelled
    rows = final_labels(engine, setup["pid"], "q", "majority")
    assert len(rows) == len(setup["truth"])  # gold items are not dataset rows
    for row in rows:
        votes = [label["value"]["intent"] for label in row["labels"]]
        top = max(set(votes), key=votes.count)
        if votes.count(top) > 1:
            assert row["value"]["intent"] == top
            assert row["confidence"]["intent"] == pytest.approx(votes.count(top) / len(votes))
        assert row["source"]["intent"] == "majority"
        assert row["value"]["note"] is None


def test_adjudicated_final_labels_take_the_reviewers_value(engine: sa.Engine) -> None:
    pid = ensure_project(engine, "adjudicated")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="q", schema="intent@1", overlap=2))
    add_items(engine, pid, "q", [ItemIn(id=str(n), input=str(n)) for n in range(3)])
    a, b = (register_annotator(engine, pid, name) for name in ("a", "b"))
    answers = {a.id: ["bug", "bug", "bug"], b.id: ["bug", "refund", "bug"]}
    for person in (a, b):
        for n in range(3):
            leased = lease_next_item(engine, pid, "q", person.id)
            assert leased is not None
            submit_label(engine, pid, leased["item"]["id"], person.id, {"intent": answers[person.id][n]})
    items = {row["item_id"]: row for row in final_labels(engine, pid, "q", "majority")}
    disputed = sorted(items)[1]
    assert final_labels(engine, pid, "q", "adjudicated") == [
        row for row in final_labels(engine, pid, "q", "majority") if row["item_id"] != disputed
    ]  # the disputed item waits for review
    adjudicate(engine, pid, disputed, b.id, {"intent": "refund"}, "the customer asks for money back")
    adjudicated = {row["item_id"]: row for row in final_labels(engine, pid, "q", "adjudicated")}
    assert adjudicated[disputed]["value"]["intent"] == "refund"
    assert adjudicated[disputed]["source"]["intent"] == "adjudication"
    assert [label["role"] for label in adjudicated[disputed]["labels"]][-1] == "adjudication"
    with pytest.raises(ValidationFailed, match="majority, dawid-skene, adjudicated"):
        final_labels(engine, pid, "q", "mean")  # type: ignore[arg-type]


def test_agreement_by_schema_version_shows_the_guideline_change(engine: sa.Engine) -> None:
    pid = ensure_project(engine, "versions")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="q", schema="intent@1", overlap=2))
    add_items(engine, pid, "q", [ItemIn(id=str(n), input=str(n)) for n in range(8)])
    a, b = (register_annotator(engine, pid, name) for name in ("a", "b"))

    def label_round(answers_b: list[str]) -> None:
        for person in (a, b):
            for n in range(4):
                leased = lease_next_item(engine, pid, "q", person.id)
                assert leased is not None
                value = INTENTS[n % 4] if person is a else answers_b[n]
                submit_label(engine, pid, leased["item"]["id"], person.id, {"intent": value})

    label_round(["bug", "billing", "other", "refund"])  # v1: b often disagrees
    save_schema(engine, pid, {**SCHEMA, "guidelines": "Clearer: money back is refund."})
    change_queue_schema(engine, pid, "q", "intent@2")
    label_round(INTENTS)  # v2: full agreement
    report = agreement_by_schema_version(engine, pid, "q", n_resamples=50)
    versions = {entry["schema"]: entry["fields"][0] for entry in report["versions"]}
    assert list(versions) == ["intent@1", "intent@2"]
    assert versions["intent@1"]["percent_agreement"] == 0.0
    assert versions["intent@2"]["percent_agreement"] == 1.0
    with pytest.raises(ValidationFailed, match="another version of 'intent'"):
        save_schema(engine, pid, {**SCHEMA, "name": "other-schema"})
        change_queue_schema(engine, pid, "q", "other-schema@1")


def test_annotator_stats_and_throughput(labelled: Any) -> None:
    engine, setup = labelled
    stats = {entry["annotator"]: entry for entry in annotator_stats(engine, setup["pid"], "q")["annotators"]}
    total = sum(entry["labels"] for entry in stats.values())
    assert total == 3 * len(setup["truth"]) + _gold_labels(engine)
    assert all(
        entry["median_seconds"] is not None and entry["median_seconds"] >= 0 for entry in stats.values()
    )
    buckets = throughput(engine, setup["pid"], "q", bucket_seconds=86400)["buckets"]
    assert sum(bucket["labels"] for bucket in buckets) == total


def _gold_labels(engine: sa.Engine) -> int:
    from prodloop.store.schema import labels, queue_items

    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(labels.join(queue_items, queue_items.c.id == labels.c.item_id))
                .where(queue_items.c.gold.is_not(None))
            ).scalar_one()
        )


def test_escalated_items_count_in_stats(engine: sa.Engine) -> None:
    pid = ensure_project(engine, "escalations")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="q", schema="intent@1", overlap=1))
    add_items(engine, pid, "q", [ItemIn(id="x", input="x")])
    a = register_annotator(engine, pid, "a")
    leased = lease_next_item(engine, pid, "q", a.id)
    assert leased is not None
    escalate_item(engine, pid, leased["item"]["id"], a.id, "is a chargeback billing?", field="intent")
    stats = annotator_stats(engine, pid, "q")["annotators"]
    assert stats == [
        {
            "annotator": "a",
            "kind": "human",
            "labels": 0,
            "median_seconds": None,
            "skips": 1,
            "escalations": 1,
            "last_label_at": None,
        }
    ]


def test_fleiss_kappa_is_over_the_items_with_all_their_labels(engine: sa.Engine) -> None:
    pid = ensure_project(engine, "fleiss")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="q", schema="intent@1", overlap=3))
    add_items(engine, pid, "q", [ItemIn(id=str(n), input=str(n)) for n in range(6)])
    people = [register_annotator(engine, pid, name).id for name in ("a", "b", "c")]
    answers = {  # items 0-3 get three labels, items 4 and 5 only two (still being labelled)
        people[0]: ["bug", "bug", "refund", "other", "bug", "refund"],
        people[1]: ["bug", "billing", "refund", "other", "bug", "bug"],
        people[2]: ["bug", "bug", "refund", "billing"],
    }
    for person, values in answers.items():
        for value in values:
            leased = lease_next_item(engine, pid, "q", person)
            assert leased is not None
            submit_label(engine, pid, leased["item"]["id"], person, {"intent": value})
    intent = queue_agreement(engine, pid, "q", n_resamples=50)["fields"][0]
    assert intent["n_items"] == 6 and intent["fleiss_items"] == 4
    complete = np.array([[INTENTS.index(answers[p][n]) for p in people] for n in range(4)])
    counts, _ = aggregate_raters(complete, n_cat=len(INTENTS))
    assert intent["fleiss_kappa"] == pytest.approx(statsmodels_fleiss(counts), abs=1e-12)


def test_answers_an_older_schema_version_allowed_still_count_after_the_queue_moves(engine: sa.Engine) -> None:
    pid = ensure_project(engine, "retired-option")
    save_schema(engine, pid, SCHEMA)
    create_queue(engine, pid, QueueSettings(name="q", schema="intent@1", overlap=2))
    add_items(engine, pid, "q", [ItemIn(id=str(n), input=str(n)) for n in range(3)])
    a, b = (register_annotator(engine, pid, name).id for name in ("a", "b"))
    answers = {a: ["other", "bug", "refund"], b: ["other", "bug", "billing"]}
    for person, values in answers.items():
        for value in values:
            leased = lease_next_item(engine, pid, "q", person)
            assert leased is not None
            submit_label(engine, pid, leased["item"]["id"], person, {"intent": value})
    retired = [
        {**field, "options": INTENTS[:3]} if field["name"] == "intent" else field
        for field in SCHEMA["fields"]
    ]
    save_schema(engine, pid, {**SCHEMA, "fields": retired})  # version 2 drops "other"
    change_queue_schema(engine, pid, "q", "intent@2")
    intent = queue_agreement(engine, pid, "q", n_resamples=20)["fields"][0]
    assert intent["error"] is None and "other" in intent["per_class"]
    aggregated = aggregate_queue(engine, pid, "q")["fields"][0]
    assert aggregated["categories"] == [*INTENTS[:3], "other"]
    assert [row["value"]["intent"] for row in final_labels(engine, pid, "q")][:2] == ["other", "bug"]
