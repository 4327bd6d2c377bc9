"""Change detection for outcome metrics: a window against its reference, and CUSUM for slow slides.

Both work on counts that :mod:`prodloop.monitoring.outcome_queries` aggregates in SQL, so they never see a
single trace:

:func:`window_test`
    The current window against its reference. Proportions (a handled rate, a thumbs-down rate) get
    statsmodels' two-proportion z test, means (a CSAT score) scipy's Welch t test; both one-sided, in the
    direction that is worse. A change alerts only when it is significant (``p < alpha``) *and* at least
    ``min_effect`` in size: at ten thousand traces a day a 0.5-point wiggle is significant, and nobody
    should be paged for it.

:func:`cusum`
    A one-sided standardised CUSUM (Page 1954; the tabular form of Montgomery's *Introduction to
    Statistical Quality Control*, section 9.1) over buckets (days or hours):
    ``S_t = max(0, S_{t-1} + z_t - k_t)`` with ``z_t`` the bucket's distance from the reference value in
    standard errors, signed so that worse is positive, and an alarm when ``S_t > h``. It adds up small
    shifts that no single window shows. The allowance ``k_t`` is the larger of ``k`` standard errors and
    half of ``min_effect``, so that at high volume the CUSUM, too, ignores shifts smaller than the one
    worth detecting.

:func:`rank_segments`
    Where a change is: the same test per value of a trace attribute, Holm-adjusted, ranked by how many
    extra bad outcomes each value accounts for.

:func:`laney_sigma_z`
    Day-to-day variation beyond the binomial (Laney's p' chart, 2002): real daily rates vary more than
    coin flips do (traffic mix, weekdays), and at hundreds of outcomes a day that extra variation would
    make a binomial CUSUM fire on nothing. The factor is estimated from the reference buckets' moving
    range, which a level shift in the reference hardly moves, and never taken below 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

Worse = Literal["lower", "higher"]

#: d2 for moving ranges of two: the mean range of two standard normal draws (Laney's 1.128).
_D2 = 1.128


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Counts:
    """Observations aggregated over a window or a bucket: how many, their sum and sum of squares.

    For a proportion the observations are 0 or 1, so ``total`` is the number of events.
    """

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def sd(self) -> float | None:
        """Sample standard deviation (ddof 1)."""
        if self.n < 2:
            return None
        variance = (self.total_sq - self.total * self.total / self.n) / (self.n - 1)
        return math.sqrt(max(variance, 0.0))

    @staticmethod
    def sum(items: Sequence[Counts]) -> Counts:
        out = Counts()
        for item in items:
            out = out + item
        return out


def worse_by(current: float, reference: float, worse: Worse) -> float:
    """How much worse ``current`` is than ``reference``: positive when worse, negative when better."""
    return reference - current if worse == "lower" else current - reference


@dataclass(frozen=True)
class WindowTest:
    """The current window against its reference: the test, its numbers, and whether to alert."""

    test: str
    worse: Worse
    current: float | None
    reference: float | None
    n_current: int
    n_reference: int
    #: How much worse the current window is (positive = worse), in the metric's units.
    effect: float | None
    statistic: float | None
    p_value: float | None
    alpha: float
    min_effect: float
    alert: bool
    #: Why no test was made (too few observations, nothing varies), or None.
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "worse": self.worse,
            "current": _finite(self.current),
            "reference": _finite(self.reference),
            "n_current": self.n_current,
            "n_reference": self.n_reference,
            "effect": _finite(self.effect),
            "statistic": _finite(self.statistic),
            "p_value": _finite(self.p_value),
            "alpha": self.alpha,
            "min_effect": self.min_effect,
            "alert": self.alert,
            "skipped": self.skipped,
        }


def window_test(
    current: Counts,
    reference: Counts,
    *,
    kind: Literal["proportion", "mean"],
    worse: Worse,
    alpha: float,
    min_effect: float,
    min_samples: int,
) -> WindowTest:
    """Test whether ``current`` is worse than ``reference``: one-sided, significant at ``alpha``, and at
    least ``min_effect`` worse. Fewer than ``min_samples`` observations on either side: no test."""
    test = "two_proportion_z" if kind == "proportion" else "welch_t"
    cur, ref = current.mean, reference.mean
    effect = worse_by(cur, ref, worse) if cur is not None and ref is not None else None

    def result(statistic: float | None, p_value: float | None, skipped: str | None) -> WindowTest:
        alert = (
            skipped is None
            and p_value is not None
            and p_value < alpha
            and effect is not None
            and effect >= min_effect
        )
        return WindowTest(
            test, worse, cur, ref, current.n, reference.n, effect,
            statistic, p_value, alpha, min_effect, bool(alert), skipped,
        )  # fmt: skip

    if current.n < min_samples or reference.n < min_samples:
        return result(
            None,
            None,
            f"too few observations: {current.n} in the current window and {reference.n} in the reference "
            f"(at least {min_samples} each)",
        )
    if kind == "proportion":
        events = current.total + reference.total
        if events in (0, current.n + reference.n):
            return result(0.0, 1.0, None)  # every observation the same: nothing changed
        z, p = proportions_ztest(
            [round(current.total), round(reference.total)],
            [current.n, reference.n],
            alternative="smaller" if worse == "lower" else "larger",
        )
        return result(float(z), float(p), None)
    sd_cur, sd_ref = current.sd, reference.sd
    assert cur is not None and ref is not None and sd_cur is not None and sd_ref is not None
    if sd_cur == 0 and sd_ref == 0:
        return result(None, None if cur != ref else 1.0, "no variation in either window")
    t, p = stats.ttest_ind_from_stats(
        cur, sd_cur, current.n, ref, sd_ref, reference.n,
        equal_var=False, alternative="less" if worse == "lower" else "greater",
    )  # fmt: skip
    return result(float(t), float(p), None)


def rank_segments(
    segments: Sequence[tuple[str | None, Counts, Counts, bool]],
    *,
    kind: Literal["proportion", "mean"],
    worse: Worse,
    alpha: float,
    min_effect: float,
    min_samples: int,
) -> list[dict[str, Any]]:
    """Where a change is: each segment ``(value, current, reference, new)`` tested like the whole
    window, p-values Holm-adjusted across the segments (statsmodels' ``multipletests``), ranked by
    *excess*: how many more bad outcomes the segment had than its reference predicts (effect times its
    current count), so that a large segment with a moderate fall ranks above a tiny one with a big fall.
    A segment is ``degraded`` when its adjusted p-value is below ``alpha`` and its effect at least
    ``min_effect``."""
    tests = [
        window_test(
            current,
            reference,
            kind=kind,
            worse=worse,
            alpha=alpha,
            min_effect=min_effect,
            min_samples=min_samples,
        )
        for _, current, reference, _ in segments
    ]
    tested = [i for i, t in enumerate(tests) if t.p_value is not None]
    adjusted: dict[int, float] = {}
    if tested:
        holm = multipletests([tests[i].p_value for i in tested], method="holm")[1]
        adjusted = {i: float(p) for i, p in zip(tested, holm, strict=True)}
    excess = [t.effect * t.n_current if t.effect is not None else None for t in tests]
    positive = sum(e for e in excess if e is not None and e > 0)
    rows = []
    for i, ((value, _, _, new), t) in enumerate(zip(segments, tests, strict=True)):
        e, p_adjusted = excess[i], adjusted.get(i)
        rows.append(
            {
                "value": value,
                "new": new,
                "n_current": t.n_current,
                "current": _finite(t.current),
                "n_reference": t.n_reference,
                "reference": _finite(t.reference),
                "effect": _finite(t.effect),
                "excess": _finite(e),
                "share_of_excess": e / positive if positive and e is not None and e > 0 else 0.0,
                "statistic": _finite(t.statistic),
                "p_value": _finite(t.p_value),
                "p_adjusted": p_adjusted,
                "degraded": p_adjusted is not None and p_adjusted < alpha and (t.effect or 0.0) >= min_effect,
            }
        )
    return sorted(rows, key=lambda row: -row["excess"] if row["excess"] is not None else math.inf)


@dataclass(frozen=True)
class CusumResult:
    """A one-sided CUSUM over buckets: the path, the final statistic, and the estimated onset."""

    target: float
    k: float
    h: float
    min_effect: float
    worse: Worse
    #: Per bucket: the observed value (None for an empty bucket), its standardised distance ``z``
    #: (worse positive), the allowance used, and ``S`` after the bucket.
    values: list[float | None] = field(default_factory=list)
    z: list[float | None] = field(default_factory=list)
    allowance: list[float | None] = field(default_factory=list)
    s: list[float] = field(default_factory=list)
    #: Whether ``S`` at the last bucket is above ``h``.
    alert: bool = False
    #: Index of the first bucket of the run that drove ``S`` up: the bucket after ``S`` was last 0
    #: (Montgomery's ``N+`` estimate of when the shift began). None while ``S`` is 0.
    onset: int | None = None

    @property
    def statistic(self) -> float:
        return self.s[-1] if self.s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": _finite(self.target),
            "k": self.k,
            "h": self.h,
            "min_effect": self.min_effect,
            "worse": self.worse,
            "statistic": _finite(self.statistic),
            "alert": self.alert,
            "onset": self.onset,
            "steps": [
                {"value": _finite(v), "z": _finite(z), "allowance": _finite(a), "s": _finite(s)}
                for v, z, a, s in zip(self.values, self.z, self.allowance, self.s, strict=True)
            ],
        }


def cusum(
    values: Sequence[float | None],
    standard_errors: Sequence[float | None],
    target: float,
    *,
    worse: Worse,
    k: float = 0.5,
    h: float = 5.0,
    min_effect: float = 0.0,
) -> CusumResult:
    """One-sided standardised CUSUM of ``values`` (one per bucket) against ``target``.

    ``z_t = (value_t - target) / se_t`` signed so that worse is positive; ``k_t = max(k, min_effect / 2 /
    se_t)``; ``S_t = max(0, S_{t-1} + z_t - k_t)``. A bucket with no value (or no standard error) leaves
    ``S`` as it was. With ``se_t = 1`` and ``min_effect = 0`` this is Montgomery's tabular CUSUM with
    ``K = k`` and ``H = h`` in units of sigma.
    """
    if len(values) != len(standard_errors):
        raise ValueError("cusum needs one standard error per value")
    sign = -1.0 if worse == "lower" else 1.0
    s = 0.0
    last_zero = -1
    zs: list[float | None] = []
    allowances: list[float | None] = []
    path: list[float] = []
    for index, (value, se) in enumerate(zip(values, standard_errors, strict=True)):
        if value is None or se is None or not se > 0:
            zs.append(None)
            allowances.append(None)
        else:
            z = sign * (value - target) / se
            allowance = max(k, min_effect / 2 / se)
            s = max(0.0, s + z - allowance)
            zs.append(z)
            allowances.append(allowance)
        if s == 0.0:
            last_zero = index
        path.append(s)
    onset = last_zero + 1 if path and path[-1] > 0 else None
    return CusumResult(
        target=target,
        k=k,
        h=h,
        min_effect=min_effect,
        worse=worse,
        values=list(values),
        z=zs,
        allowance=allowances,
        s=path,
        alert=bool(path) and path[-1] > h,
        onset=onset,
    )


def proportion_standard_errors(ns: Sequence[int], p0: float, dispersion: float = 1.0) -> list[float | None]:
    """Standard error of a bucket's rate under the reference rate ``p0``: ``sqrt(p0 (1 - p0) / n)``
    times the overdispersion factor; None for empty buckets."""
    base = math.sqrt(p0 * (1 - p0))
    return [base / math.sqrt(n) * dispersion if n > 0 else None for n in ns]


def mean_standard_errors(ns: Sequence[int], sd0: float, dispersion: float = 1.0) -> list[float | None]:
    """Standard error of a bucket's mean under the reference spread ``sd0``; None for empty buckets."""
    return [sd0 / math.sqrt(n) * dispersion if n > 0 else None for n in ns]


def laney_sigma_z(values: Sequence[float | None], standard_errors: Sequence[float | None]) -> float:
    """Laney's sigma_z: the spread of the buckets' z scores (mean moving range / 1.128), at least 1.

    ``values`` and ``standard_errors`` are the reference buckets' observed values and their standard
    errors around the reference value (empty buckets are skipped). With fewer than three usable
    buckets there is no estimate and the factor is 1 (no correction).
    """
    usable = [(v, se) for v, se in zip(values, standard_errors, strict=True) if v is not None and se]
    if len(usable) < 3:
        return 1.0
    center = float(np.average([v for v, _ in usable], weights=[1 / se**2 for _, se in usable]))
    z = np.array([(v - center) / se for v, se in usable])
    moving_range = np.abs(np.diff(z)).mean()
    return max(1.0, float(moving_range / _D2))
