"""Read the two files that ``prodloop drift`` compares: CSV, Parquet or JSON Lines, into columns of numpy
arrays that :func:`prodloop.monitoring.drift.dataset_drift` takes.

The format comes from the file's extension (``.csv``, ``.tsv``, ``.parquet``/``.pq``,
``.jsonl``/``.ndjson``/``.json``, each optionally compressed: ``.gz``, ``.bz2``, ``.zst``, ``.lz4``) unless it
is named. Columns become:

- numbers: float64 arrays with NaN for missing values, except integer columns without a missing value,
  which stay int64 (what pandas reads, and so what Evidently sees: an integer column with at most 10
  distinct values is categorical, see :mod:`prodloop.monitoring.selection`);
- strings: object arrays of str, missing values None (in CSV an empty field is missing too);
- booleans: object arrays of ``"true"`` / ``"false"`` (a category each), missing values None.

Dates and times, lists, structs and binary columns are not tested: they are left out and reported, and so
is a column that is in only one of the two files or holds numbers in one file and text in the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prodloop.errors import InvalidRequest, NotFound, ValidationFailed

if TYPE_CHECKING:
    from prodloop.monitoring.drift import DriftReport

FORMATS = ("csv", "tsv", "parquet", "jsonl")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")


@dataclass(frozen=True)
class DriftInputs:
    """The columns to compare, read from a reference and a current file.

    ``columns`` are those both files have (in the reference file's order) and that can be tested;
    ``skipped`` says, for each column left out, why.
    """

    reference: dict[str, np.ndarray]
    current: dict[str, np.ndarray]
    columns: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    n_reference: int = 0
    n_current: int = 0


def input_format(path: str | Path, format: str | None = None) -> str:
    """The format of ``path``: ``format`` when given, else what its extension says."""
    if format is not None:
        name = format.lower().lstrip(".")
        name = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet"}.get(name, name)
        if name not in FORMATS:
            raise ValidationFailed(f"input format {format!r} is not one of {', '.join(FORMATS)}")
        return name
    suffixes = [s.lower() for s in Path(path).suffixes]
    while suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes.pop()
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise ValidationFailed(
        f"cannot tell the format of {path} from its name; name it .csv, .tsv, .parquet or .jsonl, "
        f"or name its format (csv, tsv, parquet, jsonl; --input-format in the CLI)"
    )


def _read_arrow(path: Path, format: str, columns: Sequence[str] | None) -> tuple[Any, list[str]]:
    """The table (for Parquet, only the picked ``columns`` it has) and the names of all its columns."""
    import pyarrow as pa

    try:
        if format in ("csv", "tsv"):
            from pyarrow import csv

            table = csv.read_csv(
                path,
                parse_options=csv.ParseOptions(delimiter="\t" if format == "tsv" else ","),
                convert_options=csv.ConvertOptions(strings_can_be_null=True),
            )
            return table, list(table.column_names)
        if format == "jsonl":
            from pyarrow import json

            table = json.read_json(path)
            return table, list(table.column_names)
        import pyarrow.parquet as pq

        names = list(pq.read_schema(path).names)
        if columns:  # read only the picked columns that the file has (the others are reported later)
            return pq.read_table(path, columns=[c for c in dict.fromkeys(columns) if c in names]), names
        return pq.read_table(path), names
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Empty CSV file" in message:
            raise ValidationFailed(f"{path} is empty: it has no header and no rows") from None
        hint = " (prodloop reads JSON Lines: one object per line)" if format == "jsonl" else ""
        raise InvalidRequest(f"cannot read {path} as {format.upper()}{hint}: {message}") from None


def _kind(arrow_type: Any) -> str | None:
    """numeric, string, boolean, null, or None for a column that cannot be tested."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_null(t):
        return "null"
    return None


def _untested_reason(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_temporal(arrow_type):
        return f"dates and times ({arrow_type}) are not tested; convert the column to numbers to test it"
    return f"values of type {arrow_type} are not tested (numbers, text and booleans are)"


def _array(column: Any, kind: str) -> np.ndarray:
    """One column as numpy (see the module docstring): numbers, or an object array of str and None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if kind == "numeric":
        if pa.types.is_integer(column.type) and column.null_count == 0:
            return np.asarray(pc.cast(column, pa.int64()).to_numpy(), dtype=np.int64).copy()
        return np.asarray(
            pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        ).copy()
    if kind == "boolean":
        column = pc.if_else(column, "true", "false")  # nulls stay null
    values = column.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=object)


@dataclass
class _Table:
    path: Path
    rows: int
    kinds: dict[str, str | None]
    types: dict[str, Any]
    arrow: Any
    names: list[str]  # every column of the file, read or not


def _open(path: str | Path, format: str | None, columns: Sequence[str] | None) -> _Table:
    path = Path(path)
    if not path.exists():
        raise NotFound(f"no file at {path}; check the path")
    if path.is_dir():
        raise InvalidRequest(f"{path} is a folder, not a file")
    table, all_names = _read_arrow(path, input_format(path, format), columns)
    names = list(table.column_names)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValidationFailed(f"{path} has more than one column named {', '.join(map(repr, twice))}")
    if table.num_rows == 0:
        raise ValidationFailed(f"{path} has no rows; compare files with data")
    kinds = {name: _kind(table.schema.field(name).type) for name in names}
    types = {name: table.schema.field(name).type for name in names}
    return _Table(path, table.num_rows, kinds, types, table, all_names)


def _empty_side(ref: _Table, cur: _Table, name: str) -> str | None:
    for table, side in ((ref, "reference file"), (cur, "current file")):
        column = table.arrow.column(name)
        if column.null_count == len(column) or (table.kinds[name] == "numeric" and not _has_finite(column)):
            return f"{side} {table.path.name}"
    return None


def _has_finite(column: Any) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_floating(column.type):
        return column.null_count < len(column)
    return bool(pc.any(pc.is_finite(column)).as_py())


def read_table(path: str | Path, *, format: str | None = None) -> dict[str, np.ndarray]:
    """The testable columns of one file as ``{column: array}`` (see the module docstring)."""
    table = _open(path, format, None)
    return {
        name: np.full(table.rows, None, dtype=object)
        if kind == "null"
        else _array(table.arrow.column(name), kind)
        for name, kind in table.kinds.items()
        if kind is not None
    }


def read_drift_inputs(
    reference: str | Path,
    current: str | Path,
    *,
    format: str | None = None,
    columns: Sequence[str] | None = None,
) -> DriftInputs:
    """The columns both files share, ready for ``dataset_drift``; ``columns`` picks some of them.

    Columns that only one file has, that cannot be tested, or whose kind differs between the files
    (numbers in one, text in the other) are left out and named in ``skipped`` with the reason. Raises
    :class:`~prodloop.errors.NotFound` for a missing file, :class:`~prodloop.errors.InvalidRequest` for
    one that cannot be read, and :class:`~prodloop.errors.ValidationFailed` for an empty file, no
    column in common, or a picked column that a file lacks.
    """
    ref = _open(reference, format, columns)
    cur = _open(current, format, columns)
    if columns:
        missing = {
            str(t.path): [c for c in columns if c not in t.kinds]
            for t in (ref, cur)
            if set(columns) - set(t.kinds)
        }
        if missing:
            where = "; ".join(
                f"{path} has no column {', '.join(map(repr, names))}" for path, names in missing.items()
            )
            raise ValidationFailed(
                f"{where} (the reference file has: {', '.join(ref.names)})", {"missing": missing}
            )
    wanted = list(dict.fromkeys(columns)) if columns else list(ref.kinds)
    skipped: dict[str, str] = {}
    chosen: list[str] = []
    for name in wanted:
        if name not in cur.kinds:
            skipped[name] = f"only in the reference file {ref.path.name}"
            continue
        kinds = {ref.kinds[name], cur.kinds[name]}
        if None in kinds:
            untested = ref.types[name] if ref.kinds[name] is None else cur.types[name]
            skipped[name] = _untested_reason(untested)
        elif kinds == {"null"}:
            skipped[name] = "empty in both files"
        elif len(kinds - {"null"}) > 1:
            skipped[name] = (
                f"holds {ref.kinds[name]} values in the reference file and {cur.kinds[name]} values in the "
                f"current file; make the two files agree to test it"
            )
        elif (side := _empty_side(ref, cur, name)) is not None:
            skipped[name] = f"no values in the {side} (all missing)"
        else:
            chosen.append(name)
    if not columns:
        for name in cur.kinds:
            if name not in ref.kinds:
                skipped[name] = f"only in the current file {cur.path.name}"
    if not chosen:
        raise ValidationFailed(
            f"{ref.path} and {cur.path} have no column in common that can be tested "
            f"(reference: {', '.join(ref.kinds) or 'none'}; current: {', '.join(cur.kinds) or 'none'})",
            {"skipped": skipped},
        )
    read: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
    for name in chosen:
        # A column with no value in one file takes the other file's kind (all NaN, or all None).
        kind = str(next(k for k in (ref.kinds[name], cur.kinds[name]) if k != "null"))
        for table, out in zip((ref, cur), read, strict=True):
            if table.kinds[name] != "null":
                out[name] = _array(table.arrow.column(name), kind)
            elif kind == "numeric":
                out[name] = np.full(table.rows, np.nan)
            else:
                out[name] = np.full(table.rows, None, dtype=object)
    return DriftInputs(read[0], read[1], chosen, skipped, ref.rows, cur.rows)


@dataclass(frozen=True)
class FileDrift:
    """What ``prodloop drift`` computed: the columns it read and the drift report over them."""

    inputs: DriftInputs
    report: DriftReport


def _per_column(
    every: Any, per_column: Mapping[str, Any] | None, inputs: DriftInputs, what: str
) -> Any | Mapping[str, Any] | None:
    """One value for all columns, or a mapping when some columns have their own."""
    per_column = dict(per_column or {})
    for name in per_column:
        if name not in inputs.columns:
            why = f" ({inputs.skipped[name]})" if name in inputs.skipped else ""
            raise ValidationFailed(
                f"{what} names column {name!r}, which is not compared{why}; "
                f"the compared columns are: {', '.join(inputs.columns)}"
            )
    if not per_column:
        return every
    if every is None:
        return per_column
    return {name: per_column.get(name, every) for name in inputs.columns}


def file_drift(
    reference: str | Path,
    current: str | Path,
    *,
    format: str | None = None,
    columns: Sequence[str] | None = None,
    test: str | None = None,
    column_tests: Mapping[str, str] | None = None,
    threshold: float | None = None,
    column_thresholds: Mapping[str, float] | None = None,
    column_types: Mapping[str, str] | None = None,
    drift_share: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> FileDrift:
    """Drift between two files, column by column (what ``prodloop drift REF CUR`` runs).

    ``test`` and ``threshold`` apply to every column, ``column_tests`` and ``column_thresholds`` to the
    columns they name (and win over the former); ``column_types`` overrides the inferred type of a column
    ("numeric", "categorical" or "text"). Without them each column gets the default test of its type and
    size (see :mod:`prodloop.monitoring.selection`).
    """
    from prodloop.monitoring.drift import dataset_drift

    inputs = read_drift_inputs(reference, current, format=format, columns=columns)
    report = dataset_drift(
        inputs.reference,
        inputs.current,
        columns=inputs.columns,
        column_types=_per_column(None, column_types, inputs, "the column types") or None,
        tests=_per_column(test, column_tests, inputs, "the tests"),
        thresholds=_per_column(threshold, column_thresholds, inputs, "the thresholds"),
        drift_share=drift_share,
        progress=progress,
    )
    return FileDrift(inputs, report)
