"""Agreement statistics, checked against the reference packages and Krippendorff's worked example."""

from __future__ import annotations

import functools
import json

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from prodloop.annotation import (
    agreement_report,
    bootstrap_ci,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_from_ratings,
    fleiss_table,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    per_class_agreement,
    percent_agreement,
    reliability_matrix,
)
from prodloop.annotation.agreement import LEVELS
from prodloop.errors import ValidationFailed

nan = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders x 12 units, with gaps.
WORKED_EXAMPLE = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
)
PUBLISHED = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}


def noisy_ratings(
    seed: int, n_annotators: int = 5, n_items: int = 60, n_values: int = 5, missing: float = 0.25
) -> np.ndarray:
    """Annotators who mostly agree with a latent truth, with some ratings missing."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, n_values + 1, size=n_items)
    ratings = np.where(
        rng.random((n_annotators, n_items)) < 0.7,
        truth,
        rng.integers(1, n_values + 1, size=(n_annotators, n_items)),
    ).astype(float)
    ratings[rng.random(ratings.shape) < missing] = nan
    return ratings


# --------------------------------------------------------------------------------------------------
# Krippendorff's alpha


@pytest.mark.parametrize("level", LEVELS)
def test_alpha_matches_krippendorffs_published_worked_example(level: str) -> None:
    alpha = krippendorff_alpha(WORKED_EXAMPLE, level)
    assert alpha == pytest.approx(PUBLISHED[level], abs=5e-4)
    reference = krippendorff.alpha(reliability_data=WORKED_EXAMPLE, level_of_measurement=level)
    assert alpha == pytest.approx(reference, abs=1e-12)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("seed", range(6))
def test_alpha_matches_krippendorff_package_on_random_data_with_missing_values(level: str, seed: int) -> None:
    ratings = noisy_ratings(seed, n_annotators=3 + seed % 4, n_items=20 + 15 * seed, missing=0.3)
    # A few items with a single rating: not pairable, must be ignored by both.
    ratings[1:, :3] = nan
    reference = krippendorff.alpha(reliability_data=ratings, level_of_measurement=level)
    assert krippendorff_alpha(ratings, level) == pytest.approx(reference, abs=1e-10)


@pytest.mark.parametrize("level", LEVELS)
def test_alpha_matches_krippendorff_package_on_uneven_real_valued_data(level: str) -> None:
    rng = np.random.default_rng(42)
    ratings = np.round(rng.gamma(2.0, 2.0, size=(4, 40)) + rng.normal(0, 0.3, size=40), 1)
    ratings = np.abs(ratings)
    ratings[rng.random(ratings.shape) < 0.2] = nan
    reference = krippendorff.alpha(reliability_data=ratings, level_of_measurement=level)
    assert krippendorff_alpha(ratings, level) == pytest.approx(reference, abs=1e-10)


def test_alpha_is_one_for_perfect_agreement_and_ignores_unpaired_items() -> None:
    ratings = np.array([[1, 2, 3, 1, nan], [1, 2, 3, 1, 2]])
    assert krippendorff_alpha(ratings) == pytest.approx(1.0)


def test_alpha_for_one_value_only_is_a_clear_error_not_one() -> None:
    ratings, _, _, categories = reliability_matrix(
        [(item, annotator, "billing") for item in ("t1", "t2") for annotator in ("ann", "bob")]
    )
    with pytest.raises(ValidationFailed) as raised:
        krippendorff_alpha(ratings, categories=categories)
    assert raised.value.message == (
        "agreement is undefined: every rating is 'billing'; alpha would divide by zero"
    )
    # Other values given only on unpairable items do not rescue it.
    ratings = np.array([[2.0, 2.0, 1.0], [2.0, 2.0, nan]])
    with pytest.raises(ValidationFailed, match="every rating is '2'"):
        krippendorff_alpha(ratings, "interval")


@pytest.mark.parametrize(
    "ratings",
    [np.array([[1.0, nan], [nan, 2.0]]), np.full((3, 4), nan), np.empty((2, 0)), np.array([[1.0, 2.0]])],
)
def test_alpha_without_pairable_values_is_a_clear_error(ratings: np.ndarray) -> None:
    with pytest.raises(ValidationFailed, match="fewer than two pairable ratings"):
        krippendorff_alpha(ratings)


def test_alpha_rejects_unknown_level_bad_shape_and_negative_ratio_values() -> None:
    with pytest.raises(ValidationFailed, match="unknown level of measurement 'cardinal'"):
        krippendorff_alpha(WORKED_EXAMPLE, "cardinal")
    with pytest.raises(ValidationFailed, match="matrix of shape"):
        krippendorff_alpha([1, 2, 3])
    with pytest.raises(ValidationFailed, match="non-negative"):
        krippendorff_alpha(np.array([[-1.0, 2.0], [-1.0, 3.0]]), "ratio")
    with pytest.raises(ValidationFailed, match="infinite"):
        krippendorff_alpha(np.array([[np.inf, 2.0], [1.0, 3.0]]))


# --------------------------------------------------------------------------------------------------
# Building the matrix


def test_reliability_matrix_codes_categories_in_the_given_order() -> None:
    labels = [
        ("t1", "ann", "high"),
        ("t1", "bob", "low"),
        ("t2", "bob", "medium"),
        ("t3", "ann", None),
        ("t3", "cy", "high"),
    ]
    matrix, items, annotators, categories = reliability_matrix(labels, ["low", "medium", "high"])
    assert items == ["t1", "t2", "t3"]
    assert annotators == ["ann", "bob", "cy"]
    assert categories == ("low", "medium", "high")
    np.testing.assert_array_equal(matrix, np.array([[2, nan, nan], [0, 1, nan], [nan, nan, 2]], dtype=float))


def test_reliability_matrix_keeps_numbers_and_sorts_unordered_labels() -> None:
    matrix, _, _, categories = reliability_matrix([("a", "x", 4.5), ("a", "y", 2)])
    assert categories is None
    np.testing.assert_array_equal(matrix, [[4.5], [2.0]])
    matrix, _, _, categories = reliability_matrix([("a", "x", "refund"), ("a", "y", "billing")])
    assert categories == ("billing", "refund")
    np.testing.assert_array_equal(matrix, [[1.0], [0.0]])


def test_reliability_matrix_rejects_unknown_labels_and_double_ratings() -> None:
    message = r"label 'maybe' is not one of the categories \(allowed: a, b\)"
    with pytest.raises(ValidationFailed, match=message):
        reliability_matrix([("t", "x", "maybe")], ["a", "b"])
    with pytest.raises(ValidationFailed, match="rated item 't' more than once"):
        reliability_matrix([("t", "x", "a"), ("t", "x", "b")])


# --------------------------------------------------------------------------------------------------
# Cohen's kappa


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_scikit_learn(weights: str | None, seed: int) -> None:
    ratings = noisy_ratings(seed, n_annotators=2, n_items=80, missing=0.0)
    expected = cohen_kappa_score(ratings[0], ratings[1], weights=weights)
    assert cohen_kappa(ratings[0], ratings[1], weights) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_uses_only_the_items_both_rated(weights: str | None) -> None:
    ratings = noisy_ratings(7, n_annotators=2, n_items=100, missing=0.2)
    both = ~np.isnan(ratings).any(axis=0)
    expected = cohen_kappa_score(ratings[0, both], ratings[1, both], weights=weights)
    assert cohen_kappa(ratings[0], ratings[1], weights) == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_degenerate_cases_raise() -> None:
    with pytest.raises(ValidationFailed, match="every rating is '3'; kappa would divide by zero"):
        cohen_kappa([3, 3, 3], [3, 3, nan])
    with pytest.raises(ValidationFailed, match="no item in common"):
        cohen_kappa([1, nan], [nan, 2])
    with pytest.raises(ValidationFailed, match="unknown weights"):
        cohen_kappa([1, 2], [1, 2], "cubic")  # type: ignore[arg-type]
    # Two annotators who never agree but each always say the same thing: kappa 0, not an error.
    assert cohen_kappa([1, 1, 1], [2, 2, 2]) == pytest.approx(0.0)


def test_pairwise_cohen_kappa_covers_every_pair_and_marks_undefined_ones() -> None:
    ratings = noisy_ratings(3, n_annotators=3, n_items=50, missing=0.0)
    ratings = np.vstack([ratings, np.full(50, nan)])
    pairs = pairwise_cohen_kappa(ratings, "quadratic")
    assert set(pairs) == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}
    assert pairs[(0, 2)] == pytest.approx(cohen_kappa_score(ratings[0], ratings[2], weights="quadratic"))
    assert pairs[(1, 3)] is None


# --------------------------------------------------------------------------------------------------
# Fleiss' kappa and percent agreement


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels(seed: int) -> None:
    ratings = noisy_ratings(seed, n_annotators=4, n_items=70, missing=0.0)
    counts, _ = fleiss_table(ratings)
    table, _ = aggregate_raters(ratings.T.astype(int))
    expected = statsmodels_fleiss_kappa(table, method="fleiss")
    assert fleiss_kappa(counts) == pytest.approx(expected, abs=1e-12)
    assert fleiss_kappa_from_ratings(ratings) == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_skips_unrated_items_and_rejects_uneven_raters() -> None:
    ratings = noisy_ratings(11, n_annotators=3, n_items=30, missing=0.0)
    with_gap = np.hstack([ratings, np.full((3, 1), nan)])
    assert fleiss_kappa_from_ratings(with_gap) == pytest.approx(fleiss_kappa_from_ratings(ratings))
    with_gap[0, 0] = nan
    with pytest.raises(ValidationFailed, match="same number of raters"):
        fleiss_kappa_from_ratings(with_gap)


def test_fleiss_kappa_degenerate_cases_raise() -> None:
    with pytest.raises(ValidationFailed, match="every rating is 'refund'"):
        fleiss_kappa_from_ratings(np.ones((3, 4)), categories=["billing", "refund"])
    with pytest.raises(ValidationFailed, match="every rating is in category column 1"):
        fleiss_kappa(np.array([[0, 3], [0, 3]]))
    with pytest.raises(ValidationFailed, match="at least two raters"):
        fleiss_kappa(np.array([[1, 0], [0, 1]]))


def test_percent_agreement_counts_agreeing_pairs() -> None:
    # Item 1: 3 raters all agree (6 agreeing ordered pairs of 6); item 2: 1, 1, 2 (2 of 6);
    # item 3: 1 vs 2 (0 of 2); item 4 has one rating and does not count.
    ratings = np.array([[1, 1, 1, 5], [1, 1, 2, nan], [1, 2, nan, nan]], dtype=float)
    assert percent_agreement(ratings) == pytest.approx(8 / 14)
    assert percent_agreement(np.array([[2.0, 2.0], [2.0, 2.0]])) == 1.0
    with pytest.raises(ValidationFailed, match="fewer than two pairable ratings"):
        percent_agreement(np.array([[1.0, nan], [nan, 1.0]]))


# --------------------------------------------------------------------------------------------------
# Per class


def test_per_class_alpha_equals_binary_alpha_of_class_versus_rest() -> None:
    ratings = noisy_ratings(5, n_annotators=4, n_items=80, missing=0.2)
    per_class = per_class_agreement(ratings)
    assert set(per_class) == {1, 2, 3, 4, 5}
    for value, alpha in per_class.items():
        binary = np.where(np.isnan(ratings), nan, (ratings == value).astype(float))
        expected = krippendorff.alpha(reliability_data=binary, level_of_measurement="nominal")
        assert alpha == pytest.approx(expected, abs=1e-10)


def test_per_class_alpha_shows_the_ambiguous_class() -> None:
    # "billing" and "refund" are confused with each other; "bug" is always clear.
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=200)
    ratings = np.vstack([truth, truth, truth]).astype(float)
    confusable = np.nonzero(truth < 2)[0]
    flips = rng.random((3, confusable.size)) < 0.3
    ratings[:, confusable] = np.where(flips, 1 - ratings[:, confusable], ratings[:, confusable])
    per_class = per_class_agreement(ratings, ["billing", "refund", "bug", "other"])
    assert per_class["bug"] == pytest.approx(1.0)
    assert per_class["billing"] is not None and per_class["billing"] < 0.6
    assert per_class["refund"] is not None and per_class["refund"] < 0.6
    assert per_class["other"] is None  # never used


# --------------------------------------------------------------------------------------------------
# Bootstrap


@pytest.mark.parametrize("level", LEVELS)
def test_bootstrap_ci_contains_the_estimate_and_is_deterministic(level: str) -> None:
    ratings = noisy_ratings(1, n_annotators=4, n_items=120)
    statistic = functools.partial(krippendorff_alpha, level=level)
    low, high = bootstrap_ci(statistic, ratings, n_resamples=500, seed=7)
    assert low < krippendorff_alpha(ratings, level) < high
    assert bootstrap_ci(statistic, ratings, n_resamples=500, seed=7) == (low, high)
    assert bootstrap_ci(statistic, ratings, n_resamples=500, seed=8) != (low, high)


@pytest.mark.parametrize("level", LEVELS)
def test_vectorised_alpha_bootstrap_equals_resampling_one_by_one(level: str) -> None:
    ratings = noisy_ratings(2, n_annotators=3, n_items=40)
    fast = bootstrap_ci(functools.partial(krippendorff_alpha, level=level), ratings, n_resamples=300, seed=3)

    def one_by_one(matrix: np.ndarray) -> float:
        return krippendorff_alpha(matrix, level)

    slow = bootstrap_ci(one_by_one, ratings, n_resamples=300, seed=3)
    assert fast == pytest.approx(slow, abs=1e-10)


def test_bootstrap_ci_is_narrower_with_more_items() -> None:
    few = bootstrap_ci(krippendorff_alpha, noisy_ratings(4, n_items=40), n_resamples=400)
    many = bootstrap_ci(krippendorff_alpha, noisy_ratings(4, n_items=1000), n_resamples=400)
    assert many[1] - many[0] < (few[1] - few[0]) / 2


def test_bootstrap_ci_of_other_statistics_and_when_undefined() -> None:
    ratings = noisy_ratings(6, n_annotators=4, n_items=80, missing=0.0)
    low, high = bootstrap_ci(percent_agreement, ratings, n_resamples=200)
    assert low < percent_agreement(ratings) < high
    # One disagreeing item of 31: about a third of the resamples miss it and are left out.
    nearly_constant = np.array([[1.0] * 30 + [2.0], [1.0] * 30 + [1.0]])
    low, high = bootstrap_ci(krippendorff_alpha, nearly_constant, n_resamples=200)
    assert -1.0 <= low <= high < 1.0

    def never_defined(matrix: np.ndarray) -> float:
        raise ValidationFailed("agreement is undefined")

    with pytest.raises(ValidationFailed, match="undefined in 200 of 200 resamples"):
        bootstrap_ci(never_defined, ratings, n_resamples=200)
    with pytest.raises(ValidationFailed, match="confidence"):
        bootstrap_ci(krippendorff_alpha, ratings, confidence=1.5)


# --------------------------------------------------------------------------------------------------
# Report


def test_agreement_report_has_the_stable_json_shape() -> None:
    names = ["billing", "refund", "bug"]
    labels = [
        (f"t{item}", annotator, names[(item + (annotator == "cy" and item % 4 == 0)) % 3])
        for item in range(40)
        for annotator in ("ann", "bob", "cy")
    ]
    ratings, _, _, categories = reliability_matrix(labels, ["billing", "refund", "bug", "other"])
    report = agreement_report(ratings, "nominal", categories, n_resamples=200)
    assert list(report) == [
        "n_items",
        "krippendorff_alpha",
        "alpha_ci",
        "level",
        "fleiss_kappa",
        "percent_agreement",
        "per_class",
    ]
    assert report["n_items"] == 40
    assert report["level"] == "nominal"
    assert report["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=ratings, level_of_measurement="nominal")
    )
    low, high = report["alpha_ci"]
    assert low <= report["krippendorff_alpha"] <= high
    assert report["fleiss_kappa"] == pytest.approx(fleiss_kappa_from_ratings(ratings))
    assert set(report["per_class"]) == {"billing", "refund", "bug", "other"}
    assert report["per_class"]["other"] is None
    assert json.loads(json.dumps(report)) == report


def test_agreement_report_has_no_fleiss_kappa_when_raters_per_item_differ() -> None:
    report = agreement_report(WORKED_EXAMPLE, "interval", n_resamples=200)
    assert report["fleiss_kappa"] is None
    assert report["n_items"] == 11
    assert report["krippendorff_alpha"] == pytest.approx(PUBLISHED["interval"], abs=5e-4)
    assert set(report["per_class"]) == {"1", "2", "3", "4", "5"}


def test_annotation_package_exports_a_complete_sorted_all() -> None:
    import inspect

    import prodloop.annotation as package

    assert package.__all__ == sorted(package.__all__)
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", "prodloop").startswith("prodloop")
    }
    assert public <= set(package.__all__)
