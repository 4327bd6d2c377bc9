"""Eval coverage: the production traffic that no example of the eval set is near.

Production inputs and the inputs of an eval dataset snapshot are embedded (all-MiniLM-L6-v2, through
the store's cache). :mod:`prodloop.monitoring.coverage_distances` measures each production input's
distance to the eval set and the *radius* beyond which it is **uncovered**;
:mod:`prodloop.monitoring.coverage_clusters` groups the uncovered inputs into **clusters**
(:func:`coverage_gap`).

:func:`eval_coverage` runs this on the store (a feature's traces in a window against a snapshot) and
returns a JSON-ready report; :func:`coverage_findings` turns its clusters of at least ``min_share`` of
the traffic (default 5%, alpha: more than the whole uncovered share that chance allows) into findings whose
slice ranks the cluster's traces most central first, stratified by day; :func:`send_cluster_to_queue`
sends one cluster to an annotation queue without an alert, to grow the eval set where traffic went.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodloop.capture.queries import to_ns
from prodloop.errors import NotFound, ValidationFailed
from prodloop.monitoring.coverage_clusters import LABEL_TERMS, coverage_gap
from prodloop.monitoring.coverage_clusters import CoverageReport as CoverageReport
from prodloop.monitoring.coverage_clusters import UncoveredCluster as UncoveredCluster
from prodloop.monitoring.coverage_distances import DEFAULT_ALPHA
from prodloop.monitoring.coverage_distances import default_radius as default_radius
from prodloop.monitoring.coverage_distances import mean_pairwise_distance as mean_pairwise_distance
from prodloop.monitoring.coverage_distances import nearest_eval_distances as nearest_eval_distances
from prodloop.monitoring.findings import Finding
from prodloop.store import read_transaction
from prodloop.store.schema import traces

#: The smallest share of traffic for which a cluster becomes a finding: the whole uncovered share that
#: the default radius allows by chance.
MIN_SHARE = DEFAULT_ALPHA
#: A cluster with at least this share of traffic is a critical finding.
CRITICAL_SHARE = 0.2


# --------------------------------------------------------------------------------------------------
# On the store: a feature's traffic against a dataset snapshot

#: The most production traces a report embeds (a seeded uniform sample of the window beyond that).
MAX_TRACES = 50_000
_FIELDS = ("input", "output")


def _as_text(value: Any) -> str | None:
    """The text of a snapshot row's input or output: a string as it is, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def find_snapshot(engine: sa.Engine, project_id: int, snapshot: str) -> dict[str, Any]:
    """The snapshot that ``snapshot`` names: the newest snapshot of that name, else the one with that
    id (or unique id prefix)."""
    from prodloop.datasets import get_snapshot, list_snapshots

    named = list_snapshots(engine, project_id, name=snapshot.strip())
    if named:
        return named[0]
    try:
        return get_snapshot(engine, project_id, snapshot)
    except (NotFound, ValidationFailed):
        raise NotFound(
            f"no snapshot is named {snapshot!r} or has that id; `prodloop dataset ls` lists them",
            {"snapshot": snapshot},
        ) from None


def snapshot_texts(engine: sa.Engine, project_id: int, snapshot_id: str, field: str = "input") -> list[str]:
    """The ``field`` texts of a snapshot's rows, in order (rows without one are left out)."""
    from prodloop.datasets import snapshot_rows

    found: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = snapshot_rows(engine, project_id, snapshot_id, offset=offset, limit=1000)
        found.extend(text for row in page["rows"] if (text := _as_text(row.get(field))) is not None)
        offset = page["next_offset"]
    return found


def window_texts(
    engine: sa.Engine,
    project_id: int,
    feature: str,
    since: datetime,
    until: datetime,
    field: str = "input",
    release: str | None = None,
    max_traces: int | None = MAX_TRACES,
    seed: int = 0,
) -> tuple[list[str], list[str], list[int]]:
    """Trace ids, ``field`` texts and start times (ns) of a feature's traces that start in
    ``[since, until)`` and have that text, oldest first; a seeded uniform sample of ``max_traces``
    when there are more."""
    column = traces.c.input_text if field == "input" else traces.c.output_text
    where = [
        traces.c.project_id == project_id,
        traces.c.feature == feature,
        traces.c.start_ns >= to_ns(since),
        traces.c.start_ns < to_ns(until),
        column.is_not(None),
    ]
    if release is not None:
        where.append(traces.c.release == release)
    query = (
        sa.select(traces.c.trace_id, traces.c.start_ns, column.label("text"))
        .where(*where)
        .order_by(traces.c.start_ns, traces.c.trace_id)
    )
    with read_transaction(engine) as connection:
        rows = [row for row in connection.execute(query) if row.text.strip()]
    if max_traces is not None and len(rows) > max_traces:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_traces, replace=False))
        rows = [rows[i] for i in keep]
    return [row.trace_id for row in rows], [row.text for row in rows], [int(row.start_ns) for row in rows]


class CoverageArguments(BaseModel):
    """What a coverage check is asked, as a monitor definition gives it."""

    model_config = ConfigDict(extra="forbid")

    #: The eval dataset: a snapshot name (its newest snapshot) or id.
    snapshot: str = Field(min_length=1, max_length=200)
    field: Literal["input", "output"] = "input"
    #: Cosine distance; default: the eval set's conformal radius.
    radius: float | None = Field(default=None, ge=0, le=2)
    max_clusters: int = Field(default=8, ge=1, le=50)
    #: The smallest share of traffic for which a cluster becomes a finding.
    min_share: float = Field(default=MIN_SHARE, gt=0, le=1)
    #: Encode texts without a cached vector (false: use only what the embedding jobs stored).
    compute: bool = True
    max_traces: int = Field(default=MAX_TRACES, ge=1, le=1_000_000)


def _vectors(
    engine: sa.Engine, project_id: int, texts: list[str], encoder: Any, compute: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(positions, vectors, model id)`` of ``texts`` through the store's cache: all of them (encoding
    what is missing), or with ``compute`` false only those already cached (at their positions)."""
    from prodloop.embeddings import cached_vectors, default_model_id, embed_texts, get_encoder
    from prodloop.embeddings.encoder import DIMENSION

    if compute:
        encoder = get_encoder() if encoder is None else encoder
        vectors = embed_texts(engine, project_id, texts, encoder=encoder)
        return np.arange(len(texts)), vectors, encoder.model_id
    model = default_model_id() if encoder is None else encoder.model_id
    dim = DIMENSION if encoder is None else encoder.dimension
    positions, vectors = cached_vectors(engine, project_id, texts, model=model, dim=dim)
    return positions, vectors, model


def eval_coverage(
    engine: sa.Engine,
    project_id: int,
    feature: str,
    snapshot: str,
    *,
    since: datetime,
    until: datetime,
    radius: float | None = None,
    field: str = "input",
    max_clusters: int = 8,
    release: str | None = None,
    encoder: Any = None,
    compute: bool = True,
    max_traces: int | None = MAX_TRACES,
) -> dict[str, Any]:
    """How much of ``feature``'s traffic in ``[since, until)`` is far from every example of the eval
    ``snapshot`` (a name: its newest snapshot; or an id), and where that traffic goes.

    The ``field`` texts ("input" or "output") of the traces and of the snapshot's rows are embedded
    through the store's cache (:mod:`prodloop.embeddings`); with ``compute`` false nothing is encoded
    and only texts with a cached vector take part (``missing`` counts the others). Returns
    :meth:`CoverageReport.to_dict` with what it compared: ``feature``, ``field``, ``since``,
    ``until``, ``release``, ``snapshot`` ({"id", "name"}), ``model`` and ``missing``."""
    if field not in _FIELDS:
        raise ValidationFailed(f"field must be one of {', '.join(_FIELDS)}, got {field!r}", {"field": field})
    if until <= since:
        raise ValidationFailed(f"the window is empty: until ({until}) must be after since ({since})")
    found = find_snapshot(engine, project_id, snapshot)
    eval_texts = snapshot_texts(engine, project_id, found["id"], field)
    ids, texts, starts = window_texts(
        engine, project_id, feature, since, until, field, release, max_traces=max_traces
    )
    _, eval_vectors, model = _vectors(engine, project_id, eval_texts, encoder, compute)
    needed = 1 if radius is not None else 2
    if len(eval_vectors) < needed:
        unembedded = f" ({len(eval_texts) - len(eval_vectors)} not embedded yet)" if not compute else ""
        raise ValidationFailed(
            f"snapshot {found['name']!r} ({found['id'][:12]}) has {len(eval_vectors)} row(s) with an {field}"
            f"{unembedded}: too few to measure coverage against; snapshot a queue with more labelled items",
            {"snapshot": found["id"], "field": field},
        )
    kept, production, _ = _vectors(engine, project_id, texts, encoder, compute)
    positions = kept.tolist()
    report = coverage_gap(
        production,
        eval_vectors,
        radius=radius,
        texts=[texts[i] for i in positions],
        ids=[ids[i] for i in positions],
        timestamps=[starts[i] for i in positions],
        max_clusters=max_clusters,
    )
    return {
        "feature": feature,
        "field": field,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "release": release,
        "snapshot": {"id": found["id"], "name": found["name"]},
        "model": model,
        "missing": {"production": len(ids) - len(positions), "eval": len(eval_texts) - len(eval_vectors)},
        **report.to_dict(),
    }


# --------------------------------------------------------------------------------------------------
# Findings and queues


def _key_terms(cluster: dict[str, Any]) -> str:
    return "+".join(sorted(cluster.get("terms", [])[:LABEL_TERMS])) or f"cluster-{cluster['id']}"


def coverage_findings(report: dict[str, Any], *, min_share: float = MIN_SHARE) -> list[Finding]:
    """A finding for each cluster of ``report`` (from :func:`eval_coverage`) with at least
    ``min_share`` of the traffic: key ``coverage:<field>:<its top terms>``, its traces ranked most
    central first and stratified by day in the slice (critical from :data:`CRITICAL_SHARE`)."""
    findings: list[Finding] = []
    keys: set[str] = set()
    field_ = report.get("field", "input")
    snapshot = report.get("snapshot") or {}
    for cluster in report["clusters"]:
        if cluster["share"] < min_share:
            continue
        key = f"coverage:{field_}:{_key_terms(cluster)}"
        if key in keys:  # two clusters with the same top terms: told apart by their number
            key = f"{key}#{cluster['id']}"
        keys.add(key)
        where = f" of {snapshot['name']!r}" if snapshot.get("name") else ""
        title = (
            f"{cluster['share']:.1%} of traffic ({cluster['label']}) is far from every eval example{where}"
        )
        slice_: dict[str, Any] = {
            "feature": report.get("feature"),
            "since": report.get("since"),
            "until": report.get("until"),
            "trace_ids": cluster.get("trace_ids", []),
            "strata": cluster.get("strata", {}),
        }
        if report.get("release"):
            slice_["release"] = report["release"]
        detail = {
            "share": cluster["share"],
            "size": cluster["size"],
            "n_production": report["n_production"],
            "uncovered_share": report["uncovered_share"],
            "radius": report["radius"],
            "centroid_distance": cluster["centroid_distance"],
            "terms": cluster["terms"],
            "growth": cluster["growth"],
            "daily": cluster["daily"],
            "examples": [example["text"] for example in cluster["examples"][:3]],
            "snapshot": snapshot,
        }
        severity = "critical" if cluster["share"] >= CRITICAL_SHARE else "warning"
        findings.append(Finding(key, title, severity, detail, slice_))
    return findings


def send_cluster_to_queue(
    engine: sa.Engine,
    project_id: int,
    report_or_cluster: dict[str, Any],
    queue: str | int,
    *,
    items: int = 50,
    cluster: int | None = None,
    priority: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Add a sample of ``items`` of a cluster's traces to ``queue`` (source ``coverage``), stratified
    by day among its most central traces, to grow the eval set where traffic went.

    ``report_or_cluster`` is a report from :func:`eval_coverage` (then ``cluster`` picks one by id; the
    largest by default) or one of its clusters."""
    from prodloop.monitoring.routing import send_slice

    chosen_cluster = _pick_cluster(report_or_cluster, cluster)
    slice_ = {"trace_ids": chosen_cluster.get("trace_ids", []), "strata": chosen_cluster.get("strata", {})}
    if not slice_["trace_ids"]:
        raise ValidationFailed(
            f"cluster {chosen_cluster['id']} ({chosen_cluster['label']}) names no traces of this project",
            {"cluster": chosen_cluster["id"]},
        )
    sent = send_slice(
        engine, project_id, slice_, queue, items=items, priority=priority, source="coverage", seed=seed
    )
    return {
        "cluster": chosen_cluster["id"],
        "label": chosen_cluster["label"],
        **{k: v for k, v in sent.items() if k != "queue_id"},
    }


def _pick_cluster(report_or_cluster: dict[str, Any], cluster: int | None) -> dict[str, Any]:
    if "clusters" not in report_or_cluster:
        return report_or_cluster
    clusters = report_or_cluster["clusters"]
    if not clusters:
        raise ValidationFailed("the report has no uncovered cluster to send: all traffic is covered")
    if cluster is None:
        return dict(clusters[0])
    for entry in clusters:
        if entry["id"] == cluster:
            return dict(entry)
    raise NotFound(
        f"the report has no cluster {cluster}; its clusters are {', '.join(str(c['id']) for c in clusters)}",
        {"cluster": cluster},
    )
