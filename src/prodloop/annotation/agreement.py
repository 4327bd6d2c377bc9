"""Inter-annotator agreement: Krippendorff's alpha, Cohen's and Fleiss' kappa, percent agreement.

Every statistic takes a *reliability matrix*: ``ratings[annotator, item]`` holds a numeric value
(a category code, or the rating itself for interval and ratio data) and ``np.nan`` where that
annotator did not rate that item. :func:`reliability_matrix` builds one from label records.

Where agreement is undefined (fewer than two pairable ratings, or every rating the same value, so
that the expected disagreement is zero) the functions raise :class:`~prodloop.errors.ValidationFailed`
with a message that says why; they never return ``1.0`` or ``NaN`` in its place.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from prodloop.errors import ValidationFailed

Level = Literal["nominal", "ordinal", "interval", "ratio"]
Weights = Literal["linear", "quadratic"]
LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")

FloatArray = NDArray[np.float64]

# Resamples drawn at once by the vectorised bootstrap; bounds memory at _CHUNK x n_items floats.
_CHUNK = 200


# --------------------------------------------------------------------------------------------------
# Building the reliability matrix


def reliability_matrix(
    labels: Iterable[tuple[Hashable, Hashable, Any]],
    categories: Sequence[Any] | None = None,
) -> tuple[FloatArray, list[Hashable], list[Hashable], tuple[Any, ...] | None]:
    """Build ``(matrix, item_ids, annotator_ids, categories)`` from ``(item_id, annotator_id, value)``.

    Items and annotators keep the order in which they first appear. ``None`` (or NaN) values count as
    missing. With ``categories`` given, each value is replaced by its index in ``categories``, so for
    ordinal data the codes follow the given order. Without it, numbers are kept as they are (for
    interval and ratio data) and ``categories`` comes back ``None``; any other values are coded by
    their sorted order (first-appearance order where they cannot be sorted).
    """
    records = [
        (item, annotator, value)
        for item, annotator, value in labels
        if value is not None and not (isinstance(value, float) and math.isnan(value))
    ]
    item_index: dict[Hashable, int] = {}
    annotator_index: dict[Hashable, int] = {}
    for item, annotator, _ in records:
        item_index.setdefault(item, len(item_index))
        annotator_index.setdefault(annotator, len(annotator_index))

    values = [value for _, _, value in records]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    codes: dict[Any, int] | None
    chosen: tuple[Any, ...] | None
    if categories is not None:
        given = tuple(categories)
        if len(set(given)) != len(given):
            raise ValidationFailed(f"categories must be distinct, got {list(given)!r}")
        chosen, codes = given, {category: code for code, category in enumerate(given)}
        unknown = sorted({repr(v) for v in values if v not in codes})
        if unknown:
            allowed = ", ".join(str(c) for c in given)
            raise ValidationFailed(
                f"label {unknown[0]} is not one of the categories (allowed: {allowed})",
                {"unknown": unknown, "categories": [str(c) for c in given]},
            )
    elif numeric:
        chosen, codes = None, None
    else:
        distinct = list(dict.fromkeys(values))
        try:
            distinct = sorted(distinct)
        except TypeError:
            pass
        chosen = tuple(distinct)
        codes = {category: code for code, category in enumerate(chosen)}

    matrix = np.full((len(annotator_index), len(item_index)), np.nan)
    for item, annotator, value in records:
        row, column = annotator_index[annotator], item_index[item]
        if not np.isnan(matrix[row, column]):
            raise ValidationFailed(
                f"annotator {annotator!r} rated item {item!r} more than once; "
                "pass only the current label of each annotator per item",
                {"item": str(item), "annotator": str(annotator)},
            )
        matrix[row, column] = float(value) if codes is None else codes[value]
    return matrix, list(item_index), list(annotator_index), chosen


# --------------------------------------------------------------------------------------------------
# Shared machinery


def _as_matrix(ratings: ArrayLike) -> FloatArray:
    try:
        matrix = np.asarray(ratings, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValidationFailed(
            "ratings must be numeric codes with NaN for missing; "
            "use reliability_matrix() to code categorical labels"
        ) from error
    if matrix.ndim != 2:
        raise ValidationFailed(
            f"ratings must be a matrix of shape (annotators, items), got {matrix.ndim} dimension(s)"
        )
    if np.isinf(matrix).any():
        raise ValidationFailed("ratings contain infinite values; use NaN for missing ratings")
    return matrix


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValidationFailed(f"unknown level of measurement {level!r} (use one of: {', '.join(LEVELS)})")


def _value_counts(matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(values, counts)``: the distinct values and ``counts[item, value]``, how often each was given."""
    present = ~np.isnan(matrix)
    values = np.unique(matrix[present])
    n_items = matrix.shape[1]
    columns = np.nonzero(present)[1]
    codes = np.searchsorted(values, matrix[present])
    flat = np.bincount(columns * values.size + codes, minlength=n_items * values.size)
    return values, flat.reshape(n_items, values.size).astype(np.float64)


def _pairable_counts(matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Value counts of the items with at least two ratings, over the values that occur in them."""
    values, counts = _value_counts(matrix)
    counts = counts[counts.sum(axis=1) >= 2]
    used = counts.sum(axis=0) > 0
    return values[used], counts[:, used]


def _item_coincidences(counts: FloatArray) -> FloatArray:
    """Per item ``(n_uc n_uk - [c = k] n_uc) / (n_u - 1)``, shape ``(items, values, values)``."""
    n_u = counts.sum(axis=1)
    scale = np.divide(1.0, n_u - 1, out=np.zeros_like(n_u), where=n_u >= 2)
    pairs = counts[:, :, None] * counts[:, None, :]
    diagonal = np.arange(counts.shape[1])
    pairs[:, diagonal, diagonal] -= counts
    return np.asarray(pairs * scale[:, None, None], dtype=np.float64)


def _coincidences(counts: FloatArray) -> FloatArray:
    """Krippendorff's coincidence matrix ``o[c, k]`` from per-item value counts (all items pairable)."""
    scale = 1.0 / (counts.sum(axis=1) - 1)
    o = counts.T @ (counts * scale[:, None])
    o[np.diag_indices_from(o)] -= (counts * scale[:, None]).sum(axis=0)
    return np.asarray(o, dtype=np.float64)


def _distances(values: FloatArray, marginals: FloatArray, level: str) -> FloatArray:
    """The squared difference ``delta[c, k]`` of Krippendorff's metric for ``level``; for ordinal data
    it depends on the marginals, so it is stacked like them as ``(..., V, V)``."""
    if level == "nominal":
        return 1.0 - np.eye(values.size)
    if level == "ordinal":
        # sum_{g=c..k} n_g - (n_c + n_k) / 2 equals m_k - m_c with m the cumulative midpoints.
        midpoints = np.cumsum(marginals, axis=-1) - marginals / 2
        return np.asarray((midpoints[..., :, None] - midpoints[..., None, :]) ** 2, dtype=np.float64)
    difference = values[:, None] - values[None, :]
    if level == "interval":
        delta = difference**2
    else:
        total = values[:, None] + values[None, :]
        ratio = np.divide(difference, total, out=np.zeros_like(difference), where=total != 0)
        delta = ratio**2
    return np.asarray(delta, dtype=np.float64)


def _alpha_from_coincidences(o: FloatArray, values: FloatArray, level: str) -> FloatArray:
    """Alpha for a stack of coincidence matrices ``(..., V, V)``; NaN where it is undefined."""
    marginals = o.sum(axis=-1)
    n = marginals.sum(axis=-1)
    delta = _distances(values, marginals, level)
    observed = (o * delta).sum(axis=(-2, -1))
    expected = (marginals[..., :, None] * marginals[..., None, :] * delta).sum(axis=(-2, -1))
    defined = (expected > 1e-12 * np.maximum(n, 1) ** 2) & (n >= 2)
    share = np.divide((n - 1) * observed, expected, out=np.full_like(n, np.nan), where=defined)
    return np.asarray(1.0 - share, dtype=np.float64)


def _name(value: float, categories: Sequence[Any] | None) -> str:
    if categories is not None and float(value).is_integer() and 0 <= int(value) < len(categories):
        return f"'{categories[int(value)]}'"
    return f"'{int(value)}'" if float(value).is_integer() else f"'{value!r}'"


def _raise_if_undefined(
    values: FloatArray, counts: FloatArray, categories: Sequence[Any] | None, what: str
) -> None:
    if counts.sum() < 2:
        raise ValidationFailed(
            f"agreement is undefined: fewer than two pairable ratings (no item was rated by two "
            f"annotators); {what} needs items with at least two ratings"
        )
    if values.size < 2:
        raise ValidationFailed(
            f"agreement is undefined: every rating is {_name(values[0], categories)}; "
            f"{what} would divide by zero"
        )


# --------------------------------------------------------------------------------------------------
# Krippendorff's alpha


def krippendorff_alpha(
    ratings: ArrayLike, level: Level | str = "nominal", categories: Sequence[Any] | None = None
) -> float:
    """Krippendorff's alpha of ``ratings[annotator, item]`` (NaN = missing) at ``level``.

    Computed from the coincidence matrix of the pairable values: items rated by fewer than two
    annotators are ignored. ``categories`` only names the codes in error messages.
    """
    _check_level(level)
    matrix = _as_matrix(ratings)
    values, counts = _pairable_counts(matrix)
    _raise_if_undefined(values, counts, categories, "alpha")
    if level == "ratio" and values[0] < 0:
        raise ValidationFailed(
            f"ratio alpha needs non-negative values (a ratio scale has an absolute zero), got {values[0]!r}"
        )
    alpha = float(_alpha_from_coincidences(_coincidences(counts), values, level))
    if math.isnan(alpha):  # pragma: no cover - excluded by the checks above
        raise ValidationFailed("agreement is undefined: the expected disagreement is zero")
    return alpha


def per_class_agreement(
    ratings: ArrayLike, categories: Sequence[Any] | None = None
) -> dict[Any, float | None]:
    """Nominal alpha of each class against the rest: where the spec makes a class ambiguous.

    The keys are the categories (all of them, when given) or else the distinct values. A class that
    never takes part in a pairable rating, or that is every pairable rating, has ``None``.
    """
    matrix = _as_matrix(ratings)
    values, counts = _pairable_counts(matrix)
    result: dict[Any, float | None] = {}
    if categories is not None:
        for category in categories:
            result[category] = None
    if counts.sum() >= 2 and values.size:
        o = _coincidences(counts)
        n_c = o.sum(axis=1)
        n = n_c.sum()
        # Binary alpha of "c vs rest": o'[c, rest] = n_c - o_cc and n_rest = n - n_c.
        both = n_c * (n - n_c)
        defined = both > 0
        alpha = 1.0 - np.divide((n - 1) * (n_c - np.diag(o)), both, out=np.zeros_like(both), where=defined)
        for value, ok, class_alpha in zip(values, defined, alpha, strict=True):
            key = _key(value, categories)
            result[key] = float(class_alpha) if ok else None
    return result


def _key(value: float, categories: Sequence[Any] | None) -> Any:
    if categories is not None:
        if not (float(value).is_integer() and 0 <= int(value) < len(categories)):
            raise ValidationFailed(
                f"code {value!r} has no category (codes are indices 0..{len(categories) - 1})"
            )
        return categories[int(value)]
    return int(value) if float(value).is_integer() else float(value)


# --------------------------------------------------------------------------------------------------
# Kappas and percent agreement


def cohen_kappa(a: ArrayLike, b: ArrayLike, weights: Weights | None = None) -> float:
    """Cohen's kappa of two annotators over the items both rated (NaN = missing).

    Weighted kappa weighs a disagreement by the distance of the two categories' positions among the
    values either annotator used (``linear``) or its square (``quadratic``), as scikit-learn does.
    """
    if weights not in (None, "linear", "quadratic"):
        raise ValidationFailed(f"unknown weights {weights!r} (use None, 'linear' or 'quadratic')")
    first = np.asarray(a, dtype=np.float64)
    second = np.asarray(b, dtype=np.float64)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValidationFailed(
            f"cohen_kappa needs two rating vectors of the same length, got shapes "
            f"{first.shape} and {second.shape}"
        )
    both = ~np.isnan(first) & ~np.isnan(second)
    x, y = first[both], second[both]
    if x.size == 0:
        raise ValidationFailed("agreement is undefined: the two annotators rated no item in common")
    values = np.unique(np.concatenate([x, y]))
    if values.size < 2:
        raise ValidationFailed(
            f"agreement is undefined: every rating is {_name(values[0], None)}; kappa would divide by zero"
        )
    k = values.size
    i, j = np.searchsorted(values, x), np.searchsorted(values, y)
    observed = np.bincount(i * k + j, minlength=k * k).reshape(k, k).astype(np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / x.size
    position = np.arange(k, dtype=np.float64)
    distance = np.abs(position[:, None] - position[None, :])
    weight = {None: (distance > 0).astype(np.float64), "linear": distance, "quadratic": distance**2}[weights]
    return float(1.0 - (weight * observed).sum() / (weight * expected).sum())


def pairwise_cohen_kappa(
    ratings: ArrayLike, weights: Weights | None = None
) -> dict[tuple[int, int], float | None]:
    """Cohen's kappa of each pair of annotators (rows), ``None`` where it is undefined for the pair."""
    matrix = _as_matrix(ratings)
    result: dict[tuple[int, int], float | None] = {}
    for first in range(matrix.shape[0]):
        for second in range(first + 1, matrix.shape[0]):
            try:
                result[(first, second)] = cohen_kappa(matrix[first], matrix[second], weights)
            except ValidationFailed:
                result[(first, second)] = None
    return result


def fleiss_kappa(counts: ArrayLike) -> float:
    """Fleiss' kappa from ``counts[item, category]``; every item must have the same number of raters."""
    table = np.asarray(counts, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValidationFailed("fleiss_kappa needs a non-empty (items x categories) count table")
    if (table < 0).any() or not np.equal(np.round(table), table).all():
        raise ValidationFailed("fleiss_kappa needs non-negative whole counts")
    raters = table.sum(axis=1)
    if not (raters == raters[0]).all():
        raise ValidationFailed(
            f"fleiss_kappa needs the same number of raters for every item, got between "
            f"{int(raters.min())} and {int(raters.max())}; use krippendorff_alpha for uneven data",
            {"raters_per_item": sorted({int(r) for r in raters})},
        )
    n = raters[0]
    if n < 2:
        raise ValidationFailed("agreement is undefined: fleiss_kappa needs at least two raters per item")
    shares = table.sum(axis=0) / table.sum()
    if (shares > 0).sum() < 2:
        column = int(np.argmax(shares))
        raise ValidationFailed(
            f"agreement is undefined: every rating is in category column {column}; kappa would divide by zero"
        )
    per_item = ((table * table).sum(axis=1) - n) / (n * (n - 1))
    chance = float((shares * shares).sum())
    return float((per_item.mean() - chance) / (1.0 - chance))


def fleiss_table(ratings: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``(counts, values)``: the ``(items x values)`` count table of the items that have any rating."""
    values, counts = _value_counts(_as_matrix(ratings))
    return counts[counts.sum(axis=1) > 0], values


def fleiss_kappa_from_ratings(ratings: ArrayLike, categories: Sequence[Any] | None = None) -> float:
    """Fleiss' kappa of a reliability matrix; unrated items are skipped, the rest need equal raters."""
    counts, values = fleiss_table(ratings)
    if counts.sum() > 0 and values.size == 1:
        raise ValidationFailed(
            f"agreement is undefined: every rating is {_name(values[0], categories)}; "
            "kappa would divide by zero"
        )
    return fleiss_kappa(counts)


def percent_agreement(ratings: ArrayLike) -> float:
    """Share of agreeing (ordered) pairs of ratings among all pairs within the same item."""
    _, counts = _pairable_counts(_as_matrix(ratings))
    n_u = counts.sum(axis=1)
    pairs = float((n_u * (n_u - 1)).sum())
    if pairs == 0:
        raise ValidationFailed(
            "agreement is undefined: fewer than two pairable ratings (no item was rated by two annotators)"
        )
    return float((counts * (counts - 1)).sum() / pairs)


# --------------------------------------------------------------------------------------------------
# Bootstrap


def _alpha_level(statistic: Callable[..., float]) -> str | None:
    """The level when ``statistic`` is plain :func:`krippendorff_alpha` (or a partial of it)."""
    if statistic is krippendorff_alpha:
        return "nominal"
    if (
        isinstance(statistic, functools.partial)
        and statistic.func is krippendorff_alpha
        and not statistic.args
        and set(statistic.keywords) <= {"level", "categories"}
    ):
        level = str(statistic.keywords.get("level", "nominal"))
        _check_level(level)
        return level
    return None


def _bootstrap_alpha(matrix: FloatArray, draws: NDArray[np.int64], level: str) -> FloatArray:
    """Alpha of every resample at once: weight each item's coincidences by how often it was drawn."""
    values, counts = _value_counts(matrix)
    if level == "ratio" and values.size and values[0] < 0:
        raise ValidationFailed("ratio alpha needs non-negative values (a ratio scale has an absolute zero)")
    n_resamples, n_items = draws.shape
    per_item = _item_coincidences(counts).reshape(n_items, -1)
    estimates = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        chunk = draws[start : start + _CHUNK]
        rows = np.repeat(np.arange(chunk.shape[0]), n_items)
        multiplicity = np.bincount(
            rows * n_items + chunk.ravel(), minlength=chunk.shape[0] * n_items
        ).reshape(chunk.shape[0], n_items)
        o = (multiplicity @ per_item).reshape(chunk.shape[0], values.size, values.size)
        estimates[start : start + chunk.shape[0]] = _alpha_from_coincidences(o, values, level)
    return estimates


def bootstrap_ci(
    statistic: Callable[[FloatArray], float],
    ratings: ArrayLike,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(ratings)``, resampling items (columns).

    Deterministic for a given ``seed``. Resamples where the statistic is undefined (for example all
    drawn items agree on one value) are left out; if more than half are, the interval is undefined.
    :func:`krippendorff_alpha` (or ``functools.partial(krippendorff_alpha, level=...)``) is
    bootstrapped in one vectorised pass over all resamples.
    """
    if n_resamples < 1:
        raise ValidationFailed(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValidationFailed(f"confidence must be between 0 and 1, got {confidence}")
    matrix = _as_matrix(ratings)
    n_items = matrix.shape[1]
    if n_items == 0:
        raise ValidationFailed("agreement is undefined: there are no items to resample")
    draws = np.random.default_rng(seed).integers(0, n_items, size=(n_resamples, n_items))
    level = _alpha_level(statistic)
    if level is not None:
        estimates = _bootstrap_alpha(matrix, draws, level)
    else:
        estimates = np.empty(n_resamples)
        for index, columns in enumerate(draws):
            try:
                estimates[index] = statistic(matrix[:, columns])
            except ValidationFailed:
                estimates[index] = np.nan
    defined = estimates[~np.isnan(estimates)]
    if defined.size * 2 < n_resamples:
        raise ValidationFailed(
            f"the confidence interval is undefined: the statistic is undefined in "
            f"{n_resamples - defined.size} of {n_resamples} resamples (too few items, or too little variety)"
        )
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(defined, [tail, 1.0 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class AgreementReport:
    """Agreement of one slice (a queue, a field, a time range, a schema version)."""

    n_items: int
    krippendorff_alpha: float
    alpha_ci: tuple[float, float]
    level: str
    fleiss_kappa: float | None
    percent_agreement: float
    per_class: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape the CLI and API print."""
        shape = asdict(self)
        shape["alpha_ci"] = list(self.alpha_ci)
        shape["per_class"] = dict(self.per_class)
        return shape


def agreement_report(
    ratings: ArrayLike,
    level: Level | str = "nominal",
    categories: Sequence[Any] | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """All agreement statistics of ``ratings`` in the stable JSON shape.

    ``n_items`` counts the items that enter the statistics (rated by at least two annotators);
    ``fleiss_kappa`` is ``None`` when the number of raters differs between items.
    """
    _check_level(level)
    matrix = _as_matrix(ratings)
    alpha = krippendorff_alpha(matrix, level, categories)
    ci = bootstrap_ci(
        functools.partial(krippendorff_alpha, level=level),
        matrix,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    try:
        fleiss: float | None = fleiss_kappa_from_ratings(matrix, categories)
    except ValidationFailed:
        fleiss = None
    n_items = int((np.sum(~np.isnan(matrix), axis=0) >= 2).sum())
    report = AgreementReport(
        n_items=n_items,
        krippendorff_alpha=alpha,
        alpha_ci=ci,
        level=level,
        fleiss_kappa=fleiss,
        percent_agreement=percent_agreement(matrix),
        per_class={str(key): value for key, value in per_class_agreement(matrix, categories).items()},
    )
    return report.to_dict()
