"""Which type a column has, and which drift test it gets by default: Evidently 0.7's rules.

Column type (Evidently 0.7's default data definition, ``infer_column_type`` in
``evidently/core/datasets.py``), read off the current data when it is given (Evidently infers the
data definition from the current dataset), else off the reference:

- floating-point numbers: numeric;
- integers: categorical with at most 10 distinct values, numeric above (pyarrow integers with
  nulls are numeric: pandas, and so Evidently, reads them as floats);
- booleans (and pyarrow dictionary arrays, pandas' ``category``): categorical;
- strings: text when more than half of the non-missing values are distinct, categorical otherwise;
- anything else (dates, lists, objects that are not strings, a column with no value at all): no
  drift type; :func:`infer_column_type` refuses it and ``dataset_drift`` leaves it out, as
  Evidently's ``DataDriftPreset`` does.

Default test (Evidently 0.7's ``_get_default_stattest``), with the reference size counted after
dropping missing values and the number of distinct values counted over both sides together:

==========================  ===============================  ===================================
column                      reference <= 1,000 rows           reference > 1,000 rows
==========================  ===============================  ===================================
numeric, > 5 distinct       ``ks`` (p < 0.05)                ``wasserstein`` (normed, >= 0.1)
numeric, 3-5 distinct       ``chisquare`` (p < 0.05)         ``jensenshannon`` (>= 0.1)
numeric, <= 2 distinct      ``z`` (p < 0.05)                 ``jensenshannon`` (>= 0.1)
categorical, > 2 distinct   ``chisquare`` (p < 0.05)         ``jensenshannon`` (>= 0.1)
categorical, <= 2 distinct  ``z`` (p < 0.05)                 ``jensenshannon`` (>= 0.1)
text                        ``perc_text_content_drift``      ``abs_text_content_drift``
==========================  ===============================  ===================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prodloop.errors import ValidationFailed
from prodloop.monitoring.binning import (
    COLUMN_TYPES,
    Sample,
    as_sample,
    is_arrow,
    n_unique_together,
    retyped,
)

INTEGER_CARDINALITY_LIMIT = 10  # integer columns with at most this many distinct values are categorical
SMALL_REFERENCE_ROWS = 1000  # up to this many reference rows: p-value tests; above: distances
FEW_VALUES = 5  # numeric columns with at most this many distinct values are tested as categories


def _arrow_type(values: Any) -> str | None:
    import pyarrow as pa

    kind = values.type
    if pa.types.is_floating(kind):
        return "numeric"
    if pa.types.is_integer(kind):
        if values.null_count:
            return "numeric"  # pandas reads integers with nulls as floats, so Evidently sees numbers
        distinct = len(values.unique().drop_null())
        return "categorical" if distinct <= INTEGER_CARDINALITY_LIMIT else "numeric"
    if pa.types.is_boolean(kind) or pa.types.is_dictionary(kind):
        return "categorical"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        present = len(values) - values.null_count
        if present == 0:
            return None
        distinct = len(values.unique().drop_null())
        return "text" if distinct > present * 0.5 else "categorical"
    return None


def _first_present(values: np.ndarray) -> Any:
    for value in values:
        if not (value is None or (isinstance(value, float) and value != value)):
            return value
    return None


def typed_sample(values: Any) -> Sample | None:
    """``values`` as a :class:`Sample` of the type Evidently 0.7 infers for them (see the module
    docstring), or None for a column that Evidently leaves out of a drift report. Counting the
    values once serves both the type and the tests."""
    if isinstance(values, Sample):
        return values
    if is_arrow(values):
        column_type = _arrow_type(values)
        return None if column_type is None else Sample(values, column_type)
    array = np.asarray(values).reshape(-1)
    kind = array.dtype.kind
    if kind == "f":
        return Sample(array, "numeric")
    if kind in "iu":
        sample = Sample(array, "categorical")
        return (
            sample
            if sample.n_unique(INTEGER_CARDINALITY_LIMIT) <= INTEGER_CARDINALITY_LIMIT
            else retyped(sample, "numeric")
        )
    if kind == "b":
        return Sample(array, "categorical")
    if kind not in "OU":
        return None
    if kind == "O":
        # Evidently reads only the first and the last present value to decide that these are strings.
        first, last = _first_present(array), _first_present(array[::-1])
        if not (isinstance(first, str) and isinstance(last, str)):
            return None
    sample = Sample(array, "categorical")
    if sample.n == 0:
        return None
    return retyped(sample, "text") if sample.n_unique() > sample.n * 0.5 else sample


def infer_column_type(reference: Any, current: Any = None) -> str:
    """``"numeric"``, ``"categorical"`` or ``"text"``, as Evidently 0.7 infers it (from ``current``
    when given, else from ``reference``); a column of another kind raises ValidationFailed."""
    values = reference if current is None else current
    sample = typed_sample(values)
    if sample is None:
        dtype = str(getattr(values, "type", getattr(values, "dtype", type(values).__name__)))
        raise ValidationFailed(
            f"cannot tell whether a column of {dtype} values is numeric, categorical or text (it may "
            "hold dates, lists, objects that are not strings, or no value at all); give its type",
            {"dtype": dtype},
        )
    return sample.column_type


def default_stattest(reference: Any, current: Any, column_type: str) -> str:
    """The name of the test Evidently 0.7 picks for this column (see the table above)."""
    if column_type not in COLUMN_TYPES:
        raise ValidationFailed(
            f"unknown column type {column_type!r}; use one of: {', '.join(COLUMN_TYPES)}",
            {"column_type": column_type},
        )
    if column_type == "text":
        n_reference = as_sample(reference, "text").n
        return "abs_text_content_drift" if n_reference > SMALL_REFERENCE_ROWS else "perc_text_content_drift"
    ref = as_sample(reference, column_type)
    if ref.n > SMALL_REFERENCE_ROWS and column_type == "categorical":
        return "jensenshannon"
    n_values = n_unique_together(ref, as_sample(current, column_type), stop_above=FEW_VALUES)
    if ref.n > SMALL_REFERENCE_ROWS:
        return "wasserstein" if n_values > FEW_VALUES else "jensenshannon"
    if column_type == "numeric" and n_values > FEW_VALUES:
        return "ks"
    return "chisquare" if n_values > 2 else "z"


__all__ = ["default_stattest", "infer_column_type", "typed_sample"]
