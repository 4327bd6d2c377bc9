"""The drift tests against scipy and statsmodels on the same data, and against worked examples."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance
from statsmodels.stats.proportion import proportions_ztest

from prodloop.errors import ValidationFailed
from prodloop.monitoring.stattests import (
    DriftTestResult,
    get_stattest,
    register_stattest,
    stattest_names,
    wasserstein_sorted,
)

RNG = np.random.default_rng(2026)
# 50 / 30 / 20 against 20 / 30 / 50: shares p = (.5, .3, .2) and q = (.2, .3, .5)
REFERENCE = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20, dtype=object)
CURRENT = np.array(["c"] * 50 + ["a"] * 20 + ["b"] * 30, dtype=object)
P, Q = (0.5, 0.3, 0.2), (0.2, 0.3, 0.5)


def run(
    name: str, reference: Any, current: Any, column_type: str, threshold: float | None = None
) -> DriftTestResult:
    return get_stattest(name)(reference, current, column_type, threshold)


def test_the_builtin_tests_are_registered_with_evidentlys_defaults() -> None:
    expected = {
        "ks": ("p_value", 0.05),
        "chisquare": ("p_value", 0.05),
        "z": ("p_value", 0.05),
        "wasserstein": ("distance", 0.1),
        "jensenshannon": ("distance", 0.1),
        "psi": ("distance", 0.1),
        "kl_div": ("distance", 0.1),
        "hellinger": ("distance", 0.1),
    }
    names = stattest_names()
    assert names == sorted(names)
    for name, (kind, threshold) in expected.items():
        test = get_stattest(name)
        assert (test.name, test.kind, test.default_threshold) == (name, kind, threshold)


def test_ks_is_scipys_two_sample_test_after_dropping_missing_values() -> None:
    reference = RNG.normal(0, 1, 400)
    current = RNG.normal(0.2, 1, 300)
    with_gaps = current.copy()
    with_gaps[::10] = np.nan
    with_gaps[5] = np.inf
    expected = stats.ks_2samp(reference, with_gaps[np.isfinite(with_gaps)])
    result = run("ks", reference, with_gaps, "numeric")
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.drift == (expected.pvalue <= 0.05)


def test_ks_counts_a_p_value_equal_to_the_threshold_as_drift_as_evidently_does() -> None:
    reference, current = np.arange(10.0), np.arange(3.0, 13.0)
    p_value = stats.ks_2samp(reference, current).pvalue
    assert run("ks", reference, current, "numeric", threshold=p_value).drift
    counts = run("chisquare", REFERENCE, CURRENT, "categorical")
    assert not run("chisquare", REFERENCE, CURRENT, "categorical", threshold=counts.p_value).drift


def test_chisquare_is_scipys_on_the_counts_with_the_reference_scaled_to_the_current_size() -> None:
    reference = np.array(["x"] * 120 + ["y"] * 60 + ["z"] * 20 + [None] * 7, dtype=object)
    current = np.array(["x"] * 50 + ["y"] * 30 + ["z"] * 20, dtype=object)
    expected = stats.chisquare([50, 30, 20], np.array([120, 60, 20]) * (100 / 200))
    result = run("chisquare", reference, current, "categorical")
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.drift


def test_chisquare_with_a_category_only_in_the_current_data_is_infinite_and_drifts() -> None:
    result = run(
        "chisquare", np.array(["a", "b"] * 50, dtype=object), np.array(["a", "b", "new"] * 30), "categorical"
    )
    assert math.isinf(result.statistic)
    assert result.p_value == 0.0
    assert result.drift
    assert result.to_dict()["statistic"] is None


def test_z_is_statsmodels_proportions_ztest_on_the_share_of_the_second_value() -> None:
    reference = np.array(["no"] * 70 + ["yes"] * 30, dtype=object)
    current = np.array(["no"] * 50 + ["yes"] * 50 + [None] * 4, dtype=object)
    z, p_value = proportions_ztest(np.array([30, 50]), np.array([100, 100]))
    result = run("z", reference, current, "categorical")
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(p_value, rel=1e-12)
    assert result.drift


def test_z_of_one_same_value_on_both_sides_is_no_drift() -> None:
    result = run("z", np.array([1.0] * 20), np.array([1.0] * 30), "numeric")
    assert (result.p_value, result.drift) == (1.0, False)


@pytest.mark.parametrize("sizes", [(500, 500), (1000, 37), (3, 1), (2000, 1500)])
def test_wasserstein_is_scipys_distance_over_the_reference_population_std(sizes: tuple[int, int]) -> None:
    reference = RNG.normal(5, 2, sizes[0])
    current = RNG.normal(5.5, 2, sizes[1])
    expected = stats.wasserstein_distance(reference, current) / np.std(reference)
    result = run("wasserstein", reference, current, "numeric")
    assert result.statistic == pytest.approx(expected, rel=1e-12)
    assert result.p_value is None


def test_the_sorted_wasserstein_equals_scipy_with_ties() -> None:
    for _ in range(20):
        u = RNG.integers(0, 6, RNG.integers(1, 300)).astype(float)
        v = RNG.integers(0, 8, RNG.integers(1, 300)).astype(float)
        assert wasserstein_sorted(np.sort(u), np.sort(v)) == pytest.approx(
            stats.wasserstein_distance(u, v), rel=1e-12, abs=1e-15
        )


def test_wasserstein_of_a_constant_reference_divides_by_0_001() -> None:
    result = run("wasserstein", np.full(50, 3.0), np.full(50, 3.002), "numeric")
    assert result.statistic == pytest.approx(2.0)
    assert result.drift


def test_jensenshannon_worked_example() -> None:
    m = [(p + q) / 2 for p, q in zip(P, Q, strict=True)]
    divergence = 0.5 * sum(p * math.log(p / mi) for p, mi in zip(P, m, strict=True)) + 0.5 * sum(
        q * math.log(q / mi) for q, mi in zip(Q, m, strict=True)
    )
    result = run("jensenshannon", REFERENCE, CURRENT, "categorical")
    assert result.statistic == pytest.approx(math.sqrt(divergence), rel=1e-12)
    assert result.statistic == pytest.approx(0.2577097, abs=1e-7)


def test_psi_worked_example() -> None:
    # (0.5 - 0.2) ln(0.5 / 0.2) + 0 + (0.2 - 0.5) ln(0.2 / 0.5) = 0.6 ln 2.5
    result = run("psi", REFERENCE, CURRENT, "categorical")
    assert result.statistic == pytest.approx(0.6 * math.log(2.5), rel=1e-12)
    assert result.drift


def test_psi_fills_a_category_missing_on_one_side_with_0_0001() -> None:
    reference = np.array(["a"] * 60 + ["b"] * 40, dtype=object)  # no "c": share 0 becomes 0.0001
    current = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20, dtype=object)
    expected = (0.6 - 0.5) * math.log(0.6 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3)
    expected += (0.0001 - 0.2) * math.log(0.0001 / 0.2)
    assert run("psi", reference, current, "categorical").statistic == pytest.approx(expected, rel=1e-12)


def test_psi_of_a_numeric_column_uses_sturges_bins_over_both_samples() -> None:
    reference = RNG.normal(0, 1, 3000)
    current = RNG.normal(0.3, 1, 2000)
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    r = np.histogram(reference, edges)[0] / reference.size
    c = np.histogram(current, edges)[0] / current.size
    r[r == 0] = min(r[r > 0].min() / 1e6, 0.0001) if r[r > 0].min() <= 0.0001 else 0.0001
    c[c == 0] = min(c[c > 0].min() / 1e6, 0.0001) if c[c > 0].min() <= 0.0001 else 0.0001
    assert run("psi", reference, current, "numeric").statistic == pytest.approx(
        np.sum((r - c) * np.log(r / c)), rel=1e-12
    )
    assert run("kl_div", reference, current, "numeric").statistic == pytest.approx(
        stats.entropy(r, c), rel=1e-12
    )


def test_a_numeric_column_with_few_values_is_binned_one_bin_per_value() -> None:
    reference = RNG.integers(0, 15, 1000).astype(float)  # 15 values: no histogram below 21
    current = RNG.integers(0, 15, 800).astype(float)
    r = np.bincount(reference.astype(int), minlength=15) / 1000
    c = np.bincount(current.astype(int), minlength=15) / 800
    result = run("jensenshannon", reference, current, "numeric")
    assert result.statistic == pytest.approx(distance.jensenshannon(r, c), rel=1e-12)


def test_hellinger_worked_example() -> None:
    overlap = sum(math.sqrt(p * q) for p, q in zip(P, Q, strict=True))  # sqrt(.1) + .3 + sqrt(.1)
    result = run("hellinger", REFERENCE, CURRENT, "categorical")
    assert result.statistic == pytest.approx(math.sqrt(1 - overlap), rel=1e-12)
    assert result.statistic == pytest.approx(0.2598932, abs=1e-7)


def test_hellinger_of_a_numeric_column_compares_histogram_densities() -> None:
    reference = RNG.normal(0, 1, 500)
    current = RNG.normal(0.5, 1, 400)
    edges = np.histogram_bin_edges(np.union1d(reference, current), bins="sturges")
    h1 = np.histogram(reference, edges, density=True)[0]
    h2 = np.histogram(current, edges, density=True)[0]
    expected = math.sqrt(1 - np.sum(np.sqrt(h1 * h2)) * (edges[-1] - edges[0]) / (len(edges) - 1))
    assert run("hellinger", reference, current, "numeric").statistic == pytest.approx(expected, rel=1e-9)


def test_identical_samples_do_not_drift_on_any_test() -> None:
    numbers = RNG.normal(0, 1, 300)
    for name in ("ks", "wasserstein", "psi", "jensenshannon", "kl_div", "hellinger"):
        assert not run(name, numbers, numbers.copy(), "numeric").drift, name
    for name in ("chisquare", "z", "psi", "jensenshannon", "kl_div", "hellinger"):
        assert not run(name, REFERENCE, REFERENCE.copy(), "categorical").drift, name


def test_pyarrow_arrays_give_the_same_results_as_numpy_arrays() -> None:
    reference = np.array(["a", None, "b", "c", "a"] * 40, dtype=object)
    current = np.array(["b", "c", "c", None, "d"] * 30, dtype=object)
    for name in ("chisquare", "jensenshannon", "psi", "hellinger"):
        numpy_result = run(name, reference, current, "categorical")
        arrow_result = run(
            name, pa.array(reference.tolist()), pa.chunked_array([current.tolist()]), "categorical"
        )
        assert arrow_result.statistic == pytest.approx(numpy_result.statistic, rel=1e-12), name
    numbers = RNG.normal(0, 1, 200)
    assert run("ks", pa.array(numbers), numbers[::-1], "numeric").p_value == pytest.approx(
        run("ks", numbers, numbers[::-1].copy(), "numeric").p_value
    )


def test_the_callers_array_is_not_modified() -> None:
    values = np.array([3.0, 1.0, np.nan, 2.0])
    before = values.copy()
    run("wasserstein", values, np.array([1.0, 2.0]), "numeric")
    np.testing.assert_array_equal(values, before)


def test_results_are_json_safe() -> None:
    result = run("ks", RNG.normal(0, 1, 50), RNG.normal(0, 1, 50), "numeric")
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(data) == {"test", "statistic", "p_value", "threshold", "drift"}
    assert isinstance(data["drift"], bool)


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        (np.array([], dtype=float), np.array([1.0]), "the reference data has no values"),
        (np.array([np.nan, np.nan]), np.array([1.0]), "the reference data has no values"),
        (np.array([1.0]), np.array([np.nan, np.inf]), "the current data has no values"),
    ],
)
def test_an_empty_or_all_missing_sample_is_refused(reference: Any, current: Any, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        run("ks", reference, current, "numeric")


def test_an_all_missing_categorical_sample_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="current data has no values"):
        run("chisquare", REFERENCE, np.array([None, float("nan")], dtype=object), "categorical")


def test_an_unknown_test_name_lists_the_known_ones() -> None:
    with pytest.raises(ValidationFailed, match=r"unknown drift test 'kolmogorov'; use one of: ") as caught:
        get_stattest("kolmogorov")
    assert "wasserstein" in caught.value.detail["known"]
    assert "chisquare, hellinger, jensenshannon" in caught.value.message


@pytest.mark.parametrize(
    ("name", "column_type"),
    [("ks", "categorical"), ("wasserstein", "categorical"), ("psi", "text"), ("chisquare", "text")],
)
def test_a_test_on_a_column_type_it_does_not_take_is_refused(name: str, column_type: str) -> None:
    with pytest.raises(ValidationFailed, match=f"'{name}' does not apply to a {column_type} column"):
        run(name, REFERENCE, CURRENT, column_type)


def test_numeric_tests_refuse_values_that_are_not_numbers() -> None:
    with pytest.raises(ValidationFailed, match="not numbers"):
        run("ks", REFERENCE, CURRENT, "numeric")


def test_categories_that_cannot_be_counted_are_refused() -> None:
    lists = np.empty(4, dtype=object)
    lists[:] = [[1], [2], [1], [3]]
    with pytest.raises(ValidationFailed, match="cannot be counted"):
        run("psi", lists, CURRENT, "categorical")


def test_an_unknown_column_type_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="column type 'nominal'"):
        run("psi", REFERENCE, CURRENT, "nominal")


class MeanShift:
    """A user's own test: the absolute difference of the means."""

    name = "mean_shift_test_only"
    kind = "distance"
    default_threshold = 1.0
    column_types = frozenset({"numeric"})

    def __call__(self, reference: Any, current: Any, column_type: str, threshold: float | None = None) -> Any:
        used = self.default_threshold if threshold is None else threshold
        statistic = abs(float(np.mean(current)) - float(np.mean(reference)))
        return DriftTestResult(self.name, statistic, None, used, statistic >= used)


def test_a_registered_test_is_found_by_name() -> None:
    register_stattest(MeanShift())
    assert "mean_shift_test_only" in stattest_names()
    assert get_stattest("mean_shift_test_only")(np.zeros(3), np.full(3, 2.0), "numeric").drift


def test_registering_something_that_is_not_a_test_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="needs name, kind"):
        register_stattest(object())  # type: ignore[arg-type]
