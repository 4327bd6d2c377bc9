"""Label quality of a queue, from the labels in the store: agreement per field and per class, accuracy
against gold items, aggregation into final labels, annotator statistics and throughput.

Agreement is computed over ordinary (non-gold) items from each annotator's current label; a field's
level follows its type: categorical and pairwise fields are nominal, ordinal fields ordinal, numeric
fields interval, and multi-label fields are compared as sets (nominal). Free-text fields are not
compared. Model judges are annotators like everyone else, so their agreement with people and their
accuracy on gold are the same numbers.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from scipy.stats import binomtest

from prodloop.annotation.aggregation import dawid_skene, majority_vote
from prodloop.annotation.agreement import (
    agreement_report,
    fleiss_kappa_from_ratings,
    pairwise_cohen_kappa,
    reliability_matrix,
)
from prodloop.annotation.labels import current_labels
from prodloop.annotation.queues import _queue_row, queue_schema
from prodloop.annotation.schemas import FieldSpec, LabelSchema
from prodloop.capture.queries import iso, to_ns
from prodloop.errors import ValidationFailed
from prodloop.store import read_transaction
from prodloop.store.schema import annotators, escalations, labels, queue_items, skips

Method = Literal["majority", "dawid-skene"]
FinalMethod = Literal["majority", "dawid-skene", "adjudicated"]

_LEVELS = {"categorical": "nominal", "pairwise": "nominal", "multi_label": "nominal", "ordinal": "ordinal"}
#: Fields whose answers are aggregated by vote (and by Dawid-Skene where there are options).
_CHOICE_TYPES = frozenset({"categorical", "ordinal", "pairwise"})


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _categories(spec: FieldSpec, rows: Sequence[dict[str, Any]] = ()) -> tuple[Any, ...] | None:
    """The options of a choice field, in order, then any answer the labels hold that the current
    schema version no longer offers (given under an earlier version), in the order first seen."""
    if spec.type not in _CHOICE_TYPES:
        return None
    options = list(spec.options or ())
    for row in rows:
        value = row["value"].get(spec.name)
        if value is not None and value not in options:
            options.append(value)
    return tuple(options)


def _records(rows: Sequence[dict[str, Any]], field: str) -> list[tuple[int, str, Any]]:
    return [(row["item_id"], row["annotator"], _hashable(row["value"].get(field))) for row in rows]


def _field_agreement(rows: Sequence[dict[str, Any]], spec: FieldSpec, n_resamples: int) -> dict[str, Any]:
    level = _LEVELS.get(spec.type, "interval")
    entry: dict[str, Any] = {
        "field": spec.name,
        "type": spec.type,
        "n_items": 0,
        "krippendorff_alpha": None,
        "alpha_ci": None,
        "level": level,
        "fleiss_kappa": None,
        "percent_agreement": None,
        "per_class": {str(option): None for option in (_categories(spec) or ())},
        "cohen_kappa": [],
        "error": None,
    }
    records = _records(rows, spec.name)
    try:
        matrix, _, people, categories = reliability_matrix(records, _categories(spec, rows))
        entry["n_items"] = int((np.sum(~np.isnan(matrix), axis=0) >= 2).sum())
        report = agreement_report(matrix, level, categories, n_resamples=n_resamples)
    except ValidationFailed as error:
        entry["error"] = error.message
        return entry
    entry.update(report)
    entry["fleiss_kappa"], entry["fleiss_items"] = _fleiss_on_complete_items(matrix, categories)
    entry["per_class"] = {
        (" + ".join(key) if isinstance(key, tuple) else str(key)): value
        for key, value in _class_keys(report["per_class"], categories).items()
    }
    weights: Literal["linear"] | None = "linear" if level == "ordinal" else None
    for (a, b), kappa in pairwise_cohen_kappa(matrix, weights).items():
        both = int((~np.isnan(matrix[a]) & ~np.isnan(matrix[b])).sum())
        entry["cohen_kappa"].append({"a": people[a], "b": people[b], "n_items": both, "kappa": kappa})
    entry["kappa_weights"] = weights
    return entry


def _fleiss_on_complete_items(matrix: Any, categories: tuple[Any, ...] | None) -> tuple[float | None, int]:
    """Fleiss' kappa needs the same number of raters on every item. In a queue that is still being
    labelled, items have fewer labels than the overlap; so kappa is taken over the items with the most
    common number of raters (two or more), and the count of those items is given beside it."""
    raters = np.sum(~np.isnan(matrix), axis=0)
    eligible = raters[raters >= 2]
    if eligible.size == 0:
        return None, 0
    values, counts = np.unique(eligible, return_counts=True)
    columns = raters == values[np.argmax(counts)]
    try:
        return fleiss_kappa_from_ratings(matrix[:, columns], categories), int(columns.sum())
    except ValidationFailed:
        return None, int(columns.sum())


def _class_keys(per_class: dict[str, Any], categories: tuple[Any, ...] | None) -> dict[Any, Any]:
    if categories is None:
        return per_class
    named = {str(category): category for category in categories}
    return {named.get(key, key): value for key, value in per_class.items()}


def _ns(value: datetime | None) -> int | None:
    return None if value is None else to_ns(value)


def _non_gold(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row["gold"] is None]


def queue_agreement(
    engine: sa.Engine,
    project_id: int,
    queue: str | int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    schema: str | None = None,
    n_resamples: int = 1000,
) -> dict[str, Any]:
    """Agreement per field of a queue (labels given in ``[since, until)`` and under schema version
    ``schema`` when those are set), in the stable shape of ``prodloop queue agreement --format json``.
    Fleiss' kappa is over the items with the most common number of raters (``fleiss_items`` of them).

    A field whose agreement is undefined (too few items rated twice, or one value only) has ``None``
    statistics and says why in ``error``.
    """
    rows = _non_gold(current_labels(engine, project_id, queue, _ns(since), _ns(until), schema))
    label_schema = (
        queue_schema(engine, project_id, queue) if schema is None else _schema_of(engine, project_id, schema)
    )
    fields = [
        _field_agreement(rows, spec, n_resamples) for spec in label_schema.fields if spec.type != "text"
    ]
    return {
        "queue": str(queue),
        "schema": schema,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "n_labels": len(rows),
        "fields": fields,
    }


def _schema_of(engine: sa.Engine, project_id: int, ref: str) -> LabelSchema:
    from prodloop.annotation.schema_store import get_schema

    return get_schema(engine, project_id, ref)


def agreement_by_schema_version(
    engine: sa.Engine, project_id: int, queue: str | int, n_resamples: int = 1000
) -> dict[str, Any]:
    """Agreement per field for each schema version the queue's labels were given under, oldest first:
    whether a guideline change helped."""
    rows = current_labels(engine, project_id, queue)
    versions = sorted({row["schema"] for row in rows}, key=lambda ref: int(ref.rsplit("@", 1)[1]))
    return {
        "queue": str(queue),
        "versions": [
            {
                "schema": ref,
                "fields": queue_agreement(engine, project_id, queue, schema=ref, n_resamples=n_resamples)[
                    "fields"
                ],
            }
            for ref in versions
        ],
    }


# --------------------------------------------------------------------------------------------------
# Gold


def _matches(spec: FieldSpec, given: Any, gold: Any) -> bool:
    if spec.type == "multi_label":
        return set(given or ()) == set(gold or ())
    return bool(given == gold)


def gold_accuracy(
    engine: sa.Engine,
    project_id: int,
    queue: str | int,
    *,
    threshold: float = 0.8,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Each annotator's (and model judge's) accuracy on the queue's gold items, with a Wilson
    confidence interval; annotators below ``threshold`` are flagged, and ``confidently_below`` says
    whether even the interval's upper end is below it. A gold item counts as correct
    when every field the gold answer sets (free text aside) matches; per-field accuracy is also given."""
    if not 0 < threshold <= 1:
        raise ValidationFailed(f"threshold must be in (0, 1], got {threshold}")
    schema = queue_schema(engine, project_id, queue)
    rows = [row for row in current_labels(engine, project_id, queue) if row["gold"] is not None]
    per_person: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = per_person.setdefault(
            row["annotator"],
            {
                "annotator": row["annotator"],
                "kind": row["kind"],
                "n_gold": 0,
                "n_correct": 0,
                "fields": Counter(),
            },
        )
        checked = [
            spec for spec in schema.fields if spec.type != "text" and row["gold"].get(spec.name) is not None
        ]
        right = [
            spec.name
            for spec in checked
            if _matches(spec, row["value"].get(spec.name), row["gold"][spec.name])
        ]
        entry["n_gold"] += 1
        entry["n_correct"] += len(right) == len(checked)
        entry["fields"].update({f"{name}:right": 1 for name in right})
        entry["fields"].update({f"{spec.name}:seen": 1 for spec in checked})
    result = []
    for entry in sorted(per_person.values(), key=lambda e: e["annotator"]):
        n, k = entry["n_gold"], entry["n_correct"]
        interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
        fields: Counter[str] = entry.pop("fields")
        entry["accuracy"] = k / n
        entry["ci"] = [float(interval.low), float(interval.high)]
        entry["per_field"] = {
            key.split(":")[0]: fields[f"{key.split(':')[0]}:right"] / seen
            for key, seen in fields.items()
            if key.endswith(":seen")
        }
        entry["flagged"] = entry["accuracy"] < threshold
        # Below the threshold even at the top of its interval: not a matter of too few gold items.
        entry["confidently_below"] = entry["ci"][1] < threshold
        result.append(entry)
    return {"queue": str(queue), "threshold": threshold, "confidence": confidence, "annotators": result}


# --------------------------------------------------------------------------------------------------
# Aggregation


def _aggregate_field(
    rows: Sequence[dict[str, Any]], spec: FieldSpec, method: Method
) -> tuple[dict[Any, tuple[Any, float | None]], list[dict[str, Any]], list[Any]]:
    """Final value and confidence per item of one choice field, and the annotators' confusion."""
    categories = _categories(spec, rows)
    matrix, items, people, chosen = reliability_matrix(_records(rows, spec.name), categories)
    options = list(chosen or ())
    if not items:
        return {}, [], options
    finals: dict[Any, tuple[Any, float | None]] = {}
    people_out: list[dict[str, Any]] = []
    if method == "dawid-skene":
        result = dawid_skene(matrix, n_categories=len(options))
        for column, item in enumerate(items):
            code = int(result.labels[column])
            finals[item] = (options[code], float(result.posteriors[column, code]))
        for row_index, person in enumerate(people):
            confusion = result.confusion[row_index]
            accuracy = float(np.dot(result.priors, np.diag(confusion)))
            people_out.append({"annotator": person, "accuracy": accuracy, "confusion": confusion.tolist()})
    else:
        vote = majority_vote(matrix, n_categories=len(options))
        for column, item in enumerate(items):
            code = int(vote.labels[column])
            if code >= 0:
                finals[item] = (options[code], float(vote.shares[column]))
        for row_index, person in enumerate(people):
            rated = ~np.isnan(matrix[row_index])
            given = matrix[row_index, rated].astype(int)
            truth = vote.labels[rated]
            confusion = np.zeros((len(options), len(options)))
            np.add.at(confusion, (truth, given), 1.0)
            totals = confusion.sum(axis=1, keepdims=True)
            people_out.append(
                {
                    "annotator": person,
                    "accuracy": float((given == truth).mean()) if given.size else None,
                    "confusion": np.divide(
                        confusion, totals, out=np.zeros_like(confusion), where=totals > 0
                    ).tolist(),
                }
            )
    return finals, people_out, options


def _vote_value(spec: FieldSpec, values: list[Any]) -> tuple[Any, float | None]:
    """Majority for fields without options: the most common answer (the earliest on a tie); the median
    for numbers; for multi-label, each option chosen by at least half."""
    present = [value for value in values if value is not None]
    if not present:
        return None, None
    if spec.type == "numeric":
        return float(statistics.median(present)), None
    if spec.type == "multi_label":
        counts = Counter(option for value in present for option in value)
        chosen = [option for option in (spec.options or ()) if counts[option] * 2 >= len(present)]
        return chosen, None
    counts = Counter(_hashable(value) for value in present)
    top, n = counts.most_common(1)[0]
    return (list(top) if isinstance(top, tuple) else top), n / len(present)


def aggregate_queue(
    engine: sa.Engine, project_id: int, queue: str | int, method: Method = "majority"
) -> dict[str, Any]:
    """Majority vote or Dawid-Skene over each choice field of the queue's ordinary items: the final
    label and its confidence (vote share or posterior) per item, and each annotator's confusion
    matrix (rows: the aggregated label, columns: the annotator's answer; each row sums to 1)."""
    if method not in ("majority", "dawid-skene"):
        raise ValidationFailed(
            f"aggregation {method!r} is not one of majority, dawid-skene", {"method": method}
        )
    schema = queue_schema(engine, project_id, queue)
    rows = _non_gold(current_labels(engine, project_id, queue))
    kinds = {row["annotator"]: row["kind"] for row in rows}
    traces = {row["item_id"]: row["trace_id"] for row in rows}
    counts = Counter(row["item_id"] for row in rows)
    fields = []
    for spec in schema.fields:
        if spec.type not in _CHOICE_TYPES:
            continue
        finals, people, options = _aggregate_field(rows, spec, method)
        for person in people:
            person["kind"] = kinds.get(person["annotator"])
        fields.append(
            {
                "field": spec.name,
                "categories": options,
                "items": [
                    {
                        "item_id": item,
                        "trace_id": traces.get(item),
                        "label": label,
                        "confidence": confidence,
                        "n_votes": counts[item],
                    }
                    for item, (label, confidence) in sorted(finals.items())
                ],
                "annotators": people,
            }
        )
    return {"queue": str(queue), "method": method, "fields": fields}


def final_labels(
    engine: sa.Engine, project_id: int, queue: str | int, method: FinalMethod = "majority"
) -> list[dict[str, Any]]:
    """The final value of every field of each ordinary item that has labels, with the labels behind it.

    ``majority`` and ``dawid-skene`` aggregate the annotators' current labels. ``adjudicated`` takes a
    reviewer's value where an item was adjudicated and the majority where its labels agreed, and
    leaves out items still waiting for review or for labels.
    """
    if method not in ("majority", "dawid-skene", "adjudicated"):
        raise ValidationFailed(
            f"aggregation {method!r} is not one of majority, dawid-skene, adjudicated", {"method": method}
        )
    schema = queue_schema(engine, project_id, queue)
    rows = _non_gold(current_labels(engine, project_id, queue))
    adjudications = {
        row["item_id"]: row for row in current_labels(engine, project_id, queue, role="adjudication")
    }
    by_item: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_item[row["item_id"]].append(row)
    vote_method: Method = "dawid-skene" if method == "dawid-skene" else "majority"
    choice_finals = {
        spec.name: _aggregate_field(rows, spec, vote_method)[0]
        for spec in schema.fields
        if spec.type in _CHOICE_TYPES
    }
    with read_transaction(engine) as connection:
        q = _queue_row(connection, project_id, queue)
        items = {
            row.id: row
            for row in connection.execute(
                sa.select(queue_items).where(queue_items.c.queue_id == q.id, queue_items.c.gold.is_(None))
            )
        }
    result = []
    for item_id in sorted(by_item):
        item = items[item_id]
        adjudication = adjudications.get(item_id)
        if method == "adjudicated" and (
            item.status != "done" or (adjudication is None and item.status == "review")
        ):
            continue
        value: dict[str, Any] = {}
        confidence: dict[str, float | None] = {}
        source: dict[str, str] = {}
        for spec in schema.fields:
            if method == "adjudicated" and adjudication is not None:
                value[spec.name], confidence[spec.name], source[spec.name] = (
                    adjudication["value"].get(spec.name),
                    1.0,
                    "adjudication",
                )
            elif spec.type in _CHOICE_TYPES:
                label, share = choice_finals[spec.name].get(item_id, (None, None))
                value[spec.name], confidence[spec.name], source[spec.name] = label, share, vote_method
            else:
                label, share = _vote_value(spec, [row["value"].get(spec.name) for row in by_item[item_id]])
                value[spec.name], confidence[spec.name], source[spec.name] = label, share, "majority"
        payload = item.payload or {}
        behind = by_item[item_id] + ([adjudication] if adjudication is not None else [])
        result.append(
            {
                "item_id": item_id,
                "trace_id": item.trace_id,
                "input": payload.get("input"),
                "output": payload.get("output"),
                "context": payload.get("context"),
                "metadata": payload.get("metadata") or {},
                "value": value,
                "confidence": confidence,
                "source": source,
                "labels": [
                    {
                        "id": row["id"],
                        "annotator": row["annotator"],
                        "kind": row["kind"],
                        "role": "adjudication" if row is adjudication else "annotation",
                        "value": row["value"],
                        "schema": row["schema"],
                    }
                    for row in behind
                ],
            }
        )
    return result


# --------------------------------------------------------------------------------------------------
# Annotators and throughput


def annotator_stats(engine: sa.Engine, project_id: int, queue: str | int) -> dict[str, Any]:
    """Per annotator: current labels, median seconds per label, skips and escalations in the queue."""
    with read_transaction(engine) as connection:
        q = _queue_row(connection, project_id, queue)
        done = connection.execute(
            sa.select(labels.c.annotator_id, labels.c.duration_ms, labels.c.created_ns).where(
                labels.c.queue_id == q.id, labels.c.role == "annotation", labels.c.supersedes_id.is_(None)
            )
        ).all()
        skipped: dict[int, int] = dict(
            connection.execute(
                sa.select(skips.c.annotator_id, sa.func.count())
                .where(skips.c.queue_id == q.id)
                .group_by(skips.c.annotator_id)
            ).all()
        )
        escalated: dict[int, int] = dict(
            connection.execute(
                sa.select(escalations.c.annotator_id, sa.func.count())
                .where(escalations.c.queue_id == q.id)
                .group_by(escalations.c.annotator_id)
            ).all()
        )
        people = {
            row.id: row
            for row in connection.execute(sa.select(annotators).where(annotators.c.project_id == project_id))
        }
    durations: dict[int, list[int]] = defaultdict(list)
    last: dict[int, int] = {}
    for row in done:
        if row.duration_ms is not None:
            durations[row.annotator_id].append(row.duration_ms)
        last[row.annotator_id] = max(last.get(row.annotator_id, 0), row.created_ns)
    ids = set(last) | set(skipped) | set(escalated)
    result = [
        {
            "annotator": people[person].name,
            "kind": people[person].kind,
            "labels": sum(1 for row in done if row.annotator_id == person),
            "median_seconds": statistics.median(durations[person]) / 1000 if durations[person] else None,
            "skips": int(skipped.get(person, 0)),
            "escalations": int(escalated.get(person, 0)),
            "last_label_at": iso(last.get(person)),
        }
        for person in ids
    ]
    return {"queue": str(queue), "annotators": sorted(result, key=lambda entry: entry["annotator"])}


def throughput(
    engine: sa.Engine, project_id: int, queue: str | int, bucket_seconds: int = 3600
) -> dict[str, Any]:
    """First labels given per time bucket (corrections and adjudications aside)."""
    if bucket_seconds < 1:
        raise ValidationFailed(f"bucket_seconds must be at least 1, got {bucket_seconds}")
    width = bucket_seconds * 1_000_000_000
    with read_transaction(engine) as connection:
        q = _queue_row(connection, project_id, queue)
        times = (
            connection.execute(
                sa.select(labels.c.created_ns).where(
                    labels.c.queue_id == q.id, labels.c.role == "annotation", labels.c.supersedes_id.is_(None)
                )
            )
            .scalars()
            .all()
        )
    counts = Counter(ns // width for ns in times)
    return {
        "queue": str(queue),
        "bucket_seconds": bucket_seconds,
        "buckets": [{"start": iso(bucket * width), "labels": counts[bucket]} for bucket in sorted(counts)],
    }
