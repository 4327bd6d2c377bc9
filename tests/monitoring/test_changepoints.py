"""Change detection on outcome metrics, against statsmodels, scipy and Montgomery's worked CUSUM."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from prodloop.monitoring.changepoints import (
    Counts,
    cusum,
    laney_sigma_z,
    mean_standard_errors,
    proportion_standard_errors,
    rank_segments,
    window_test,
)


def proportion(events: int, n: int) -> Counts:
    return Counts(n, float(events), float(events))


def sample(values: np.ndarray) -> Counts:
    return Counts(len(values), float(values.sum()), float((values**2).sum()))


@pytest.mark.parametrize(
    ("current", "reference", "worse"),
    [
        ((480, 1000), (5600, 8000), "lower"),  # a handled rate that fell from 70% to 48%
        ((330, 1200), (1800, 8000), "higher"),  # an escalation rate that rose from 22.5% to 27.5%
        ((705, 1000), (5600, 8000), "lower"),  # better, not worse: a one-sided test says no
        ((3, 40), (10, 300), "higher"),  # few events
    ],
)
def test_the_window_test_is_statsmodels_two_proportion_z_test_one_sided(current, reference, worse):
    result = window_test(
        proportion(*current), proportion(*reference),
        kind="proportion", worse=worse, alpha=0.01, min_effect=0.03, min_samples=30,
    )  # fmt: skip
    z, p = proportions_ztest(
        [current[0], reference[0]], [current[1], reference[1]],
        alternative="smaller" if worse == "lower" else "larger",
    )  # fmt: skip
    assert result.test == "two_proportion_z"
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-12)
    cur, ref = current[0] / current[1], reference[0] / reference[1]
    assert result.effect == pytest.approx(ref - cur if worse == "lower" else cur - ref)
    assert result.alert == (p < 0.01 and result.effect >= 0.03)


def test_a_significant_change_smaller_than_the_minimum_effect_does_not_alert():
    # At 200,000 outcomes a window, a 0.6-point dip is very significant and not worth a page.
    current, reference = proportion(138_800, 200_000), proportion(980_000, 1_400_000)
    result = window_test(
        current, reference, kind="proportion", worse="lower", alpha=0.01, min_effect=0.03, min_samples=100
    )
    assert result.p_value is not None and result.p_value < 1e-6
    assert result.effect == pytest.approx(0.006)
    assert not result.alert
    bigger = window_test(
        proportion(132_000, 200_000), reference,
        kind="proportion", worse="lower", alpha=0.01, min_effect=0.03, min_samples=100,
    )  # fmt: skip
    assert bigger.alert and bigger.effect == pytest.approx(0.04)


def test_too_few_observations_make_no_test_and_no_alert():
    result = window_test(
        proportion(2, 40), proportion(300, 400), kind="proportion", worse="lower",
        alpha=0.01, min_effect=0.03, min_samples=100,
    )  # fmt: skip
    assert result.skipped and "40" in result.skipped and "100" in result.skipped
    assert result.p_value is None and not result.alert
    assert result.current == pytest.approx(0.05) and result.effect == pytest.approx(0.70)


def test_when_every_outcome_is_the_same_nothing_changed():
    result = window_test(
        proportion(0, 500), proportion(0, 5000), kind="proportion", worse="higher",
        alpha=0.01, min_effect=0.0, min_samples=10,
    )  # fmt: skip
    assert result.p_value == 1.0 and not result.alert


def test_means_are_tested_with_welch_t_test_like_scipy_on_the_raw_values():
    rng = np.random.default_rng(3)
    reference = rng.integers(1, 6, 800).astype(float)  # CSAT scores
    current = np.clip(rng.integers(1, 6, 150) - rng.integers(0, 2, 150), 1, 5).astype(float)
    result = window_test(
        sample(current), sample(reference), kind="mean", worse="lower",
        alpha=0.01, min_effect=0.1, min_samples=30,
    )  # fmt: skip
    expected = stats.ttest_ind(current, reference, equal_var=False, alternative="less")
    assert result.test == "welch_t"
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.effect == pytest.approx(reference.mean() - current.mean())
    assert sample(current).sd == pytest.approx(current.std(ddof=1))


# Montgomery, Introduction to Statistical Quality Control (6th ed.), Example 9.1 / Tables 9.1 and 9.2:
# 30 observations, the first 20 from N(10, 1), the last 10 from N(11, 1); tabular CUSUM with
# mu0 = 10, sigma = 1, K = 0.5, H = 5. C+ signals at period 29 with N+ = 7: the shift began after 22.
MONTGOMERY_X = [
    9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34,
    9.03, 11.47, 10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84,
    10.90, 9.33, 12.29, 11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52,
]  # fmt: skip
MONTGOMERY_C_PLUS = [
    0, 0, 0, 1.16, 2.82, 2.50, 0.04, 1.00, 0, 0,
    0, 0.97, 0.98, 0, 0, 0, 0.12, 0, 0, 0.34,
    0.74, 0, 1.79, 2.79, 2.89, 3.47, 3.35, 4.47, 5.28, 5.30,
]  # fmt: skip


def test_cusum_reproduces_montgomerys_worked_example():
    ones = [1.0] * 30
    result = cusum(MONTGOMERY_X, ones, 10.0, worse="higher", k=0.5, h=5.0)
    assert result.s == pytest.approx(MONTGOMERY_C_PLUS, abs=0.006)
    assert result.alert and result.statistic == pytest.approx(5.30, abs=0.006)
    assert result.onset == 22  # periods 23 to 30: Montgomery's N+ counts back to period 23
    first_alarm = next(i for i, s in enumerate(result.s) if s > 5.0)
    assert first_alarm + 1 == 29
    assert not cusum(MONTGOMERY_X[:28], ones[:28], 10.0, worse="higher", k=0.5, h=5.0).alert


def test_cusum_on_a_falling_rate_worked_by_hand():
    # A handled rate of 70% over days of 100 outcomes, then 60% and 55%: sigma = sqrt(0.7 * 0.3 / 100).
    ns, events = [100, 100, 100, 100], [71, 70, 60, 55]
    se = math.sqrt(0.21 / 100)
    ses = proportion_standard_errors(ns, 0.70)
    assert ses == pytest.approx([se] * 4)
    result = cusum([e / n for e, n in zip(events, ns, strict=True)], ses, 0.70, worse="lower", k=0.5, h=4.0)
    s2 = 0.10 / se - 0.5
    s3 = s2 + 0.15 / se - 0.5
    assert result.s == pytest.approx([0.0, 0.0, s2, s3])
    assert s3 == pytest.approx(4.455, abs=0.001)
    assert result.alert and result.onset == 2


def test_the_cusum_allowance_ignores_shifts_below_half_the_minimum_effect_at_high_volume():
    # 20,000 outcomes a day: a 1-point dip is 4.9 standard errors a day, and still below the 1.5 points
    # (half of a 3-point minimum effect) that the allowance needs before anything adds up.
    ns = [20_000] * 10
    ses = proportion_standard_errors(ns, 0.70)
    small = cusum([0.69] * 10, ses, 0.70, worse="lower", min_effect=0.03)
    assert small.s == [0.0] * 10 and not small.alert and small.onset is None
    plain = cusum([0.69] * 10, ses, 0.70, worse="lower")
    assert plain.alert
    large = cusum([0.66] * 10, ses, 0.70, worse="lower", min_effect=0.03)
    assert large.alert and large.onset == 0


def test_empty_buckets_leave_the_cusum_where_it_was():
    result = cusum([0.5, None, 0.5], [0.1, None, 0.1], 0.7, worse="lower", k=0.5, h=5)
    assert result.s == pytest.approx([1.5, 1.5, 3.0])
    assert result.z[1] is None and result.onset == 0


def _run_lengths(shift: float, chunks: int, length: int, seed: int) -> list[int]:
    """Buckets until the first alarm of the standard CUSUM (k = 0.5, h = 5), one independent stream of
    N(shift, 1) values per chunk; a chunk with no alarm counts its length."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(chunks):
        values = rng.normal(shift, 1.0, length).tolist()
        path = cusum(values, [1.0] * length, 0.0, worse="higher", k=0.5, h=5.0).s
        out.append(next((i + 1 for i, s in enumerate(path) if s > 5.0), length))
    return out


def test_false_alarms_on_a_stable_series_are_as_rare_as_the_textbook_says():
    # One-sided ARL0 for k = 0.5, h = 5: Siegmund's approximation gives 938 buckets (Montgomery's
    # two-sided 465 is half of it); a shift of one sigma is found after 10.4 buckets (table 9.3).
    b = 5.0 + 1.166
    siegmund = (math.exp(2 * 0.5 * b) - 2 * 0.5 * b - 1) / (2 * 0.5**2)
    assert siegmund == pytest.approx(938, abs=1)
    in_control = np.mean(_run_lengths(0.0, chunks=150, length=4000, seed=11))
    assert 0.75 * siegmund < in_control < 1.25 * siegmund
    shifted = np.mean(_run_lengths(1.0, chunks=400, length=200, seed=12))
    assert shifted == pytest.approx(10.4, rel=0.1)


def test_laney_sigma_z_measures_day_to_day_variation_beyond_the_binomial():
    # By hand: z = 0, 1, -1; moving ranges 1 and 2; sigma_z = 1.5 / 1.128.
    assert laney_sigma_z([0.5, 0.6, 0.4], [0.1, 0.1, 0.1]) == pytest.approx(1.5 / 1.128)
    assert laney_sigma_z([0.5, 0.6], [0.1, 0.1]) == 1.0  # too few buckets to say
    rng = np.random.default_rng(5)
    days, n = 300, 600
    binomial = rng.binomial(n, 0.7, days) / n
    assert laney_sigma_z(list(binomial), proportion_standard_errors([n] * days, 0.7)) == pytest.approx(
        1.0, abs=0.08
    )
    # Daily rates that wander by 3 points around 70%: sigma_z = sqrt(1 + 0.03^2 / (0.21 / 600)) = 1.89.
    wandering = rng.binomial(n, np.clip(0.7 + rng.normal(0, 0.03, days), 0, 1)) / n
    sigma_z = laney_sigma_z(list(wandering), proportion_standard_errors([n] * days, 0.7))
    assert sigma_z == pytest.approx(math.sqrt(1 + 0.03**2 / (0.21 / n)), rel=0.1)
    # Without the correction a CUSUM on such a stable-but-wandering rate keeps alarming; with it, it is
    # as quiet as on binomial data.
    ses = proportion_standard_errors([n] * days, 0.7)
    corrected = proportion_standard_errors([n] * days, 0.7, sigma_z)
    alarms = sum(s > 5 for s in cusum(list(wandering), ses, 0.7, worse="lower").s)
    quiet = sum(s > 5 for s in cusum(list(wandering), corrected, 0.7, worse="lower").s)
    assert alarms > 10 and quiet <= 2


def test_standard_errors_of_means_shrink_with_the_square_root_of_n():
    assert mean_standard_errors([4, 0, 100], 2.0, 1.5) == [1.5, None, pytest.approx(0.3)]


def test_segments_are_ranked_by_excess_bad_outcomes_and_holm_adjusted():
    ref = proportion(700, 1000)
    segments = [
        ("tiny", proportion(5, 25), proportion(70, 100), False),  # 50 points lower, but 25 outcomes
        ("big", proportion(560, 1000), ref, False),  # 14 points lower on 1,000
        ("borderline", proportion(153, 250), ref, False),  # 8.8 points lower on 250
        ("steady", proportion(702, 1000), ref, False),
        ("fresh", proportion(40, 100), ref, True),  # new in the window: compared with the whole reference
    ]
    rows = rank_segments(
        segments, kind="proportion", worse="lower", alpha=0.005, min_effect=0.03, min_samples=20
    )
    assert [r["value"] for r in rows] == ["big", "fresh", "borderline", "tiny", "steady"]
    assert rows[0]["excess"] == pytest.approx(140.0) and rows[0]["degraded"]
    counts = [(560, 1000), (40, 100), (153, 250), (5, 25), (702, 1000)]
    references = [(700, 1000)] * 3 + [(70, 100), (700, 1000)]
    raw = [
        proportions_ztest([c, r], [n, m], alternative="smaller")[1]
        for (c, n), (r, m) in zip(counts, references, strict=True)
    ]
    order = np.argsort(raw)
    holm = np.maximum.accumulate([min(1.0, (len(raw) - k) * raw[i]) for k, i in enumerate(order)])
    expected = dict(zip(order, holm, strict=True))
    assert [r["p_adjusted"] for r in rows] == pytest.approx([expected[i] for i in range(5)])
    by_value = {r["value"]: r for r in rows}
    assert by_value["fresh"]["new"] and by_value["fresh"]["degraded"]
    assert not by_value["steady"]["degraded"] and by_value["steady"]["share_of_excess"] == 0.0
    assert sum(r["share_of_excess"] for r in rows) == pytest.approx(1.0)
    # 8.8 points on 250 outcomes is significant alone (p = 0.0038 < 0.005), not once five values were
    # looked at (Holm: 0.0075).
    borderline = by_value["borderline"]
    assert borderline["p_value"] == pytest.approx(0.003756, abs=1e-6)
    assert borderline["p_adjusted"] == pytest.approx(2 * borderline["p_value"]) and not borderline["degraded"]
