"""Drift of one column, and of a whole dataset, between a reference and a current sample.

:func:`column_drift` runs one test on one column: the test given, or the one Evidently 0.7 would
pick (:func:`prodloop.monitoring.selection.default_stattest`), on the column type given or inferred
as Evidently infers it. :func:`dataset_drift` does that for every column and calls the dataset
drifted when the share of drifted columns reaches ``drift_share`` (0.5 by default), as Evidently's
``DataDriftPreset`` does. Without ``columns``, every column of ``current`` is compared except those
Evidently leaves out too (dates, lists, columns with no value); every compared column must exist on
both sides.

Columns are numpy arrays (float64 for numbers, NaN missing; object arrays of strings, None missing)
or pyarrow arrays, which are counted without a conversion. Each side of a column is cleaned, sorted
or counted once (:class:`prodloop.monitoring.binning.Sample`), and that serves the type, the default
selection and the test. Large datasets are compared on a few threads (sorting and most of numpy's
work release the GIL); ``progress(done, total)`` is called after each column.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from prodloop.errors import ValidationFailed
from prodloop.monitoring.binning import COLUMN_TYPES, Sample, as_sample
from prodloop.monitoring.selection import default_stattest, typed_sample
from prodloop.monitoring.stattests import DriftTestResult, get_stattest

PARALLEL_MIN_ROWS = 200_000  # reference + current rows from which columns are compared on threads
MAX_THREADS = 4


@dataclass(frozen=True)
class ColumnDrift:
    """The drift verdict on one column."""

    column: str
    type: str
    result: DriftTestResult

    @property
    def drift(self) -> bool:
        return self.result.drift

    def to_dict(self) -> dict[str, Any]:
        """``{"column", "type", "test", "statistic", "p_value", "threshold", "drift"}``."""
        return {"column": self.column, "type": self.type, **self.result.to_dict()}


@dataclass(frozen=True)
class DriftReport:
    """The verdict on each column and on the dataset."""

    columns: list[ColumnDrift]
    dataset_drift: bool
    share_drifted: float
    drift_share: float
    n_reference: int
    n_current: int

    @property
    def drifted_columns(self) -> list[str]:
        return [column.column for column in self.columns if column.drift]

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``prodloop drift --format json``."""
        return {
            "columns": [column.to_dict() for column in self.columns],
            "dataset_drift": bool(self.dataset_drift),
            "share_drifted": float(self.share_drifted),
            "drift_share": float(self.drift_share),
            "n_reference": int(self.n_reference),
            "n_current": int(self.n_current),
        }


def _samples(reference: Any, current: Any, column_type: str | None) -> tuple[Sample, Sample] | None:
    if column_type is None:
        cur = typed_sample(current)
        if cur is None:
            return None
        return as_sample(reference, cur.column_type), cur
    if column_type not in COLUMN_TYPES:
        raise ValidationFailed(
            f"unknown column type {column_type!r}; use one of: {', '.join(COLUMN_TYPES)}",
            {"column_type": column_type},
        )
    return as_sample(reference, column_type), as_sample(current, column_type)


def _compare(
    name: str,
    reference: Any,
    current: Any,
    column_type: str | None,
    test: str | None,
    threshold: float | None,
    required: bool,
) -> ColumnDrift | None:
    """One column's verdict; None for a column of no drift type that was not asked for by name."""
    try:
        samples = _samples(reference, current, column_type)
        if samples is None:
            if not required:
                return None
            raise ValidationFailed(
                "cannot tell whether it is numeric, categorical or text (it may hold dates, lists, "
                "objects that are not strings, or no value at all); give its type"
            )
        ref, cur = samples
        kind = cur.column_type
        for side, sample in (("reference", ref), ("current", cur)):
            if sample.n == 0:
                raise ValidationFailed(
                    f"no values in the {side} data (empty, or all missing); drift needs at least one "
                    "value on each side",
                    {"side": side},
                )
        stattest = get_stattest(test if test is not None else default_stattest(ref, cur, kind))
        if kind not in stattest.column_types:
            raise ValidationFailed(
                f"drift test {stattest.name!r} does not apply to a {kind} column; it takes "
                f"{' or '.join(sorted(stattest.column_types))} columns",
                {"test": stattest.name, "column_type": kind},
            )
        if getattr(stattest, "accepts_samples", False):
            result = stattest(ref, cur, kind, threshold)
        else:
            result = stattest(ref.values(), cur.values(), kind, threshold)
    except ValidationFailed as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
        raise ValidationFailed(f"column {name!r}: {exc.message}", {"column": name, **detail}) from exc
    return ColumnDrift(column=name, type=kind, result=result)


def column_drift(
    name: str,
    reference: Any,
    current: Any,
    *,
    column_type: str | None = None,
    test: str | None = None,
    threshold: float | None = None,
) -> ColumnDrift:
    """The drift verdict on one column (type inferred and test chosen as Evidently 0.7 does)."""
    result = _compare(name, reference, current, column_type, test, threshold, required=True)
    assert result is not None
    return result


def _length(name: str, values: Any) -> int:
    try:
        return len(values)
    except TypeError as exc:
        raise ValidationFailed(f"column {name!r} is not an array", {"column": name}) from exc


def _rows(side: str, data: Mapping[str, Any]) -> int:
    lengths = {name: _length(name, values) for name, values in data.items()}
    if len(set(lengths.values())) > 1:
        raise ValidationFailed(
            f"the {side} columns differ in length; each column needs one value per row", lengths
        )
    return next(iter(lengths.values()), 0)


def _per_column(
    what: str, value: Any, columns: Sequence[str], is_single: Callable[[Any], bool]
) -> dict[str, Any]:
    if value is None:
        return {}
    if is_single(value):
        return dict.fromkeys(columns, value)
    if not isinstance(value, Mapping):
        raise ValidationFailed(f"{what} must be one value for all columns or a mapping column -> value")
    unknown = sorted(set(value) - set(columns))
    if unknown:
        raise ValidationFailed(
            f"{what} name columns that are not compared: {', '.join(map(repr, unknown))}",
            {"columns": unknown},
        )
    return dict(value)


def dataset_drift(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    columns: Sequence[str] | None = None,
    column_types: Mapping[str, str] | None = None,
    tests: str | Mapping[str, str] | None = None,
    thresholds: float | Mapping[str, float] | None = None,
    drift_share: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> DriftReport:
    """The verdict on each column and on the dataset: drifted when the share of drifted columns is at
    least ``drift_share`` (Evidently's rule)."""
    if not 0 < drift_share <= 1:
        raise ValidationFailed(
            f"drift_share must be in (0, 1], not {drift_share}", {"drift_share": drift_share}
        )
    n_reference, n_current = _rows("reference", reference), _rows("current", current)
    required = columns is not None
    names = list(columns) if columns is not None else list(current)
    missing = [name for name in names if name not in reference or name not in current]
    if missing:
        raise ValidationFailed(
            f"columns missing from the reference or the current data: {', '.join(map(repr, missing))}",
            {"columns": missing},
        )
    types = _per_column("column_types", column_types, names, lambda value: False)
    test_by_column = _per_column("tests", tests, names, lambda value: isinstance(value, str))
    threshold_by_column = _per_column(
        "thresholds", thresholds, names, lambda value: isinstance(value, int | float)
    )

    def compare(name: str) -> ColumnDrift | None:
        return _compare(
            name,
            reference[name],
            current[name],
            types.get(name),
            test_by_column.get(name),
            threshold_by_column.get(name),
            required=required or name in types,
        )

    results: dict[str, ColumnDrift | None] = {}
    threads = min(len(names), os.cpu_count() or 1, MAX_THREADS)
    if threads > 1 and n_reference + n_current >= PARALLEL_MIN_ROWS:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prodloop-drift") as pool:
            futures = {pool.submit(compare, name): name for name in names}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(len(results), len(names))
    else:
        for name in names:
            results[name] = compare(name)
            if progress is not None:
                progress(len(results), len(names))

    compared = [result for name in names if (result := results[name]) is not None]
    if not compared:
        raise ValidationFailed(
            "no column to compare: give columns that hold numbers, categories or text",
            {"columns": names},
        )
    share = sum(column.drift for column in compared) / len(compared)
    return DriftReport(
        columns=compared,
        dataset_drift=share >= drift_share,
        share_drifted=share,
        drift_share=drift_share,
        n_reference=n_reference,
        n_current=n_current,
    )


__all__ = ["ColumnDrift", "DriftReport", "column_drift", "dataset_drift"]
