"""Univariate drift tests, registered by name, with Evidently 0.7's definitions.

Each test compares a reference sample with a current sample of one column and returns a
:class:`DriftTestResult`: the statistic, the p-value where the test has one, the threshold used and
the verdict. Missing values (``NaN``, ``None``) and ``±inf`` are dropped first, as Evidently does.

=================  ==========  =========  ==============================================================
name               kind        threshold  what it computes
=================  ==========  =========  ==============================================================
``ks``             p-value     0.05       two-sample Kolmogorov-Smirnov, ``scipy.stats.ks_2samp``; drift
                                          when p <= threshold (Evidently's comparison for KS)
``chisquare``      p-value     0.05       ``scipy.stats.chisquare`` of the current counts against the
                                          reference counts scaled to the current size
``z``              p-value     0.05       two-proportion z test, ``statsmodels`` ``proportions_ztest``,
                                          on the share of values other than the smallest category
``wasserstein``    distance    0.1        Wasserstein distance divided by the reference's standard
                                          deviation (population, at least 0.001)
``jensenshannon``  distance    0.1        ``scipy.spatial.distance.jensenshannon`` (natural log) of the
                                          binned shares
``psi``            distance    0.1        population stability index of the binned shares
``kl_div``         distance    0.1        ``scipy.stats.entropy(reference, current)`` of the binned shares
``hellinger``      distance    0.1        Hellinger distance of the category shares, or of Sturges
                                          histograms (densities) for numeric columns
=================  ==========  =========  ==============================================================

p-value tests flag drift when the p-value is below the threshold, distance tests when the statistic
is at or above it. Binning is Evidently's (see :mod:`prodloop.monitoring.binning`): Sturges bins
over both samples for numeric columns with more than 20 distinct reference values, one bin per value
otherwise; PSI and KL divergence replace empty bins with a small share.

The Wasserstein distance is scipy's ``wasserstein_distance`` computed from the samples that are
already sorted (scipy sorts each side and both together again, and searches twice: 0.8 s a column
of 1,000,000 rows against 0.1 s); the sum is scipy's term by term, and the tests check that the two
agree.

More tests plug in with :func:`register_stattest`: any object with ``name``, ``kind``,
``default_threshold``, ``column_types`` and a ``__call__`` of the :class:`StatTest` shape
(:mod:`prodloop.monitoring.text` registers the text tests this way).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from scipy import stats
from scipy.spatial import distance

from prodloop.errors import ValidationFailed
from prodloop.monitoring.binning import COLUMN_TYPES, Sample, aligned_counts, as_sample, binned_shares

# Modules that register more tests when imported; loaded the first time a name is not found.
PLUGIN_MODULES = ("prodloop.monitoring.text",)


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class DriftTestResult:
    """What one test said about one column."""

    test: str
    statistic: float
    p_value: float | None
    threshold: float
    drift: bool

    def to_dict(self) -> dict[str, Any]:
        """``{"test", "statistic", "p_value", "threshold", "drift"}``; a non-finite float (an infinite
        chi-square statistic when a category appears only in the current data) becomes ``None``."""
        return {
            "test": self.test,
            "statistic": _json_float(self.statistic),
            "p_value": _json_float(self.p_value),
            "threshold": _json_float(self.threshold),
            "drift": bool(self.drift),
        }


@runtime_checkable
class StatTest(Protocol):
    """A drift test: compares two samples of one column."""

    @property
    def name(self) -> str: ...  # the registry name, e.g. "ks"

    @property
    def kind(self) -> Literal["p_value", "distance"]: ...  # p_value: drift when p < threshold

    @property
    def default_threshold(self) -> float: ...

    @property
    def column_types(self) -> frozenset[str]: ...  # the column types it applies to

    def __call__(
        self, reference: Any, current: Any, column_type: str, threshold: float | None = None
    ) -> DriftTestResult: ...


_REGISTRY: dict[str, StatTest] = {}
_plugins_loaded = False


def register_stattest(test: StatTest) -> StatTest:
    """Adds ``test`` to the registry under ``test.name`` (replacing one of the same name)."""
    if not isinstance(test, StatTest):
        raise ValidationFailed(
            "a drift test needs name, kind, default_threshold, column_types and __call__",
            {"test": repr(test)},
        )
    if test.kind not in ("p_value", "distance"):
        raise ValidationFailed(
            f"drift test {test.name!r} has kind {test.kind!r}; use 'p_value' or 'distance'"
        )
    _REGISTRY[test.name] = test
    return test


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def get_stattest(name: str) -> StatTest:
    """The test registered as ``name``; an unknown name raises ValidationFailed listing the names."""
    test = _REGISTRY.get(name)
    if test is None:
        _load_plugins()
        test = _REGISTRY.get(name)
    if test is None:
        names = stattest_names()
        raise ValidationFailed(
            f"unknown drift test {name!r}; use one of: {', '.join(names)}", {"test": name, "known": names}
        )
    return test


def stattest_names() -> list[str]:
    """The names of all registered tests, sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


Compute = Callable[[Sample, Sample, str], tuple[float, float | None]]


@dataclass(frozen=True)
class _BuiltinTest:
    """A test of this module: checks the column type and the samples, then runs ``compute``."""

    name: str
    kind: Literal["p_value", "distance"]
    default_threshold: float
    column_types: frozenset[str]
    compute: Compute
    drift_at_equal: bool = False  # p-value tests: also drift when p == threshold (Evidently's KS)
    accepts_samples: bool = True  # dataset_drift hands it the cleaned, counted samples it already has

    def __call__(
        self, reference: Any, current: Any, column_type: str, threshold: float | None = None
    ) -> DriftTestResult:
        if column_type not in COLUMN_TYPES:
            raise ValidationFailed(
                f"unknown column type {column_type!r}; use one of: {', '.join(COLUMN_TYPES)}",
                {"column_type": column_type},
            )
        if column_type not in self.column_types:
            raise ValidationFailed(
                f"drift test {self.name!r} does not apply to a {column_type} column; "
                f"it takes {' or '.join(sorted(self.column_types))} columns",
                {"test": self.name, "column_type": column_type},
            )
        ref = as_sample(reference, column_type)
        cur = as_sample(current, column_type)
        for side, sample in (("reference", ref), ("current", cur)):
            if sample.n == 0:
                raise ValidationFailed(
                    f"the {side} data has no values (empty, or all missing); drift needs at least one "
                    "value on each side",
                    {"side": side},
                )
        used = self.default_threshold if threshold is None else float(threshold)
        statistic, p_value = self.compute(ref, cur, column_type)
        if self.kind == "p_value":
            assert p_value is not None
            drift = p_value <= used if self.drift_at_equal else p_value < used
        else:
            drift = statistic >= used
        return DriftTestResult(
            test=self.name,
            statistic=float(statistic),
            p_value=None if p_value is None else float(p_value),
            threshold=used,
            drift=bool(drift),
        )


def _ks(reference: Sample, current: Sample, column_type: str) -> tuple[float, float | None]:
    result = stats.ks_2samp(reference.sorted, current.sorted)
    return float(result.statistic), float(result.pvalue)


def _chisquare(reference: Sample, current: Sample, column_type: str) -> tuple[float, float | None]:
    _, ref_counts, cur_counts = aligned_counts(reference, current)
    expected = ref_counts * (current.n / reference.n)
    # A category seen only in the current data has expected count 0: statistic inf, p-value 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.chisquare(cur_counts, expected)
    return float(result.statistic), float(result.pvalue)


def _z(reference: Sample, current: Sample, column_type: str) -> tuple[float, float | None]:
    from statsmodels.stats.proportion import proportions_ztest

    keys, ref_counts, cur_counts = aligned_counts(reference, current)
    if len(keys) == 1:
        return 0.0, 1.0  # one value on both sides: nothing moved (Evidently's p = 1)
    try:  # Evidently tests the share of values other than the smallest one
        first = keys.index(min(keys))
    except TypeError:  # categories of mixed types: the smallest by their text
        first = keys.index(min(keys, key=str))
    count = np.array([reference.n - ref_counts[first], current.n - cur_counts[first]])
    statistic, p_value = proportions_ztest(count, np.array([reference.n, current.n]))
    return float(statistic), float(p_value)


def _wasserstein(reference: Sample, current: Sample, column_type: str) -> tuple[float, float | None]:
    norm = max(float(np.std(reference.sorted)), 0.001)
    return wasserstein_sorted(reference.sorted, current.sorted) / norm, None


def wasserstein_sorted(u_sorted: np.ndarray, v_sorted: np.ndarray) -> float:
    """``scipy.stats.wasserstein_distance(u, v)`` for samples already in ascending order.

    scipy integrates |U - V| over the merged values: the sum over consecutive merged values of
    |U(x_k) - V(x_k)| * (x_{k+1} - x_k), with U and V found by binary search. Here the merge is one
    stable argsort of the two sorted runs, and U(x_k) is the running count of values from u. Where
    x_k has equal neighbours the running count differs from scipy's, but there the width is 0, so
    every term, and the sum, are the same as scipy's (the tests check equality)."""
    n, m = u_sorted.size, v_sorted.size
    merged = np.concatenate((u_sorted, v_sorted))
    order = np.argsort(merged, kind="stable")
    deltas = np.diff(merged[order])
    from_u = np.cumsum(order[:-1] < n)
    u_cdf = from_u / n
    v_cdf = (np.arange(1, n + m) - from_u) / m
    if hasattr(np, "vecdot"):  # numpy >= 2, as scipy does
        return float(np.vecdot(np.abs(u_cdf - v_cdf), deltas))
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))


def _jensenshannon(reference: Sample, current: Sample, column_type: str) -> tuple[float, float | None]:
    ref_shares, cur_shares = binned_shares(reference, current, fill_zeros=False)
    return float(distance.jensenshannon(ref_shares, cur_shares)), None


def _psi(reference: Sample, current: Sample, column_type: str) -> tuple[float, float | None]:
    ref_shares, cur_shares = binned_shares(reference, current)
    return float(np.sum((ref_shares - cur_shares) * np.log(ref_shares / cur_shares))), None


def _kl_div(reference: Sample, current: Sample, column_type: str) -> tuple[float, float | None]:
    ref_shares, cur_shares = binned_shares(reference, current)
    return float(stats.entropy(ref_shares, cur_shares)), None


def _hellinger(reference: Sample, current: Sample, column_type: str) -> tuple[float, float | None]:
    if column_type == "numeric":
        keys = np.union1d(reference.unique()[0], current.unique()[0])
        edges = np.histogram_bin_edges(keys, bins="sturges")
        ref_density = np.histogram(reference.sorted, bins=edges, density=True)[0]
        cur_density = np.histogram(current.sorted, bins=edges, density=True)[0]
        width = (edges.max() - edges.min()) / (len(edges) - 1)
        overlap = 0.0
        for ref_bin, cur_bin in zip(ref_density.tolist(), cur_density.tolist(), strict=True):
            overlap += math.sqrt(ref_bin * cur_bin) * width  # Evidently's order of summation
    else:
        _, ref_counts, cur_counts = aligned_counts(reference, current)
        overlap = float(np.sum(np.sqrt((ref_counts / reference.n) * (cur_counts / current.n))))
    return math.sqrt(1 - min(max(overlap, 0.0), 1.0)), None


_NUMERIC = frozenset({"numeric"})
_DISCRETE = frozenset({"categorical", "numeric"})

KS = register_stattest(_BuiltinTest("ks", "p_value", 0.05, _NUMERIC, _ks, drift_at_equal=True))
CHISQUARE = register_stattest(_BuiltinTest("chisquare", "p_value", 0.05, _DISCRETE, _chisquare))
Z = register_stattest(_BuiltinTest("z", "p_value", 0.05, _DISCRETE, _z))
WASSERSTEIN = register_stattest(_BuiltinTest("wasserstein", "distance", 0.1, _NUMERIC, _wasserstein))
JENSENSHANNON = register_stattest(_BuiltinTest("jensenshannon", "distance", 0.1, _DISCRETE, _jensenshannon))
PSI = register_stattest(_BuiltinTest("psi", "distance", 0.1, _DISCRETE, _psi))
KL_DIV = register_stattest(_BuiltinTest("kl_div", "distance", 0.1, _DISCRETE, _kl_div))
HELLINGER = register_stattest(_BuiltinTest("hellinger", "distance", 0.1, _DISCRETE, _hellinger))


__all__ = [
    "DriftTestResult",
    "StatTest",
    "get_stattest",
    "register_stattest",
    "stattest_names",
    "wasserstein_sorted",
]
