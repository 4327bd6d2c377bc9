"""Embedding drift: MMD against its formula and a hand example, the domain classifier against
scikit-learn on the same folds, and the verdict on the demo's real customer messages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import cosine, euclidean, pdist
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import PredefinedSplit, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prodloop.embeddings import encode
from prodloop.errors import ValidationFailed
from prodloop.monitoring.embedding_drift import (
    CLASSIFIER_C,
    domain_classifier,
    drifting_clusters,
    embedding_drift,
    mmd_permutation_test,
    roc_auc,
    stratified_folds,
)
from tests.embeddings import Message, demo_messages


def direct_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Gretton et al. (2012), eq. 3, term by term."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma**2))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_is_the_unbiased_estimate_with_the_median_bandwidth() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 5))
    y = rng.normal(size=(25, 5)) + 0.4
    mmd2, _, sigma = mmd_permutation_test(x, y, n_permutations=10)
    assert sigma == pytest.approx(float(np.median(pdist(np.vstack([x, y])))), rel=1e-9)
    assert mmd2 == pytest.approx(direct_mmd2(x, y, sigma), rel=1e-9, abs=1e-12)


def test_mmd_of_a_hand_worked_example() -> None:
    """X = {0, 1}, Y = {2, 3}, sigma = 1: MMD²_u = e^-½ + e^-½ - 2·(e^-2 + e^-4.5 + e^-½ + e^-2)/4
    = 1.5e^-½ - e^-2 - 0.5e^-4.5. Of the six ways to split four points in two, two (this one and its
    mirror) reach it: the exact permutation p-value is 1/3."""
    x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
    mmd2, p_value, sigma = mmd_permutation_test(x, y, n_permutations=3000, bandwidth=1.0)
    assert sigma == 1.0
    assert mmd2 == pytest.approx(1.5 * math.exp(-0.5) - math.exp(-2) - 0.5 * math.exp(-4.5), rel=1e-12)
    assert p_value == pytest.approx(1 / 3, abs=0.03)


def test_the_vectorised_permutations_equal_a_loop_over_them() -> None:
    """The same permutations (same seed, same order), each scored with the direct formula."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 3))
    y = rng.normal(size=(10, 3)) + 0.3
    permutations = 150  # more than one block of the matrix product
    mmd2, p_value, sigma = mmd_permutation_test(x, y, n_permutations=permutations, seed=11)
    pooled = np.vstack([x, y])
    is_reference = np.r_[np.ones(12), np.zeros(10)]
    labels = np.random.default_rng(11)
    reached = 0
    for _ in range(permutations):
        u = labels.permutation(is_reference).astype(bool)
        reached += direct_mmd2(pooled[u], pooled[~u], sigma) >= mmd2 - 1e-12
    assert p_value == (1 + reached) / (1 + permutations)


def test_the_domain_classifier_is_scikit_learns_on_the_same_folds() -> None:
    rng = np.random.default_rng(8)
    features = np.vstack([rng.normal(size=(80, 12)), rng.normal(size=(60, 12)) + 0.25 * rng.normal(size=12)])
    labels = np.r_[np.zeros(80, dtype=np.int64), np.ones(60, dtype=np.int64)]
    folds = stratified_folds(labels, 5, seed=2)
    assert sorted(np.bincount(folds[labels == 1]).tolist()) == [12] * 5  # stratified
    ours = domain_classifier(features, labels, folds).out_of_fold
    reference = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=CLASSIFIER_C, class_weight="balanced", tol=1e-10, max_iter=10_000),
    )
    theirs = cross_val_predict(
        reference, features, labels, cv=PredefinedSplit(folds), method="predict_proba"
    )[:, 1]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert roc_auc(labels, ours) == pytest.approx(roc_auc_score(labels, theirs), abs=1e-9)


def test_roc_auc_counts_ties_as_half_like_scikit_learn() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.3, 0.9, 0.2, 0.2])
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_distances_between_the_means_are_scipys() -> None:
    rng = np.random.default_rng(4)
    reference, current = rng.normal(size=(40, 6)), rng.normal(size=(30, 6)) + 0.5
    result = embedding_drift(reference, current, n_permutations=20)
    assert result.mean_distance == pytest.approx(euclidean(reference.mean(0), current.mean(0)), rel=1e-9)
    assert result.mean_cosine_distance == pytest.approx(cosine(reference.mean(0), current.mean(0)), rel=1e-9)


def test_every_current_row_is_scored_when_the_sides_are_sampled_down() -> None:
    rng = np.random.default_rng(6)
    reference = rng.normal(size=(150, 8))
    current = np.vstack([rng.normal(size=(120, 8)), rng.normal(size=(30, 8)) + 3.0])
    result = embedding_drift(reference, current, n_permutations=50, max_rows=60)
    assert (result.n_reference_used, result.n_current_used) == (60, 60)
    assert result.current_scores.shape == (150,) and np.isfinite(result.current_scores).all()
    # The shifted rows (120 to 149) are the ones that drive it, sampled or not.
    assert set(result.driving_rows(30)) == set(range(120, 150))


def test_a_repeated_new_text_makes_one_new_cluster() -> None:
    """Thirty copies of one message the reference never had (a template sent again and again)."""
    rng = np.random.default_rng(9)
    topics = rng.normal(size=(5, 64))  # five known topics; messages are noisy copies of them

    def messages(n: int) -> np.ndarray:
        return topics[rng.integers(0, 5, n)] + 0.3 * rng.normal(size=(n, 64))

    reference = messages(120)
    current = np.vstack([messages(90), np.tile(rng.normal(size=64), (30, 1))])
    texts = [f"usual {i}" for i in range(90)] + ["the same new question"] * 30
    result = embedding_drift(reference, current, n_permutations=100, texts=texts)
    assert result.drift
    [cluster] = [c for c in result.clusters if "the same new question" in c.examples]
    assert cluster.new and set(cluster.rows) == set(range(90, 120))
    # Only the copies drifting: fewer distinct points than clusters asked for, still one cluster.
    [alone] = drifting_clusters(current[90:], np.ones(30), reference, texts=texts[90:])
    assert alone.size == 30 and alone.new


def test_vectors_of_different_models_and_too_few_rows_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="different models"):
        embedding_drift(np.zeros((20, 384)), np.zeros((20, 768)))
    with pytest.raises(ValidationFailed, match="at least 10 per side"):
        embedding_drift(np.ones((20, 4)), np.ones((3, 4)))


# --------------------------------------------------------------------------------------------------
# The demo's customer messages, embedded by the real all-MiniLM-L6-v2

SIDE = 250


@pytest.fixture(scope="module")
def samples() -> dict[str, tuple[list[Message], np.ndarray]]:
    """Two disjoint samples of the weeks before the Acme Vault launch (day 20), and one of the last
    week, when about 40% of the messages are about it."""
    messages = demo_messages()
    before = [m for m in messages if 5 <= m.day < 19]
    order = np.random.default_rng(0).permutation(len(before))
    chosen = {
        "reference": [before[i] for i in order[:SIDE]],
        "same_weeks": [before[i] for i in order[SIDE : 2 * SIDE]],
        "after_launch": [m for m in messages if m.day >= 24][:SIDE],
    }
    return {name: (rows, encode([m.input for m in rows])) for name, rows in chosen.items()}


def test_no_drift_between_two_samples_of_the_same_weeks(
    samples: dict[str, tuple[list[Message], np.ndarray]],
) -> None:
    _, reference = samples["reference"]
    rows, current = samples["same_weeks"]
    result = embedding_drift(reference, current, n_permutations=200, texts=[m.input for m in rows])
    assert not result.drift, result.summary()
    # The classifier's AUC scatters around 0.5 by about 0.03 on 250 rows a side; MMD sees no shift.
    assert result.auc < 0.6 and result.p_value > 0.1
    assert result.clusters == []


def test_drift_when_customers_ask_about_a_new_product(
    samples: dict[str, tuple[list[Message], np.ndarray]],
) -> None:
    _, reference = samples["reference"]
    rows, current = samples["after_launch"]
    result = embedding_drift(reference, current, n_permutations=200, texts=[m.input for m in rows])
    assert result.drift, result.summary()
    # About 38% of these messages are about the new product: an AUC of at most about 0.5 + 0.38 / 2.
    assert result.auc > 0.6 and result.p_value < 0.01
    # The rows that drive it are the messages about the new product.
    drivers = result.driving_rows(50)
    assert np.mean([rows[i].intent == "acme_vault" for i in drivers]) >= 0.95
    # The first cluster is new ground, about the Acme Vault, and its examples say so.
    first = result.clusters[0]
    assert first.new and first.size >= 10
    assert np.mean([rows[i].intent == "acme_vault" for i in first.rows]) >= 0.9
    assert all("vault" in text.lower() for text in first.examples)
    assert sum(c.new for c in result.clusters) >= 2
    # The JSON form carries the numbers, the ranked rows and the clusters.
    document = json.loads(json.dumps(result.to_dict()))
    assert document["drift"] is True and document["driving_rows"][:50] == drivers
    assert document["clusters"][0]["examples"] == first.examples
    assert set(document) >= {"auc", "threshold", "mmd2", "p_value", "mean_distance", "mean_cosine_distance"}
