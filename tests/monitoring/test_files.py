"""Reading the files that ``prodloop drift`` compares: CSV, Parquet and JSON Lines give the same columns,
numbers keep the types pandas gives them (so Evidently's rules see the same data), and each bad input is a
clear error or a reported skip."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodloop.errors import InvalidRequest, NotFound, ValidationFailed
from prodloop.monitoring.files import file_drift, input_format, read_drift_inputs, read_table

ROWS: list[dict[str, Any]] = [
    {"amount": 12.5, "items": 1, "plan": "pro", "note": "card declined at checkout", "paid": True},
    {"amount": None, "items": 2, "plan": "free", "note": None, "paid": False},
    {"amount": 7.25, "items": 3, "plan": None, "note": "where is my parcel, it's late", "paid": None},
    {"amount": 30.0, "items": 2, "plan": "pro", "note": "refund please", "paid": True},
]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as a CSV, JSON Lines or Parquet file, by the extension of ``path``."""
    suffix = path.suffix
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix in (".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        names = list(rows[0])

        def cell(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, bool):
                return "true" if value else "false"
            text = str(value)
            return f'"{text}"' if "," in text else text

        path.write_text(
            ",".join(names) + "\n" + "".join(",".join(cell(r[n]) for n in names) + "\n" for r in rows)
        )
    return path


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return a.tolist() == b.tolist()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_parquet_and_jsonl_read_like_csv(tmp_path: Path, suffix: str) -> None:
    from_csv = read_table(write(tmp_path / "data.csv", ROWS))
    other = read_table(write(tmp_path / f"data{suffix}", ROWS))
    assert list(other) == list(from_csv) == ["amount", "items", "plan", "note", "paid"]
    for name in from_csv:
        assert same(other[name], from_csv[name]), name
    assert np.isnan(from_csv["amount"][1]) and from_csv["amount"].dtype == np.float64
    assert from_csv["items"].dtype == np.int64
    assert from_csv["plan"].tolist() == ["pro", "free", None, "pro"]
    assert from_csv["note"][2] == "where is my parcel, it's late"
    assert from_csv["paid"].tolist() == ["true", "false", None, "true"]


def test_numbers_keep_the_types_pandas_reads(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = write(tmp_path / "data.csv", ROWS)
    ours = read_table(path)
    theirs = pd.read_csv(path)
    for name in ("amount", "items", "plan", "note"):
        assert ours[name].dtype.kind == theirs[name].dtype.kind, name


def test_a_small_integer_column_is_categorical_as_in_evidently(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [{"items": int(rng.integers(1, 5)), "amount": float(rng.normal())} for _ in range(200)]
    write(tmp_path / "ref.csv", rows)
    write(tmp_path / "cur.csv", rows[::-1])
    report = file_drift(tmp_path / "ref.csv", tmp_path / "cur.csv").report
    assert {c.column: (c.type, c.result.test) for c in report.columns} == {
        "items": ("categorical", "chisquare"),
        "amount": ("numeric", "ks"),
    }


def test_compressed_files_and_a_named_format(tmp_path: Path) -> None:
    plain = write(tmp_path / "data.csv", ROWS)
    packed = tmp_path / "data.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    unnamed = tmp_path / "export.txt"
    unnamed.write_bytes(plain.read_bytes())
    expected = read_table(plain)
    for path, fmt in ((packed, None), (unnamed, "csv")):
        got = read_table(path, format=fmt)
        assert all(same(got[name], expected[name]) for name in expected)
    assert input_format("x.ndjson") == "jsonl" and input_format("x.PQ") == "parquet"
    assert input_format("x.tsv.zst") == "tsv"
    with pytest.raises(ValidationFailed, match=r"cannot tell the format of .*export\.txt from its name"):
        read_table(unnamed)
    with pytest.raises(ValidationFailed, match="input format 'xlsx' is not one of"):
        read_table(plain, format="xlsx")


def test_columns_on_one_side_or_of_other_kinds_are_skipped_and_named(tmp_path: Path) -> None:
    reference = [
        {"a": 1.5, "b": "x", "when": "2024-01-02", "gone": 1, "mixed": 3, "empty": None, "blank": "q"},
        {"a": 2.5, "b": "y", "when": "2024-01-03", "gone": 2, "mixed": 4, "empty": None, "blank": "r"},
    ]
    current = [
        {"a": 1.0, "b": "x", "when": "2024-02-01", "new": 1, "mixed": "n/a", "empty": None, "blank": None},
        {"a": 3.0, "b": "z", "when": "2024-02-02", "new": 2, "mixed": "7", "empty": None, "blank": None},
    ]
    inputs = read_drift_inputs(write(tmp_path / "ref.csv", reference), write(tmp_path / "cur.jsonl", current))
    assert inputs.columns == ["a", "b"]
    assert (inputs.n_reference, inputs.n_current) == (2, 2)
    assert inputs.skipped == {
        "when": "dates and times (date32[day]) are not tested; convert the column to numbers to test it",
        "gone": "only in the reference file ref.csv",
        "mixed": "holds numeric values in the reference file and string values in the current file; "
        "make the two files agree to test it",
        "empty": "empty in both files",
        "blank": "no values in the current file cur.jsonl (all missing)",
        "new": "only in the current file cur.jsonl",
    }


def test_a_column_empty_in_one_file_takes_the_other_files_type(tmp_path: Path) -> None:
    write(tmp_path / "ref.csv", [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    write(tmp_path / "cur.csv", [{"a": 3, "b": None}, {"a": 4, "b": "y"}])
    inputs = read_drift_inputs(tmp_path / "ref.csv", tmp_path / "cur.csv")
    assert inputs.current["b"].tolist() == [None, "y"]


def test_picked_columns(tmp_path: Path) -> None:
    write(tmp_path / "ref.parquet", ROWS)
    write(tmp_path / "cur.parquet", ROWS)
    inputs = read_drift_inputs(tmp_path / "ref.parquet", tmp_path / "cur.parquet", columns=["plan", "amount"])
    assert inputs.columns == ["plan", "amount"] and inputs.skipped == {}
    with pytest.raises(
        ValidationFailed, match=r"has no column 'nope' \(the reference file has: amount, items"
    ):
        read_drift_inputs(tmp_path / "ref.parquet", tmp_path / "cur.parquet", columns=["amount", "nope"])


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    good = write(tmp_path / "good.csv", ROWS)
    with pytest.raises(NotFound, match=r"no file at .*missing\.csv"):
        read_drift_inputs(good, tmp_path / "missing.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(InvalidRequest, match=r"cannot read .*broken\.parquet as PARQUET"):
        read_drift_inputs(good, broken)
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(InvalidRequest, match=r"lines\.jsonl as JSONL \(prodloop reads JSON Lines"):
        read_drift_inputs(good, lines)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValidationFailed, match=r"empty\.csv is empty"):
        read_drift_inputs(good, empty)
    header = tmp_path / "header.csv"
    header.write_text("amount,plan\n")
    with pytest.raises(ValidationFailed, match=r"header\.csv has no rows"):
        read_drift_inputs(good, header)
    other = write(tmp_path / "other.csv", [{"x": 1, "y": "a"}])
    with pytest.raises(ValidationFailed, match="have no column in common that can be tested") as caught:
        read_drift_inputs(good, other)
    assert "reference: amount, items, plan, note, paid; current: x, y" in caught.value.message
    with pytest.raises(InvalidRequest, match="is a folder"):
        read_drift_inputs(good, tmp_path)


def test_file_drift_applies_tests_and_thresholds_per_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref = [{"x": float(v), "y": float(w)} for v, w in rng.normal(size=(300, 2))]
    cur = [{"x": float(v) + 0.3, "y": float(w)} for v, w in rng.normal(size=(300, 2))]
    write(tmp_path / "ref.csv", ref)
    write(tmp_path / "cur.csv", cur)
    result = file_drift(
        tmp_path / "ref.csv",
        tmp_path / "cur.csv",
        test="wasserstein",
        column_tests={"y": "psi"},
        column_thresholds={"x": 0.5},
    )
    by_name = {c.column: c.result for c in result.report.columns}
    assert (by_name["x"].test, by_name["x"].threshold) == ("wasserstein", 0.5)
    assert (by_name["y"].test, by_name["y"].threshold) == ("psi", 0.1)
    assert math.isclose(result.report.share_drifted, sum(r.drift for r in by_name.values()) / 2)
    with pytest.raises(ValidationFailed, match="the tests names column 'z', which is not compared"):
        file_drift(tmp_path / "ref.csv", tmp_path / "cur.csv", column_tests={"z": "ks"})
