"""How one column becomes the numbers that the drift tests compare.

A :class:`Sample` is one side (reference or current) of one column, cleaned the way Evidently 0.7
cleans it before a test runs: missing values (``NaN``, ``None``) and ``±inf`` are dropped. It keeps
the views that several tests and the default selection share, computed once and on demand:

- numeric samples: the values as float64, sorted (one sort serves the unique count, the
  histograms, the Wasserstein distance);
- categorical and text samples: the count of each category (Python's ``Counter`` on object arrays,
  pyarrow's ``value_counts`` on pyarrow arrays; no ``np.unique`` on objects, which sorts with
  Python comparisons and is slow).

:func:`aligned_counts` puts the categories of both sides on one axis (a category seen on one side
only counts 0 on the other), and :func:`binned_shares` is Evidently's ``get_binned_data``: Sturges
bins over both samples for numeric columns with more than 20 distinct reference values, one bin per
value otherwise, and, for PSI and KL divergence, empty bins filled with a small share.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable
from typing import Any

import numpy as np

from prodloop.errors import ValidationFailed

COLUMN_TYPES = ("numeric", "categorical", "text")
HISTOGRAM_MIN_UNIQUE = 20  # Evidently bins a numeric column only above this many distinct reference values


def is_arrow(values: Any) -> bool:
    return type(values).__module__.startswith("pyarrow")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


class Sample:
    """One side of one column with missing values dropped, and the views the tests share."""

    __slots__ = ("_counts", "_raw", "_sorted", "_unique", "_values", "column_type", "n")

    def __init__(self, values: Any, column_type: str) -> None:
        if column_type not in COLUMN_TYPES:
            raise ValidationFailed(
                f"unknown column type {column_type!r}; use one of: {', '.join(COLUMN_TYPES)}",
                {"column_type": column_type},
            )
        self.column_type = column_type
        self._sorted: np.ndarray | None = None
        self._unique: tuple[np.ndarray, np.ndarray] | None = None
        self._counts: dict[Hashable, int] | None = None
        self._values: np.ndarray | None = None
        self._raw: Any = None
        if column_type == "numeric":
            self._sorted = _finite_floats(values)
            self._sorted.sort()
            self.n = int(self._sorted.size)
            return
        if not is_arrow(values):
            values = np.asarray(values).reshape(-1)
            if values.dtype.kind in "biuf":
                # Numbers as categories: counted from the sorted array, as for numeric columns.
                if values.dtype.kind == "f":
                    values = values[np.isfinite(values)]
                self._sorted = np.sort(values)
                self.n = int(self._sorted.size)
                return
        self._raw = values
        if is_arrow(values):
            self._counts = _arrow_counts(values)
        else:
            try:
                counts = Counter(values.tolist())  # a list iterates faster than an object array
            except TypeError as exc:
                raise ValidationFailed(
                    f"a {column_type} column holds values that cannot be counted (lists or mappings); "
                    "turn them into strings first",
                    {"error": str(exc)},
                ) from exc
            missing = [key for key in counts if _is_missing(key)]
            for key in missing:
                del counts[key]
            self._counts = dict(counts)
            if not missing:
                self._values = values if values.dtype == object else values.astype(object)
        self.n = int(sum(self._counts.values()))

    @property
    def is_numeric(self) -> bool:
        """Whether the values are numbers held in a sorted array (numeric columns, numeric categories)."""
        return self._sorted is not None

    @property
    def sorted(self) -> np.ndarray:
        """The values in ascending order (numeric samples only)."""
        if self._sorted is None:
            raise ValidationFailed(
                f"a {self.column_type} column has no numeric values to sort; use a test for categories"
            )
        return self._sorted

    def unique(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct values and their counts, from the sorted values (numeric samples only)."""
        if self._unique is None:
            values = self.sorted
            if values.size == 0:
                self._unique = (values, np.zeros(0, dtype=np.int64))
            else:
                starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
                counts = np.diff(np.append(starts, values.size))
                self._unique = (values[starts], counts)
        return self._unique

    def counts(self) -> dict[Hashable, int]:
        """The count of each distinct value, missing values left out."""
        if self._counts is None:
            keys, counts = self.unique()
            self._counts = dict(zip(keys.tolist(), counts.tolist(), strict=True))
        return self._counts

    def n_unique(self, stop_above: int | None = None) -> int:
        """The number of distinct values; with ``stop_above``, ``stop_above + 1`` as soon as there are
        more (for sorted values: that many binary searches instead of a pass over the sample)."""
        if not self.is_numeric:
            return len(self.counts())
        if self._unique is not None or stop_above is None:
            return len(self.unique()[0])
        values, found, position = self.sorted, 0, 0
        while position < values.size:
            found += 1
            if found > stop_above:
                return found
            position = int(np.searchsorted(values, values[position], side="right"))
        return found

    def values(self) -> np.ndarray:
        """The values in their original order with missing ones dropped (numeric samples: sorted)."""
        if self._sorted is not None:
            return self._sorted
        if self._values is None:
            raw = self._raw.to_pylist() if is_arrow(self._raw) else self._raw.tolist()
            self._values = np.array([value for value in raw if not _is_missing(value)], dtype=object)
        return self._values


def retyped(sample: Sample, column_type: str) -> Sample:
    """The same values as a sample of another column type, sharing what was already counted."""
    if column_type == sample.column_type:
        return sample
    if column_type == "numeric" and not sample.is_numeric:
        return Sample(sample.values(), column_type)
    other = Sample.__new__(Sample)
    for slot in Sample.__slots__:
        setattr(other, slot, getattr(sample, slot))
    other.column_type = column_type
    if column_type == "numeric" and other._sorted is not None and other._sorted.dtype != np.float64:
        other._sorted = other._sorted.astype(np.float64)
        other._unique = None
    return other


def as_sample(values: Any, column_type: str) -> Sample:
    """``values`` as a :class:`Sample` (returned as it is when it already is one of that type)."""
    if isinstance(values, Sample) and values.column_type == column_type:
        return values
    if isinstance(values, Sample):
        return retyped(values, column_type)
    return Sample(values, column_type)


def _finite_floats(values: Any) -> np.ndarray:
    """The values as a float64 array of their own (the caller sorts it in place), NaN and ±inf dropped."""
    if is_arrow(values):
        values = values.to_numpy(zero_copy_only=False)
    aliased = isinstance(values, np.ndarray) and values.dtype == np.float64
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(
            "a numeric column holds values that are not numbers; declare it categorical or text",
            {"error": str(exc)},
        ) from exc
    finite = np.isfinite(array)
    if not finite.all():
        return array[finite]
    return array.copy() if aliased else array


def _arrow_counts(values: Any) -> dict[Hashable, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray) and pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    elif isinstance(values, pa.Array) and pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    table = pc.value_counts(values)
    keys = table.field("values").to_pylist()
    counts = table.field("counts").to_pylist()
    return {key: count for key, count in zip(keys, counts, strict=True) if not _is_missing(key)}


def aligned_counts(reference: Sample, current: Sample) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The categories of both samples on one axis, with each side's count (0 where a side lacks one).

    The order is the reference's categories first, then those seen only in the current sample."""
    if reference.is_numeric and current.is_numeric:
        ref_keys, ref_counts = reference.unique()
        cur_keys, cur_counts = current.unique()
        keys = np.union1d(ref_keys, cur_keys)
        ref = np.zeros(keys.size, dtype=np.int64)
        cur = np.zeros(keys.size, dtype=np.int64)
        ref[np.searchsorted(keys, ref_keys)] = ref_counts
        cur[np.searchsorted(keys, cur_keys)] = cur_counts
        return keys.tolist(), ref, cur
    ref_map = reference.counts()
    cur_map = current.counts()
    union = list(ref_map) + [key for key in cur_map if key not in ref_map]
    ref_arr = np.fromiter((ref_map.get(key, 0) for key in union), dtype=np.int64, count=len(union))
    cur_arr = np.fromiter((cur_map.get(key, 0) for key in union), dtype=np.int64, count=len(union))
    return union, ref_arr, cur_arr


def n_unique_together(reference: Sample, current: Sample, stop_above: int | None = None) -> int:
    """The number of distinct values over both samples; with ``stop_above``, any number above it
    may be returned as soon as one side alone has more."""
    if stop_above is not None:
        for side in (reference, current):
            count = side.n_unique(stop_above)
            if count > stop_above:
                return count
    if reference.is_numeric and current.is_numeric:
        return int(np.union1d(reference.unique()[0], current.unique()[0]).size)
    return len(reference.counts().keys() | current.counts().keys())


def sorted_histogram(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` for values already sorted, by binary search: each bin is
    half-open except the last, which includes its right edge, as numpy does."""
    positions = np.searchsorted(sorted_values, edges, side="left")
    positions[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(positions)


def _fill_zeros(shares: np.ndarray) -> None:
    """Evidently's ``feel_zeroes``: empty bins get the smallest non-empty share / 10**6 when that is at
    most 0.0001, else 0.0001, so that logarithms stay finite."""
    nonzero = shares[shares != 0]
    smallest = float(nonzero.min())
    np.place(shares, shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)


def binned_shares(
    reference: Sample, current: Sample, fill_zeros: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The share of each sample in each bin, as Evidently 0.7's ``get_binned_data``.

    Numeric columns with more than 20 distinct reference values: bins from
    ``np.histogram_bin_edges(both samples, bins="sturges")``. Otherwise one bin per value seen on
    either side. Shares are counts over the sample size."""
    if (
        reference.column_type == "numeric"
        and current.column_type == "numeric"
        and reference.n_unique(HISTOGRAM_MIN_UNIQUE) > HISTOGRAM_MIN_UNIQUE
    ):
        edges = np.histogram_bin_edges(np.concatenate((reference.sorted, current.sorted)), bins="sturges")
        ref_shares = sorted_histogram(reference.sorted, edges) / reference.n
        cur_shares = sorted_histogram(current.sorted, edges) / current.n
    else:
        _, ref_counts, cur_counts = aligned_counts(reference, current)
        ref_shares = ref_counts / reference.n
        cur_shares = cur_counts / current.n
    if fill_zeros:
        _fill_zeros(ref_shares)
        _fill_zeros(cur_shares)
    return ref_shares, cur_shares


__all__ = [
    "COLUMN_TYPES",
    "Sample",
    "aligned_counts",
    "as_sample",
    "binned_shares",
    "is_arrow",
    "n_unique_together",
    "retyped",
    "sorted_histogram",
]
