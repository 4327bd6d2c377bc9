"""Drift between two sets of embeddings: did the meaning of the texts move?

Three views of the same question, on the reference rows ``X`` (m rows) and the current rows ``Y`` (n rows):

**MMD² with a permutation p-value.** The maximum mean discrepancy (Gretton et al., "A Kernel
Two-Sample Test", JMLR 2012) with the Gaussian kernel ``k(x, y) = exp(-‖x - y‖² / (2 sigma²))``. The
bandwidth ``sigma`` is the median heuristic: the median Euclidean distance between distinct rows of the
pooled sample (Gretton et al. 2012, §8). The statistic is the unbiased estimate (their eq. 3)::

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m-1)) + Σ_{i≠j} k(y_i, y_j) / (n(n-1)) - 2 Σ_{i,j} k(x_i, y_j) / (mn)

Its null distribution comes from permutations of the reference/current labels over the pooled rows.
The kernel matrix ``K`` is computed once; with a matrix ``U`` whose columns are the permuted indicator
vectors of the reference rows, ``K @ U`` gives every permutation's three block sums in one matrix
product (``uᵀKu``, ``uᵀK1``), so a few hundred permutations cost a few matrix products, not a loop.
``p = (1 + #{permuted ≥ observed}) / (1 + permutations)``.

**Domain classifier ROC AUC.** A logistic regression learns to tell current rows from reference rows;
its out-of-fold probabilities over stratified k folds give the ROC AUC. 0.5: the two sets cannot be
told apart; 1.0: every current row is recognisable. It is the same method as Evidently's default for
embeddings (``model``, AUC threshold 0.55) and the TF-IDF text drift of :mod:`prodloop.monitoring.text`.
The regression is scikit-learn's ``LogisticRegression(C=0.03, class_weight="balanced")`` on features
standardised with the training fold's mean and deviation, fitted here by Newton's method on the same
objective (numpy only; the tests check it against scikit-learn on the same folds). The strong L2 (small
C) suits 384 correlated dimensions and a few hundred rows a fold: it changes the AUC little and keeps
the probabilities calibrated enough to rank rows (on the demo, 104 of the 116 current rows it scores
0.75 or more are about the new product, against 101 of 155 with C = 1).

**Distance between the means**, Euclidean and cosine: how far the centre of the texts moved.

**The verdict.** Drift when the classifier's AUC reaches ``threshold`` (0.55) **and** the MMD
permutation test rejects at ``alpha`` (0.05). The AUC decides how large a shift counts: it is an effect
size a person can read ("a classifier tells today's messages from last month's in 74% of pairs") and
does not grow with the sample, so a month of traffic does not alert on a trivial wobble that any
test would call significant. The MMD test decides whether the shift is real: on a few dozen rows a
classifier's AUC scatters above 0.55 by chance, and the permutation test, which makes no assumption
about the classifier, keeps those quiet. Both numbers are reported either way.

**What drives it.** Every current row gets the classifier's out-of-sample probability of being
current (rows fitted in a fold are scored by the model that did not see them; rows left out by
``max_rows`` by the average of the fold models). Rows ranked by it are the ones most unlike the
reference: those an alert routes to people first. Rows with a probability of at least
``cluster_score`` (0.75: where current texts are at least three times as dense as reference texts)
are grouped by k-means when drift is found, into clusters with their size, share, example texts (when
the caller gives the texts) and their rows' median cosine similarity to the nearest reference row. A
cluster is **new** when that similarity is below the 5th percentile of what reference rows have to
their own nearest neighbour: texts about something the reference never had (the new product), rather
than more of something it had. New clusters come first: they are what an alert routes to a queue.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.special import expit, log_expit
from scipy.stats import rankdata

from prodloop.errors import ValidationFailed

#: AUC at which drift is flagged (Evidently's default for embedding drift by a domain classifier).
AUC_THRESHOLD = 0.55
#: Significance of the MMD permutation test.
ALPHA = 0.05
#: Permutations for the MMD p-value.
PERMUTATIONS = 500
#: Rows per side used for the statistics; more are sampled down (the kernel matrix grows as rows²).
MAX_ROWS = 2000
#: Folds of the domain classifier's cross-validation.
FOLDS = 5
#: Inverse L2 strength of the domain classifier (scikit-learn's C) on standardised features.
CLASSIFIER_C = 0.03
#: Classifier probability from which a current row counts as drifting and is clustered.
CLUSTER_SCORE = 0.75
#: Most clusters reported; fewer when there are few drifting rows.
MAX_CLUSTERS = 5
#: Fewest rows a reported cluster has.
MIN_CLUSTER_SIZE = 5
#: Example texts per cluster.
EXAMPLES = 5
#: Driving rows listed in ``to_dict``.
DRIVERS = 50
#: Fewest rows per side.
MIN_ROWS = 10
_PERMUTATION_BLOCK = 100


@dataclass(frozen=True)
class EmbeddingCluster:
    """A group of drifting current rows, near each other."""

    size: int
    #: Share of all current rows.
    share: float
    #: Mean classifier probability of being current.
    score: float
    #: Median over its rows of the cosine similarity to the nearest reference row.
    reference_similarity: float
    #: True when that is below what reference rows have to their own nearest neighbour (the 5th
    #: percentile): texts about something the reference does not have, rather than more of the same.
    new: bool
    #: Indices of its current rows, nearest the centre first.
    rows: list[int]
    #: Texts of the rows nearest the centre, when the caller gave texts.
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "share": self.share,
            "score": self.score,
            "reference_similarity": self.reference_similarity,
            "new": self.new,
            "rows": self.rows,
            "examples": self.examples,
        }


@dataclass(frozen=True)
class EmbeddingDriftResult:
    """Embedding drift between reference and current rows; see the module's documentation."""

    drift: bool
    #: Domain classifier ROC AUC (out of fold) and the AUC from which it counts as drift.
    auc: float
    threshold: float
    #: Unbiased MMD², its permutation p-value, and the significance it is tested at.
    mmd2: float
    p_value: float
    alpha: float
    #: Kernel bandwidth sigma (median heuristic) and the number of permutations.
    bandwidth: float
    permutations: int
    #: Distances between the mean reference and the mean current vector.
    mean_distance: float
    mean_cosine_distance: float
    #: Rows given, and rows the statistics used (after sampling down to ``max_rows``).
    n_reference: int
    n_current: int
    n_reference_used: int
    n_current_used: int
    #: Every current row's out-of-sample probability of being current (not in ``to_dict``).
    current_scores: np.ndarray = field(repr=False, compare=False)
    clusters: list[EmbeddingCluster] = field(default_factory=list)

    def driving_rows(self, limit: int | None = DRIVERS, min_score: float = 0.5) -> list[int]:
        """Indices of current rows most unlike the reference, most telling first (probability of being
        current above ``min_score``, highest first)."""
        order = np.argsort(-self.current_scores, kind="stable")
        order = order[self.current_scores[order] > min_score]
        return [int(i) for i in (order if limit is None else order[:limit])]

    def summary(self) -> str:
        """One line for a person: the verdict and the numbers behind it."""
        verdict = "drifted" if self.drift else "no drift"
        return (
            f"{verdict}: a classifier tells current from reference with ROC AUC {self.auc:.3f} "
            f"(threshold {self.threshold:.2f}); MMD² = {self.mmd2:.4f}, p = {self.p_value:.3g}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the numbers, the top driving rows and the clusters."""
        drivers = self.driving_rows()
        return {
            "drift": self.drift,
            "auc": self.auc,
            "threshold": self.threshold,
            "mmd2": self.mmd2,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "bandwidth": self.bandwidth,
            "permutations": self.permutations,
            "mean_distance": self.mean_distance,
            "mean_cosine_distance": self.mean_cosine_distance,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "n_reference_used": self.n_reference_used,
            "n_current_used": self.n_current_used,
            "driving_rows": drivers,
            "driving_scores": [float(self.current_scores[i]) for i in drivers],
            "clusters": [c.to_dict() for c in self.clusters],
        }


# --------------------------------------------------------------------------------------------------
# MMD


def squared_distances(z: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances of the rows of ``z`` (float64, zero diagonal)."""
    z = np.asarray(z, dtype=np.float64)
    norms = np.einsum("ij,ij->i", z, z)
    d = norms[:, None] + norms[None, :] - 2.0 * (z @ z.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def median_bandwidth(squared: np.ndarray) -> float:
    """sigma of the median heuristic: the median distance between distinct rows (from squared distances)."""
    upper = squared[~np.tri(len(squared), dtype=bool)]  # above the diagonal: each pair once
    median = float(np.median(upper, overwrite_input=True)) if upper.size else 0.0
    return math.sqrt(median) if median > 0 else 1.0


def _mmd2_from_sums(
    within_x: np.ndarray, cross_x: np.ndarray, diag_x: np.ndarray, total: float, trace: float, m: int, n: int
) -> np.ndarray:
    """Unbiased MMD² from ``uᵀKu``, ``uᵀK1``, ``uᵀdiag(K)`` (one value per indicator vector u)."""
    sxx = within_x - diag_x
    sxy = cross_x - within_x
    syy = total - 2.0 * cross_x + within_x - (trace - diag_x)
    result: np.ndarray = sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2.0 * sxy / (m * n)
    return result


def mmd_permutation_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    n_permutations: int = PERMUTATIONS,
    bandwidth: float | None = None,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(mmd2, p_value, bandwidth)``: unbiased MMD² with a Gaussian kernel and its permutation p-value."""
    m, n = len(reference), len(current)
    if m < 2 or n < 2:
        raise ValidationFailed(f"MMD needs at least 2 rows per side; got {m} reference and {n} current")
    squared = squared_distances(np.vstack([reference, current]))
    sigma = median_bandwidth(squared) if bandwidth is None else float(bandwidth)
    kernel = np.multiply(squared, -1.0 / (2.0 * sigma * sigma), out=squared)
    np.exp(kernel, out=kernel)
    row_sums = kernel.sum(axis=1)
    diagonal = np.diagonal(kernel).copy()
    total, trace = float(row_sums.sum()), float(diagonal.sum())
    is_reference = np.zeros(m + n)
    is_reference[:m] = 1.0
    observed = float(
        _mmd2_from_sums(
            np.array([is_reference @ kernel @ is_reference]),
            np.array([row_sums[:m].sum()]),
            np.array([diagonal[:m].sum()]),
            total,
            trace,
            m,
            n,
        )[0]
    )
    rng = np.random.default_rng(seed)
    exceed = 0
    for start in range(0, n_permutations, _PERMUTATION_BLOCK):
        block = min(_PERMUTATION_BLOCK, n_permutations - start)
        labels = np.empty((m + n, block))
        for j in range(block):
            labels[:, j] = rng.permutation(is_reference)
        within = np.einsum("ij,ij->j", labels, kernel @ labels)
        permuted = _mmd2_from_sums(within, row_sums @ labels, diagonal @ labels, total, trace, m, n)
        # A relative tolerance, so that a permutation equal to the observed one counts as reaching it.
        exceed += int(np.count_nonzero(permuted >= observed - 1e-12 * max(1.0, abs(observed))))
    p_value = (1 + exceed) / (1 + n_permutations)
    return observed, p_value, sigma


# --------------------------------------------------------------------------------------------------
# Domain classifier


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) of each row: each class shuffled and dealt round the folds."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        folds[rng.permutation(rows)] = np.arange(len(rows)) % k
    return folds


def _balanced_weights(labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return len(labels) / (2.0 * counts[labels])


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    c: float = 1.0,
    *,
    tolerance: float = 1e-9,
    max_iter: int = 100,
) -> tuple[np.ndarray, float]:
    """L2 logistic regression, ``min C sum_i w_i loss(y_i, x_i.beta + b) + |beta|^2 / 2`` (the intercept
    not penalised, as in scikit-learn), by Newton's method with a backtracking line search; returns
    ``(beta, b)``.

    The objective is smooth and strictly convex, so Newton converges in a handful of steps (each one
    matrix product ``Xᵀ W X`` of the few hundred dimensions): far fewer passes over the rows than a
    gradient method needs for the same precision.
    """
    x = np.hstack([np.asarray(features, dtype=np.float64), np.ones((len(features), 1))])
    sign = np.where(labels == 1, 1.0, -1.0)
    cw = c * np.asarray(weights, dtype=np.float64)
    penalty = np.ones(x.shape[1])
    penalty[-1] = 0.0  # the intercept

    def objective(theta: np.ndarray) -> float:
        return -float(cw @ log_expit(sign * (x @ theta))) + 0.5 * float(penalty @ theta**2)

    theta = np.zeros(x.shape[1])
    value = objective(theta)
    for _ in range(max_iter):
        margin = sign * (x @ theta)
        p_wrong = expit(-margin)
        gradient = x.T @ (-cw * sign * p_wrong) + penalty * theta
        if float(np.abs(gradient).max()) <= tolerance * max(1.0, float(cw.sum())):
            break
        curvature = cw * p_wrong * (1.0 - p_wrong)
        hessian = (x * curvature[:, None]).T @ x
        hessian[np.diag_indices_from(hessian)] += penalty + 1e-12
        step = np.linalg.solve(hessian, gradient)
        slope = float(gradient @ step)
        size = 1.0
        while True:
            candidate = theta - size * step
            new_value = objective(candidate)
            if new_value <= value - 1e-4 * size * slope or size < 1e-10:
                break
            size *= 0.5
        if value - new_value <= 1e-15 * max(1.0, abs(value)):
            theta = candidate if new_value < value else theta
            break
        theta, value = candidate, new_value
    return theta[:-1], float(theta[-1])


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the positive class 1: the Mann-Whitney U over n₁n₀ (ties count half)."""
    positive = labels == 1
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        raise ValidationFailed("ROC AUC needs rows of both classes")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


@dataclass(frozen=True)
class _Classifier:
    out_of_fold: np.ndarray  # probability of "current" for every pooled row
    models: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]  # (mean, scale, beta, b) per fold

    def predict(self, rows: np.ndarray) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float64)
        return np.mean([expit(((x - mu) / sd) @ beta + b) for mu, sd, beta, b in self.models], axis=0)


def domain_classifier(
    features: np.ndarray, labels: np.ndarray, folds: np.ndarray, c: float = CLASSIFIER_C
) -> _Classifier:
    """Out-of-fold probabilities that each row is current (label 1), one standardised logistic
    regression per fold."""
    x = np.asarray(features, dtype=np.float64)
    out = np.empty(len(x))
    models = []
    for fold in np.unique(folds):
        test = folds == fold
        train = ~test
        mu = x[train].mean(axis=0)
        sd = x[train].std(axis=0)
        sd[sd == 0] = 1.0
        beta, b = fit_logistic((x[train] - mu) / sd, labels[train], _balanced_weights(labels[train]), c)
        out[test] = expit(((x[test] - mu) / sd) @ beta + b)
        models.append((mu, sd, beta, b))
    return _Classifier(out, models)


# --------------------------------------------------------------------------------------------------
# Clusters of drifting rows


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: np.ndarray = rows / norms
    return result


def nearest_similarity(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row to its nearest reference row."""
    return np.asarray((_unit(rows) @ _unit(reference).T).max(axis=1))


def novelty_baseline(reference: np.ndarray, percentile: float = 5.0) -> float:
    """The similarity below which a row is farther from the reference than 95% of reference rows are
    from their own nearest neighbour (each row left out of its own search)."""
    unit = _unit(reference)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.percentile(similarity.max(axis=1), percentile))


def drifting_clusters(
    current: np.ndarray,
    scores: np.ndarray,
    reference: np.ndarray,
    *,
    texts: Sequence[str] | None = None,
    min_score: float = CLUSTER_SCORE,
    max_clusters: int = MAX_CLUSTERS,
    min_size: int = MIN_CLUSTER_SIZE,
    examples: int = EXAMPLES,
    seed: int = 0,
) -> list[EmbeddingCluster]:
    """k-means (on unit vectors) over the current rows scored at least ``min_score``: clusters of at
    least ``min_size`` rows, new ones first, then the largest."""
    drifting = np.flatnonzero(scores >= min_score)
    k = min(max_clusters, len(drifting) // max(min_size, 1))
    if k < 1:
        return []
    points = _unit(np.asarray(current[drifting], dtype=np.float64))
    k = min(k, len(np.unique(points.round(6), axis=0)))  # k-means++ needs k distinct points
    with warnings.catch_warnings():
        # A cluster that ends empty (repeated texts leave fewer distinct points than k) is dropped below.
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        centres, assignment = kmeans2(points, k, minit="++", seed=np.random.default_rng(seed))
    nearest_reference = nearest_similarity(points, reference)
    baseline = novelty_baseline(reference)
    clusters = []
    for c in range(k):
        members = np.flatnonzero(assignment == c)
        if len(members) < min_size:
            continue
        centre = _unit(centres[c : c + 1])[0]
        ranked = members[np.argsort(-(points[members] @ centre), kind="stable")]
        rows = [int(drifting[i]) for i in ranked]
        similarity = float(np.median(nearest_reference[members]))
        clusters.append(
            EmbeddingCluster(
                size=len(members),
                share=len(members) / len(current),
                score=float(scores[drifting[members]].mean()),
                reference_similarity=similarity,
                new=similarity < baseline,
                rows=rows,
                examples=[str(texts[i]) for i in rows[:examples]] if texts is not None else [],
            )
        )
    clusters.sort(key=lambda cl: (not cl.new, -cl.size, -cl.score))
    return clusters


# --------------------------------------------------------------------------------------------------
# The entry point


def _matrix(name: str, rows: np.ndarray) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float64)
    if array.ndim != 2:
        raise ValidationFailed(
            f"{name} embeddings must be a matrix (rows x dimensions), not shape {array.shape}"
        )
    if len(array) < MIN_ROWS:
        raise ValidationFailed(
            f"{name} has {len(array)} rows; embedding drift needs at least {MIN_ROWS} per side",
            {"rows": len(array), "minimum": MIN_ROWS},
        )
    if not np.isfinite(array).all():
        raise ValidationFailed(f"{name} embeddings hold NaN or infinite values")
    return array


def _sample(rng: np.random.Generator, n: int, limit: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, size=limit, replace=False))


def embedding_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    n_permutations: int = PERMUTATIONS,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
    threshold: float = AUC_THRESHOLD,
    alpha: float = ALPHA,
    folds: int = FOLDS,
    texts: Sequence[str] | None = None,
    clusters: bool = True,
    classifier_c: float = CLASSIFIER_C,
    cluster_score: float = CLUSTER_SCORE,
    max_clusters: int = MAX_CLUSTERS,
) -> EmbeddingDriftResult:
    """Compare two sets of embeddings (rows x dimensions); see the module's documentation.

    ``texts`` are the current rows' texts, used for the clusters' examples. Sides longer than
    ``max_rows`` are sampled down (with ``seed``) for the statistics; every current row is scored.
    """
    ref = _matrix("reference", reference)
    cur = _matrix("current", current)
    if ref.shape[1] != cur.shape[1]:
        raise ValidationFailed(
            f"reference vectors have {ref.shape[1]} dimensions and current ones {cur.shape[1]}: "
            "they come from different models and cannot be compared",
            {"reference": ref.shape[1], "current": cur.shape[1]},
        )
    if texts is not None and len(texts) != len(cur):
        raise ValidationFailed(f"{len(texts)} texts for {len(cur)} current rows; give one text per row")
    if n_permutations < 1 or max_rows < MIN_ROWS or folds < 2:
        raise ValidationFailed(
            f"n_permutations >= 1, max_rows >= {MIN_ROWS} and folds >= 2; "
            f"got {n_permutations}, {max_rows} and {folds}"
        )
    rng = np.random.default_rng(seed)
    ref_rows = _sample(rng, len(ref), max_rows)
    cur_rows = _sample(rng, len(cur), max_rows)
    x, y = ref[ref_rows], cur[cur_rows]

    mmd2, p_value, sigma = mmd_permutation_test(x, y, n_permutations=n_permutations, seed=seed)

    pooled = np.vstack([x, y])
    labels = np.concatenate([np.zeros(len(x), dtype=np.int64), np.ones(len(y), dtype=np.int64)])
    fold_of = stratified_folds(labels, min(folds, len(x), len(y)), seed)
    classifier = domain_classifier(pooled, labels, fold_of, classifier_c)
    auc = roc_auc(labels, classifier.out_of_fold)
    scores = np.empty(len(cur))
    scores[cur_rows] = classifier.out_of_fold[len(x) :]
    unseen = np.setdiff1d(np.arange(len(cur)), cur_rows, assume_unique=True)
    if len(unseen):
        scores[unseen] = classifier.predict(cur[unseen])

    mean_ref, mean_cur = ref.mean(axis=0), cur.mean(axis=0)
    norms = float(np.linalg.norm(mean_ref) * np.linalg.norm(mean_cur))
    drift = bool(auc >= threshold and p_value < alpha)
    found = (
        drifting_clusters(
            cur, scores, x, texts=texts, min_score=cluster_score, max_clusters=max_clusters, seed=seed
        )
        if clusters and drift
        else []
    )
    return EmbeddingDriftResult(
        drift=drift,
        auc=auc,
        threshold=threshold,
        mmd2=mmd2,
        p_value=p_value,
        alpha=alpha,
        bandwidth=sigma,
        permutations=n_permutations,
        mean_distance=float(np.linalg.norm(mean_ref - mean_cur)),
        mean_cosine_distance=float(1.0 - (mean_ref @ mean_cur) / norms) if norms > 0 else 0.0,
        n_reference=len(ref),
        n_current=len(cur),
        n_reference_used=len(x),
        n_current_used=len(y),
        current_scores=scores,
        clusters=found,
    )
