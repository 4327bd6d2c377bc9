"""Column types and the default test per column: Evidently 0.7's rules (the parity with recorded
Evidently outputs is in test_evidently_parity.py; these pin the rules at their boundaries)."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from prodloop.errors import ValidationFailed
from prodloop.monitoring.selection import default_stattest, infer_column_type

RNG = np.random.default_rng(5)


def words(n: int, distinct: int) -> np.ndarray:
    return np.array([f"w{i % distinct}" for i in range(n)], dtype=object)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (RNG.normal(size=50), "numeric"),
        (np.array([0.0, 1.0] * 20), "numeric"),  # floats are numeric whatever their count
        (np.array([np.nan] * 5), "numeric"),
        (np.arange(40) % 10, "categorical"),  # integers: at most 10 values are categories
        (np.arange(40) % 11, "numeric"),
        (np.array([True, False] * 5), "categorical"),
        (words(100, 50), "categorical"),  # strings: half distinct is still categorical
        (words(100, 51), "text"),  # more than half distinct: text
        (np.array(["x", None, "y", None, "z"], dtype=object), "text"),  # 3 distinct of 3 present
        (np.array(["a", "b", "a", "b"]), "categorical"),  # numpy strings
    ],
)
def test_column_types_follow_evidentlys_default_data_definition(values: np.ndarray, expected: str) -> None:
    assert infer_column_type(values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pa.array([1.5, None, 2.5]), "numeric"),
        (pa.array([1, 2, 3] * 5), "categorical"),
        (pa.array([1, 2, None]), "numeric"),  # pandas, and so Evidently, reads these as floats
        (pa.array(list(range(30))), "numeric"),
        (pa.array(["a", "b"] * 5).dictionary_encode(), "categorical"),
        (pa.chunked_array([["a", "b", "a"], ["b", None]]), "categorical"),
        (pa.array([f"s{i}" for i in range(10)]), "text"),
        (pa.array([True, False]), "categorical"),
    ],
)
def test_pyarrow_column_types(values: Any, expected: str) -> None:
    assert infer_column_type(values) == expected


def test_the_type_is_read_off_the_current_data_when_given_as_evidently_does() -> None:
    reference = np.arange(100) % 20  # 20 integer values: numeric on its own
    current = np.arange(100) % 4  # 4 values: categorical
    assert infer_column_type(reference) == "numeric"
    assert infer_column_type(reference, current) == "categorical"


@pytest.mark.parametrize(
    "values",
    [
        np.array([1, 2, 3], dtype=object),  # objects that are not strings
        np.array([None, None], dtype=object),
        np.array([date(2026, 1, 1)] * 3, dtype=object),
        np.arange(3).astype("datetime64[D]"),
        pa.array([date(2026, 1, 1)]),
        pa.array([None, None], type=pa.string()),
    ],
)
def test_columns_of_no_drift_type_are_refused_with_advice(values: Any) -> None:
    with pytest.raises(ValidationFailed, match="give its type"):
        infer_column_type(values)


def numbers(n: int, distinct: int) -> np.ndarray:
    return (np.arange(n) % distinct).astype(float)


@pytest.mark.parametrize(
    ("reference", "current", "column_type", "expected"),
    [
        # reference of at most 1,000 rows: p-value tests
        (numbers(1000, 6), numbers(50, 6), "numeric", "ks"),
        (numbers(1000, 5), numbers(50, 5), "numeric", "chisquare"),
        (numbers(1000, 3), numbers(50, 3), "numeric", "chisquare"),
        (numbers(1000, 2), numbers(50, 2), "numeric", "z"),
        (numbers(1000, 5), numbers(50, 5) + 5, "numeric", "ks"),  # distinct values counted over both sides
        (words(1000, 3), words(50, 3), "categorical", "chisquare"),
        (words(1000, 2), words(50, 2), "categorical", "z"),
        (words(1000, 2), words(50, 3), "categorical", "chisquare"),
        # above 1,000 rows: distances
        (numbers(1001, 6), numbers(50, 6), "numeric", "wasserstein"),
        (numbers(1001, 5), numbers(50, 5), "numeric", "jensenshannon"),
        (numbers(1001, 1), numbers(50, 1), "numeric", "jensenshannon"),
        (words(1001, 2), words(50, 2), "categorical", "jensenshannon"),
        (words(1001, 300), words(50, 3), "categorical", "jensenshannon"),
        # text: the text tests, by the same size rule
        (words(1000, 1000), words(50, 50), "text", "perc_text_content_drift"),
        (words(1001, 1001), words(50, 50), "text", "abs_text_content_drift"),
    ],
)
def test_default_test_per_column(reference: Any, current: Any, column_type: str, expected: str) -> None:
    assert default_stattest(reference, current, column_type) == expected


def test_the_reference_size_is_counted_without_missing_values() -> None:
    reference = np.concatenate([RNG.normal(size=1000), [np.nan, np.nan]])  # 1,002 rows, 1,000 values
    assert default_stattest(reference, RNG.normal(size=10), "numeric") == "ks"
    categories = np.concatenate([words(1000, 3), np.array([None] * 5, dtype=object)])
    assert default_stattest(categories, words(10, 3), "categorical") == "chisquare"


def test_an_unknown_column_type_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="unknown column type 'ordinal'"):
        default_stattest(numbers(10, 2), numbers(10, 2), "ordinal")
