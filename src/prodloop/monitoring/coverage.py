"""Eval coverage: the production traffic that no example of the eval set is near.

Production inputs and the inputs of an eval dataset snapshot are embedded (all-MiniLM-L6-v2, through
the store's cache). Each production input's *distance to the eval set* is the cosine distance to its
nearest eval example, computed exactly, a block of the similarity matrix at a time so that memory stays
small (:data:`BLOCK_ELEMENTS` similarities at once, whatever the sizes). An input farther than the
*radius* from every eval example is **uncovered**.

The default radius (:func:`default_radius`) is a conformal bound: the ceil((n + 1)(1 - alpha))-th smallest of
the eval set's own leave-one-out nearest-neighbour distances (alpha = 0.05; n distinct eval examples). If
production traffic were drawn from the same distribution as the eval set, a production input would be
farther than this from every eval example with probability at most alpha, so **at most about 5% of traffic
counts as uncovered by chance**; an uncovered share well above that means traffic went where the eval
set is not. The radius depends on the eval set only: a shift in traffic cannot widen it. Duplicate
eval examples are counted once (a repeated example covers nothing more, and dropping it only raises
the radius). With fewer than 19 distinct examples the bound needs more than all of them: the radius is
then the largest leave-one-out distance. A caller may give a radius instead.

Uncovered inputs are grouped into **clusters** by agglomerative clustering (average linkage, cosine
distance) cut at the *theme distance*: by default the mean cosine distance between two distinct eval
examples. Two groups of uncovered traffic are one cluster when they are closer to each other, on
average, than the eval set's examples are to each other: a cluster is narrower than the eval set's own
spread, and a new product stays one cluster while unrelated stray inputs do not join it. Average linkage
was chosen over k-means because it needs no number of clusters (a single new topic stays one cluster;
silhouette-chosen k cannot say "one", and on templated support traffic it splits a topic into its
phrasings) and because it is deterministic. At most :data:`CLUSTER_SAMPLE` uncovered inputs (a seeded
sample) are clustered; every uncovered input then joins the cluster with the smallest mean distance to
it (for unit vectors, the largest dot product with the cluster's mean vector: the same rule as the
linkage). The ``max_clusters`` largest clusters are reported; the uncovered inputs of smaller ones are
counted as ``scattered``.

Each cluster has its size and share of traffic, its centroid's distance to the eval set, its most
central inputs (highest mean similarity to the cluster, so the most typical first), a label from the
terms that set it apart (mean TF-IDF in the cluster minus mean TF-IDF in the covered traffic, among terms
in at least 10% of the cluster's inputs) and its count per day, with the slope of its daily share of
traffic, so that a growing cluster stands out.

:func:`eval_coverage` runs this on the store (a feature's traces in a window against a snapshot) and
returns a JSON-ready report; :func:`coverage_findings` turns its clusters of at least ``min_share`` of
the traffic (default 5%, alpha: more than the whole uncovered share that chance allows) into findings whose
slice ranks the cluster's traces most central first, stratified by day; :func:`send_cluster_to_queue`
sends one cluster to an annotation queue without an alert, to grow the eval set where traffic went.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from prodloop.capture.queries import to_ns
from prodloop.errors import NotFound, ValidationFailed
from prodloop.monitoring.findings import Finding
from prodloop.store import read_transaction
from prodloop.store.schema import traces

#: The share of in-distribution traffic that the default radius lets fall outside by chance.
DEFAULT_ALPHA = 0.05
#: Similarities held in memory at once when searching nearest neighbours (16 MiB in float32).
BLOCK_ELEMENTS = 1 << 22
#: The most uncovered inputs that the clustering itself looks at (a seeded sample); the rest join the
#: nearest cluster.
CLUSTER_SAMPLE = 2000
#: The most texts per side that the TF-IDF of the cluster labels reads (seeded samples).
TERM_SAMPLE = 5000
#: Terms kept per cluster, and how many of them make its label.
N_TERMS = 6
LABEL_TERMS = 3
#: A term labels a cluster only if at least this share of the cluster's inputs contain it.
TERM_MIN_DF = 0.1
#: Example texts per cluster in the report, and the characters kept of each.
N_EXAMPLES = 5
EXAMPLE_CHARS = 300
#: Trace ids per cluster in the report (most central first): enough to sample a queue from.
MAX_TRACE_IDS = 500
#: The smallest share of traffic for which a cluster becomes a finding: the whole uncovered share that
#: the default radius allows by chance.
MIN_SHARE = DEFAULT_ALPHA
#: A cluster with at least this share of traffic is a critical finding.
CRITICAL_SHARE = 0.2
#: Distances within this of zero count as duplicates.
_DUPLICATE_DECIMALS = 6

_NS_PER_DAY = 86_400 * 10**9


# --------------------------------------------------------------------------------------------------
# Nearest neighbours


def _unit_rows(vectors: Any, what: str) -> np.ndarray:
    """``vectors`` as a 2-D float array with rows of unit length."""
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValidationFailed(f"{what} must be a 2-D array of vectors, got shape {array.shape}")
    array = array.astype(np.result_type(array.dtype, np.float32), copy=False)
    if not np.isfinite(array).all():
        raise ValidationFailed(f"{what} holds NaN or infinite values; embed the texts again")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if array.shape[0] and (norms == 0).any():
        raise ValidationFailed(f"{what} holds all-zero vectors, which have no direction to compare")
    return array / norms


def _max_dot(
    a: np.ndarray, b: np.ndarray, *, skip_self: bool = False, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: the largest dot product with a row of ``b`` and that row's index.

    Blocks of at most ``block_elements`` products are computed at a time. With ``skip_self`` (``a`` is
    ``b``) a row is not compared with itself."""
    n, m = a.shape[0], b.shape[0]
    best = np.full(n, -np.inf, dtype=np.result_type(a.dtype, b.dtype))
    where = np.full(n, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return best, where
    cols = max(1, min(m, block_elements))
    rows = max(1, block_elements // cols)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        for c0 in range(0, m, cols):
            c1 = min(m, c0 + cols)
            block = a[r0:r1] @ b[c0:c1].T
            if skip_self:
                lo, hi = max(r0, c0), min(r1, c1)
                if lo < hi:
                    diagonal = np.arange(lo, hi)
                    block[diagonal - r0, diagonal - c0] = -np.inf
            top = block.argmax(axis=1)
            value = block[np.arange(r1 - r0), top]
            better = value > best[r0:r1]
            best[r0:r1][better] = value[better]
            where[r0:r1][better] = top[better] + c0
    return best, where


def nearest_eval_distances(
    production: Any, eval_set: Any, *, block_elements: int = BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """Each production vector's cosine distance to its nearest eval vector, and that vector's index.

    Exact (no index), in blocks of at most ``block_elements`` similarities, so 100,000 by 10,000 vectors
    need a few tens of MiB besides the vectors themselves. Vectors need not be normalised."""
    return _nearest(
        _unit_rows(production, "production vectors"), _unit_rows(eval_set, "eval vectors"), block_elements
    )


def _nearest(p: np.ndarray, e: np.ndarray, block_elements: int) -> tuple[np.ndarray, np.ndarray]:
    if p.shape[1] != e.shape[1]:
        raise ValidationFailed(
            f"production vectors have {p.shape[1]} dimensions and eval vectors {e.shape[1]}: embed both "
            "with the same model"
        )
    if e.shape[0] == 0:
        raise ValidationFailed("the eval set has no vectors: nothing can cover production traffic")
    similarity, index = _max_dot(p, e, block_elements=block_elements)
    return np.clip(1.0 - similarity.astype(np.float64), 0.0, 2.0), index


def _distinct(unit: np.ndarray) -> np.ndarray:
    _, first = np.unique(np.round(unit, _DUPLICATE_DECIMALS), axis=0, return_index=True)
    return unit[np.sort(first)]


def default_radius(eval_set: Any, *, alpha: float = DEFAULT_ALPHA) -> float:
    """The conformal radius of an eval set: the ceil((n + 1)(1 - alpha))-th smallest leave-one-out
    nearest-neighbour cosine distance among its n distinct vectors (the largest when that rank is
    beyond n). Traffic like the eval set falls outside it with probability at most ``alpha``."""
    if not 0 < alpha < 1:
        raise ValidationFailed(f"alpha must be between 0 and 1, got {alpha}")
    distinct = _distinct(_unit_rows(eval_set, "eval vectors"))
    n = distinct.shape[0]
    if n < 2:
        raise ValidationFailed(
            f"the eval set has {n} distinct example(s): the default radius needs at least 2; give a radius"
        )
    similarity, _ = _max_dot(distinct, distinct, skip_self=True)
    loo = np.sort(np.clip(1.0 - similarity.astype(np.float64), 0.0, 2.0))
    rank = min(n, math.ceil((n + 1) * (1 - alpha)))
    return float(loo[rank - 1])


def mean_pairwise_distance(vectors: Any) -> float:
    """The mean cosine distance between two distinct rows (duplicates counted once), in O(n·d):
    for unit vectors the sum of all dot products is the squared norm of their sum."""
    distinct = _distinct(_unit_rows(vectors, "eval vectors")).astype(np.float64)
    n = distinct.shape[0]
    if n < 2:
        return 1.0
    total = float(np.dot(distinct.sum(axis=0), distinct.sum(axis=0)))
    return float(np.clip(1.0 - (total - n) / (n * (n - 1)), 0.0, 2.0))


# --------------------------------------------------------------------------------------------------
# Clusters of uncovered traffic


def _cluster_labels(unit: np.ndarray, threshold: float, seed: int) -> np.ndarray:
    """A cluster number for each row of ``unit`` (average linkage, cosine, cut at ``threshold``)."""
    n = unit.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    if n > CLUSTER_SAMPLE:
        sample = np.sort(np.random.default_rng(seed).choice(n, CLUSTER_SAMPLE, replace=False))
    else:
        sample = np.arange(n)
    fitted = AgglomerativeClustering(
        n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average"
    ).fit(unit[sample])
    sample_labels = np.asarray(fitted.labels_, dtype=np.int64)
    if len(sample) == n:
        return sample_labels
    k = int(sample_labels.max()) + 1
    means = np.stack([unit[sample][sample_labels == c].mean(axis=0) for c in range(k)])
    _, labels = _max_dot(unit, means)
    return labels


def _shorten(text: str | None) -> str | None:
    if text is None or len(text) <= EXAMPLE_CHARS:
        return text
    return text[: EXAMPLE_CHARS - 1] + "…"


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns // _NS_PER_DAY * 86_400, UTC).date().isoformat()


def _timestamps_ns(timestamps: Any, n: int) -> np.ndarray | None:
    if timestamps is None:
        return None
    values = list(timestamps)
    if len(values) != n:
        raise ValidationFailed(f"{len(values)} timestamps for {n} production vectors: give one each")
    converted = []
    for value in values:
        if isinstance(value, datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=UTC)
            converted.append(round(aware.timestamp() * 1e9))
        elif isinstance(value, date):
            converted.append(
                round(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1e9)
            )
        else:
            converted.append(int(value))
    return np.asarray(converted, dtype=np.int64)


def _growth(shares: list[float]) -> float | None:
    """The least-squares slope of a daily share, per day."""
    if len(shares) < 2:
        return None
    slope = np.polyfit(np.arange(len(shares), dtype=np.float64), np.asarray(shares), 1)[0]
    return float(slope)


def _terms(
    texts: Sequence[str | None], groups: list[np.ndarray], background: np.ndarray, seed: int
) -> list[list[str]]:
    """For each group of text positions: the terms whose mean TF-IDF in the group most exceeds theirs in
    ``background``, among terms in at least :data:`TERM_MIN_DF` of the group's texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(seed)

    def sample(positions: np.ndarray) -> np.ndarray:
        if len(positions) <= TERM_SAMPLE:
            return positions
        return np.sort(rng.choice(positions, TERM_SAMPLE, replace=False))

    sampled = [sample(group) for group in groups]
    back = sample(background)
    documents = [texts[i] or "" for part in (*sampled, back) for i in part]
    vectorizer = TfidfVectorizer(
        stop_words="english", sublinear_tf=True, token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b"
    )
    try:
        matrix = vectorizer.fit_transform(documents).tocsr()
    except ValueError:  # no term left: empty texts, or only stop words
        return [[] for _ in groups]
    names = vectorizer.get_feature_names_out()
    ends = np.cumsum([0, *(len(part) for part in sampled), len(back)])
    back_rows = matrix[ends[-2] : ends[-1]]
    back_mean = np.asarray(back_rows.mean(axis=0)).ravel() if back_rows.shape[0] else np.zeros(len(names))
    found: list[list[str]] = []
    for g in range(len(groups)):
        rows = matrix[ends[g] : ends[g + 1]]
        if rows.shape[0] == 0:
            found.append([])
            continue
        score = np.asarray(rows.mean(axis=0)).ravel() - back_mean
        df = np.asarray((rows > 0).sum(axis=0)).ravel()
        score[df < max(1, math.ceil(TERM_MIN_DF * rows.shape[0]))] = -np.inf
        order = np.lexsort((names, -score))  # best first, ties by name
        found.append([str(names[i]) for i in order[:N_TERMS] if score[i] > 0])
    return found


@dataclass(frozen=True)
class UncoveredCluster:
    """A group of uncovered production inputs about the same thing."""

    id: int
    #: Production positions, most central first.
    members: np.ndarray
    share: float
    #: Cosine distance from the cluster's centroid to the nearest eval example.
    centroid_distance: float
    #: The members' mean distance to their nearest eval example.
    mean_distance: float
    terms: list[str]
    #: [{"date", "count", "share"}] for each day with traffic; empty without timestamps.
    daily: list[dict[str, Any]] = field(default_factory=list)
    #: Least-squares slope of the daily share of traffic, per day (None with fewer than 2 days).
    growth: float | None = None

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def label(self) -> str:
        return ", ".join(self.terms[:LABEL_TERMS]) or f"cluster {self.id}"


@dataclass(frozen=True)
class CoverageReport:
    """How far production traffic is from the eval set, and where the uncovered part goes."""

    #: Each production input's cosine distance to its nearest eval example.
    distances: np.ndarray
    #: The index of that eval example.
    nearest: np.ndarray
    radius: float
    #: How the radius was set: {"rule": "conformal", "alpha", "n_distinct_eval"} or {"rule": "given"}.
    radius_rule: dict[str, Any]
    theme_distance: float
    n_eval: int
    clusters: list[UncoveredCluster]
    #: [{"date", "n", "uncovered", "uncovered_share", "covered_share"}]; empty without timestamps.
    daily: list[dict[str, Any]] = field(default_factory=list)
    texts: Sequence[str | None] | None = None
    ids: Sequence[str] | None = None
    timestamps_ns: np.ndarray | None = None

    @property
    def n_production(self) -> int:
        return len(self.distances)

    @property
    def uncovered(self) -> np.ndarray:
        return np.asarray(self.distances > self.radius)

    @property
    def uncovered_share(self) -> float:
        return float(self.uncovered.mean()) if self.n_production else 0.0

    def to_dict(self, *, examples: int = N_EXAMPLES, max_trace_ids: int = MAX_TRACE_IDS) -> dict[str, Any]:
        """The JSON-ready report; clusters name trace ids (and days, as ``strata``) when ids were given."""
        n_uncovered = int(self.uncovered.sum())
        clustered = sum(cluster.size for cluster in self.clusters)
        quantiles = (
            {f"p{q}": float(np.percentile(self.distances, q)) for q in (50, 90, 95, 99)}
            if self.n_production
            else {}
        )
        return {
            "n_production": self.n_production,
            "n_eval": self.n_eval,
            "radius": self.radius,
            "radius_rule": self.radius_rule,
            "theme_distance": self.theme_distance,
            "n_uncovered": n_uncovered,
            "uncovered_share": self.uncovered_share,
            "covered_share": 1.0 - self.uncovered_share if self.n_production else 0.0,
            "scattered_share": (n_uncovered - clustered) / self.n_production if self.n_production else 0.0,
            "distance_quantiles": quantiles,
            "daily": self.daily,
            "clusters": [self._cluster_dict(cluster, examples, max_trace_ids) for cluster in self.clusters],
        }

    def _cluster_dict(self, cluster: UncoveredCluster, examples: int, max_trace_ids: int) -> dict[str, Any]:
        top = cluster.members[:max_trace_ids]
        entry: dict[str, Any] = {
            "id": cluster.id,
            "size": cluster.size,
            "share": cluster.share,
            "label": cluster.label,
            "terms": cluster.terms,
            "centroid_distance": cluster.centroid_distance,
            "mean_distance": cluster.mean_distance,
            "examples": [
                {
                    "trace_id": self.ids[i] if self.ids is not None else None,
                    "text": _shorten(self.texts[i]) if self.texts is not None else None,
                    "distance": float(self.distances[i]),
                }
                for i in cluster.members[:examples]
            ],
            "daily": cluster.daily,
            "growth": cluster.growth,
        }
        if self.ids is not None:
            entry["trace_ids"] = [self.ids[i] for i in top]
            if self.timestamps_ns is not None:
                entry["strata"] = {self.ids[i]: _day(int(self.timestamps_ns[i])) for i in top}
        return entry


def coverage_gap(
    production: Any,
    eval_set: Any,
    *,
    radius: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    texts: Sequence[str | None] | None = None,
    ids: Sequence[str] | None = None,
    timestamps: Any = None,
    max_clusters: int = 8,
    theme_distance: float | None = None,
    seed: int = 0,
    block_elements: int = BLOCK_ELEMENTS,
) -> CoverageReport:
    """Which production vectors are farther than ``radius`` from every eval vector, and their clusters.

    ``radius`` defaults to :func:`default_radius` (at ``alpha``); ``theme_distance`` (where the
    clustering stops merging) to the eval set's :func:`mean_pairwise_distance`. ``texts`` (for cluster
    terms and examples), ``ids`` (trace ids) and ``timestamps`` (datetimes or ns since the epoch, for
    the trend per day) are optional, one per production vector."""
    n = int(np.asarray(production).shape[0]) if np.ndim(production) == 2 else -1
    for name, values in (("texts", texts), ("ids", ids)):
        if values is not None and len(values) != n:
            raise ValidationFailed(f"{len(values)} {name} for {n} production vectors: give one each")
    if max_clusters < 1:
        raise ValidationFailed(f"max_clusters must be at least 1, got {max_clusters}")
    if radius is not None and not 0 <= radius <= 2:
        raise ValidationFailed(f"a cosine-distance radius is between 0 and 2, got {radius}")
    unit = _unit_rows(production, "production vectors")
    unit_eval = _unit_rows(eval_set, "eval vectors")
    distances, nearest = _nearest(unit, unit_eval, block_elements)
    if radius is None:
        radius = default_radius(unit_eval, alpha=alpha)
        rule: dict[str, Any] = {
            "rule": "conformal",
            "alpha": alpha,
            "n_distinct_eval": len(_distinct(unit_eval)),
        }
    else:
        rule = {"rule": "given"}
    if theme_distance is None:
        theme_distance = mean_pairwise_distance(unit_eval)
    stamps = _timestamps_ns(timestamps, len(distances))
    uncovered = np.flatnonzero(distances > radius)
    clusters: list[UncoveredCluster] = []
    if len(uncovered):
        labels = _cluster_labels(unit[uncovered], theme_distance, seed)
        by_size = Counter(labels.tolist()).most_common()
        groups = [uncovered[labels == label] for label, _ in by_size[:max_clusters]]
        covered = np.flatnonzero(distances <= radius)
        background = covered if len(covered) else uncovered
        terms = _terms(texts, groups, background, seed) if texts is not None else [[] for _ in groups]
        for number, (members, words) in enumerate(zip(groups, terms, strict=True), start=1):
            clusters.append(
                _cluster(number, members, words, unit, unit_eval, distances, stamps, len(distances))
            )
    daily = _daily(stamps, distances > radius) if stamps is not None else []
    return CoverageReport(
        distances=distances,
        nearest=nearest,
        radius=float(radius),
        radius_rule=rule,
        theme_distance=float(theme_distance),
        n_eval=int(unit_eval.shape[0]),
        clusters=clusters,
        daily=daily,
        texts=texts,
        ids=ids,
        timestamps_ns=stamps,
    )


def _cluster(
    number: int,
    members: np.ndarray,
    terms: list[str],
    unit: np.ndarray,
    unit_eval: np.ndarray,
    distances: np.ndarray,
    stamps: np.ndarray | None,
    n_production: int,
) -> UncoveredCluster:
    mean = unit[members].mean(axis=0)
    centrality = unit[members] @ mean
    ranked = members[np.lexsort((members, -centrality))]
    centroid = mean / (np.linalg.norm(mean) or 1.0)
    centroid_similarity, _ = _max_dot(centroid[None, :], unit_eval)
    daily: list[dict[str, Any]] = []
    growth = None
    if stamps is not None:
        days = stamps // _NS_PER_DAY
        all_days, totals = np.unique(days, return_counts=True)
        counts = Counter((days[members]).tolist())
        daily = [
            {
                "date": _day(int(d) * _NS_PER_DAY),
                "count": counts.get(int(d), 0),
                "share": counts.get(int(d), 0) / int(t),
            }
            for d, t in zip(all_days, totals, strict=True)
        ]
        growth = _growth([entry["share"] for entry in daily])
    return UncoveredCluster(
        id=number,
        members=ranked,
        share=len(members) / n_production,
        centroid_distance=float(np.clip(1.0 - centroid_similarity[0], 0.0, 2.0)),
        mean_distance=float(distances[members].mean()),
        terms=terms,
        daily=daily,
        growth=growth,
    )


def _daily(stamps: np.ndarray, uncovered: np.ndarray) -> list[dict[str, Any]]:
    days = stamps // _NS_PER_DAY
    found = []
    for day in np.unique(days):
        on_day = days == day
        n = int(on_day.sum())
        out = int(uncovered[on_day].sum())
        found.append(
            {
                "date": _day(int(day) * _NS_PER_DAY),
                "n": n,
                "uncovered": out,
                "uncovered_share": out / n,
                "covered_share": 1 - out / n,
            }
        )
    return found


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
