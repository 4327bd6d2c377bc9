"""Label aggregation: majority vote on hand cases, Dawid-Skene against crowd-kit and simulated truth."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene

from prodloop.annotation.aggregation import dawid_skene, majority_vote
from prodloop.annotation.agreement import reliability_matrix
from prodloop.errors import ValidationFailed

# crowd-kit calls a pandas API that pandas deprecates; only that third-party warning is let through.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

nan = np.nan


# --------------------------------------------------------------------------------------------------
# Simulated crowd


def _simulate(
    seed: int, n_categories: int, n_items: int = 300, missing: float = 0.25
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ratings, truth, confusion)``: three honest annotators of accuracy 0.9, 0.8, 0.7 (errors spread
    evenly), one who answers at random, and one adversarial annotator who mostly answers the next class;
    each rating is missing with probability ``missing`` (but no item loses all)."""
    rng = np.random.default_rng(seed)
    k = n_categories
    truth = rng.choice(k, size=n_items, p=np.r_[0.4, np.full(k - 1, 0.6 / (k - 1))])
    confusion = np.empty((5, k, k))
    for annotator, accuracy in enumerate((0.9, 0.8, 0.7)):
        confusion[annotator] = np.full((k, k), (1 - accuracy) / (k - 1))
        np.fill_diagonal(confusion[annotator], accuracy)
    confusion[3] = np.full((k, k), 1 / k)
    confusion[4] = 0.7 * np.roll(np.eye(k), 1, axis=1) + 0.3 / k
    ratings = np.empty((5, n_items))
    for annotator in range(5):
        cumulative = confusion[annotator, truth].cumsum(axis=1)
        ratings[annotator] = (rng.random((n_items, 1)) > cumulative).sum(axis=1)
    dropped = rng.random(ratings.shape) < missing
    dropped[0, dropped.all(axis=0)] = False  # every item keeps at least one rating, as crowd-kit needs
    ratings[dropped] = nan
    return ratings, truth, confusion


def _frame(ratings: np.ndarray) -> pd.DataFrame:
    annotator, item = np.nonzero(~np.isnan(ratings))
    return pd.DataFrame({"task": item, "worker": annotator, "label": ratings[annotator, item].astype(int)})


def _crowdkit(ratings: np.ndarray, n_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """crowd-kit's ``(posteriors, confusion[worker, true, observed], priors)`` after exactly ``n_iter``
    EM iterations (``tol=-inf`` turns its stopping rule off), in our item and category order."""
    model = DawidSkene(n_iter=n_iter, tol=-np.inf).fit(_frame(ratings))
    assert len(model.loss_history_) == n_iter
    assert model.probas_ is not None and model.errors_ is not None and model.priors_ is not None
    posteriors = model.probas_.sort_index().sort_index(axis=1)
    assert posteriors.index.tolist() == list(range(ratings.shape[1])), "every simulated item is rated"
    k = posteriors.shape[1]
    errors = model.errors_.sort_index().sort_index(axis=1).to_numpy()  # rows (worker, observed), columns true
    confusion = errors.reshape(ratings.shape[0], k, k).transpose(0, 2, 1)
    return posteriors.to_numpy(), confusion, model.priors_.sort_index().to_numpy()


# --------------------------------------------------------------------------------------------------
# Majority vote


def test_majority_vote_counts_votes_and_skips_missing() -> None:
    ratings = [
        [0, 1, 2, nan],
        [0, 1, nan, 1],
        [1, 2, nan, 1],
    ]
    result = majority_vote(ratings)
    assert result.labels.tolist() == [0, 1, 2, 1]
    assert result.shares == pytest.approx([2 / 3, 2 / 3, 1.0, 1.0])
    assert result.tied.tolist() == [False, False, False, False]
    assert result.n_votes.tolist() == [3, 3, 1, 2]


def test_majority_vote_breaks_ties_to_the_lowest_code_and_flags_them() -> None:
    ratings = np.array([[2, 0, 1], [1, 2, 1], [nan, 0, 2], [nan, 2, 2]])
    result = majority_vote(ratings)
    assert result.labels.tolist() == [1, 0, 1]
    assert result.tied.tolist() == [True, True, True]
    assert result.shares == pytest.approx([0.5, 0.5, 0.5])


def test_majority_vote_marks_an_unrated_item_instead_of_guessing() -> None:
    result = majority_vote([[1, nan], [1, nan]])
    assert result.labels.tolist() == [1, -1]
    assert result.n_votes.tolist() == [2, 0]
    assert result.shares.tolist() == [1.0, 0.0]
    assert result.tied.tolist() == [False, False]


def test_majority_vote_of_coded_labels_from_records() -> None:
    records = [("q1", "ann", "spam"), ("q1", "bob", "ham"), ("q1", "cy", "spam"), ("q2", "ann", "ham")]
    matrix, items, _, categories = reliability_matrix(records, categories=["ham", "spam"])
    assert categories is not None
    result = majority_vote(matrix, n_categories=len(categories))
    assert {item: categories[label] for item, label in zip(items, result.labels, strict=True)} == {
        "q1": "spam",
        "q2": "ham",
    }


def test_majority_vote_to_dict_is_json_ready() -> None:
    assert majority_vote([[0, 1], [0, 0]]).to_dict() == {
        "labels": [0, 0],
        "shares": [1.0, 0.5],
        "tied": [False, True],
        "n_votes": [2, 2],
    }


@pytest.mark.parametrize("aggregate", [majority_vote, dawid_skene])
@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        ([[nan, nan], [nan, nan]], "hold no rating"),
        (np.empty((0, 0)), "hold no rating"),
        ([[0.5, 1]], "not a category code"),
        ([[-1, 1]], "not a category code"),
        ([0, 1, 1], "shape (annotators, items)"),
        ([["a", "b"]], "use reliability_matrix()"),
    ],
)
def test_aggregation_rejects_ratings_it_cannot_use(
    aggregate: Callable[..., object], ratings: object, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(message)):
        aggregate(ratings)


@pytest.mark.parametrize("aggregate", [majority_vote, dawid_skene])
def test_aggregation_rejects_codes_beyond_n_categories(aggregate: Callable[..., object]) -> None:
    with pytest.raises(
        ValidationFailed, match=r"code 3 is out of range for n_categories=3 \(codes must be 0..2\)"
    ):
        aggregate([[0, 3], [1, 2]], n_categories=3)


# --------------------------------------------------------------------------------------------------
# Dawid-Skene against crowd-kit


@pytest.mark.parametrize(("seed", "n_categories"), [(0, 3), (1, 3), (2, 4), (3, 4)])
@pytest.mark.parametrize("n_iter", [1, 40])
def test_dawid_skene_matches_crowdkit_iteration_for_iteration(
    seed: int, n_categories: int, n_iter: int
) -> None:
    ratings, _, _ = _simulate(seed, n_categories)
    posteriors, confusion, priors = _crowdkit(ratings, n_iter)

    result = dawid_skene(ratings, max_iter=n_iter, tol=-np.inf)

    assert result.n_iter == n_iter and not result.converged
    # crowd-kit floors its returned posteriors at 1e-10 without renormalising; the rest is rounding.
    np.testing.assert_allclose(result.posteriors, posteriors, atol=2e-10)
    np.testing.assert_allclose(result.confusion, confusion, atol=1e-12)
    np.testing.assert_allclose(result.priors, priors, atol=1e-12)
    top_two = np.sort(posteriors, axis=1)[:, -2:]
    confident = top_two[:, 1] - top_two[:, 0] > 1e-6  # the argmax does not hinge on rounding
    assert confident.mean() >= 0.99
    np.testing.assert_array_equal(result.labels[confident], posteriors.argmax(axis=1)[confident])


@pytest.mark.parametrize("seed", [4, 5])
def test_dawid_skene_with_default_stopping_agrees_with_crowdkit_defaults(seed: int) -> None:
    # The two stop on different criteria (ours: log-likelihood; crowd-kit: its lower bound), so
    # they stop at different iterations; the labels still agree on nearly every item.
    ratings, _, _ = _simulate(seed, 3)
    labels = DawidSkene().fit(_frame(ratings)).labels_
    assert labels is not None
    reference = labels.sort_index().to_numpy()

    result = dawid_skene(ratings)

    assert result.converged and result.n_iter < 100
    assert (result.labels == reference).mean() >= 0.98


# --------------------------------------------------------------------------------------------------
# Dawid-Skene against the simulated truth


@pytest.mark.parametrize(("seed", "n_categories"), [(10, 3), (11, 3), (12, 4)])
def test_dawid_skene_beats_majority_vote_when_annotators_are_bad(seed: int, n_categories: int) -> None:
    ratings, truth, _ = _simulate(seed, n_categories)

    ds_accuracy = (dawid_skene(ratings).labels == truth).mean()
    mv_accuracy = (majority_vote(ratings).labels == truth).mean()

    assert ds_accuracy > mv_accuracy + 0.02
    assert ds_accuracy > 0.85


@pytest.mark.parametrize(("seed", "n_categories"), [(20, 3), (21, 4)])
def test_dawid_skene_recovers_each_annotators_accuracy(seed: int, n_categories: int) -> None:
    ratings, truth, confusion = _simulate(seed, n_categories, n_items=2000)
    true_accuracy = (confusion.diagonal(axis1=1, axis2=2) * np.bincount(truth) / truth.size).sum(axis=1)

    result = dawid_skene(ratings)
    estimated_accuracy = (result.confusion.diagonal(axis1=1, axis2=2) * result.priors).sum(axis=1)

    np.testing.assert_allclose(estimated_accuracy, true_accuracy, atol=0.05)
    # The adversarial annotator's "next class" habit shows up in its confusion matrix.
    shifted = result.confusion[4, np.arange(n_categories), (np.arange(n_categories) + 1) % n_categories]
    assert (shifted > 0.6).all()
    np.testing.assert_allclose(result.priors, np.bincount(truth) / truth.size, atol=0.05)


# --------------------------------------------------------------------------------------------------
# Dawid-Skene: shapes, edge cases and stopping


def test_dawid_skene_result_shapes_and_normalisation() -> None:
    ratings, _, _ = _simulate(30, 3, n_items=50)
    result = dawid_skene(ratings)
    assert result.posteriors.shape == (50, 3)
    assert result.confusion.shape == (5, 3, 3)
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0)
    np.testing.assert_allclose(result.confusion.sum(axis=2), 1.0)
    assert result.priors.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(result.labels, result.posteriors.argmax(axis=1))
    shape = result.to_dict()
    assert set(shape) == {
        "posteriors",
        "labels",
        "confusion",
        "priors",
        "n_iter",
        "converged",
        "log_likelihood",
        "n_votes",
    }
    assert len(shape["confusion"][0][0]) == 3


def test_dawid_skene_gives_an_unrated_item_the_prior() -> None:
    ratings = np.array([[0, 0, 1, nan], [0, 1, 1, nan], [0, 0, 1, nan]], dtype=float)
    result = dawid_skene(ratings)
    assert result.n_votes.tolist() == [3, 3, 3, 0]
    np.testing.assert_allclose(result.posteriors[3], result.priors)
    np.testing.assert_allclose(result.priors, result.posteriors[:3].mean(axis=0))


def test_dawid_skene_gives_an_unused_category_almost_no_mass() -> None:
    ratings = np.array([[0, 1, 1, 0], [0, 1, 0, 0]], dtype=float)
    result = dawid_skene(ratings, n_categories=3)
    assert result.posteriors.shape == (4, 3)
    assert result.posteriors[:, 2].max() < 1e-9
    assert result.priors[2] < 1e-9


def test_dawid_skene_stops_when_the_likelihood_settles() -> None:
    ratings, _, _ = _simulate(40, 3)
    loose = dawid_skene(ratings, tol=1e-3)
    tight = dawid_skene(ratings, tol=1e-9, max_iter=1000)
    capped = dawid_skene(ratings, tol=1e-9, max_iter=3)
    assert loose.converged and tight.converged
    assert loose.n_iter < tight.n_iter
    assert tight.log_likelihood >= loose.log_likelihood
    assert capped.n_iter == 3 and not capped.converged


def test_dawid_skene_rejects_a_useless_iteration_limit() -> None:
    with pytest.raises(ValidationFailed, match="max_iter must be at least 1"):
        dawid_skene([[0, 1]], max_iter=0)
