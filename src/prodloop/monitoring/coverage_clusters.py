"""Clusters of uncovered traffic: :func:`coverage_gap` and the :class:`CoverageReport` it returns.

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
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from prodloop.errors import ValidationFailed
from prodloop.monitoring.coverage_distances import (
    BLOCK_ELEMENTS,
    DEFAULT_ALPHA,
    _distinct,
    _max_dot,
    _nearest,
    _unit_rows,
    default_radius,
    mean_pairwise_distance,
)

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

_NS_PER_DAY = 86_400 * 10**9


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
