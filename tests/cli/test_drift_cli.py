"""``prodloop drift REF CUR`` as a user runs it on two files: the JSON contract, the HTML report, the
same answer from CSV, Parquet and JSON Lines, exit codes for CI, and clear errors for bad input."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from typer.testing import CliRunner

from prodloop.cli import app, main

runner = CliRunner()
COLUMN_KEYS = {"column", "type", "test", "statistic", "p_value", "threshold", "drift"}
REPORT_KEYS = {"columns", "dataset_drift", "share_drifted", "drift_share", "n_reference", "n_current"}


def _rows(seed: int, n: int, shifted: bool) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    topics = ["refund for order", "password reset fails", "parcel is late", "card was charged twice"]
    if shifted:
        topics += ["vault lock keypad pairing", "vault firmware update stuck"]
    channel_shares = [0.6, 0.3, 0.1] if not shifted else [0.3, 0.6, 0.1]
    rows = []
    for _ in range(n):
        topic, ticket, sign_off = (
            rng.choice(topics),
            rng.integers(10**6),
            rng.choice(["hi", "thanks", "asap"]),
        )
        rows.append(
            {
                "latency_ms": round(float(rng.normal(300 if not shifted else 360, 40)), 1),
                "channel": str(rng.choice(["web", "app", "email"], p=channel_shares)),
                "message": f"{topic}, ticket {ticket} ({sign_off})",
            }
        )
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    reference, current = _rows(1, 240, False), _rows(2, 200, True)
    return {
        f"{side}{suffix}": _write(tmp_path / f"{side}{suffix}", rows)
        for side, rows in (("ref", reference), ("cur", current))
        for suffix in (".csv", ".parquet", ".jsonl")
    }


def drift(*args: str) -> Any:
    result = runner.invoke(app, ["drift", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_json_contract(files: dict[str, Path]) -> None:
    result = drift(str(files["ref.csv"]), str(files["cur.csv"]))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == REPORT_KEYS
    assert isinstance(report["dataset_drift"], bool) and isinstance(report["share_drifted"], float)
    assert (report["n_reference"], report["n_current"], report["drift_share"]) == (240, 200, 0.5)
    for column in report["columns"]:
        assert set(column) == COLUMN_KEYS
        assert isinstance(column["drift"], bool)
        assert isinstance(column["statistic"], float) and isinstance(column["threshold"], float)
        assert column["p_value"] is None or isinstance(column["p_value"], float)
    by_name = {c["column"]: c for c in report["columns"]}
    assert [c["column"] for c in report["columns"]] == ["latency_ms", "channel", "message"]
    assert {name: (c["type"], c["test"]) for name, c in by_name.items()} == {
        "latency_ms": ("numeric", "ks"),
        "channel": ("categorical", "chisquare"),
        "message": ("text", "perc_text_content_drift"),
    }
    assert all(c["drift"] for c in report["columns"]) and report["dataset_drift"] is True
    assert report["share_drifted"] == 1.0
    # The numbers are scipy's on the file's column.
    with files["ref.csv"].open() as f:
        ref = [float(r["latency_ms"]) for r in csv.DictReader(f)]
    with files["cur.csv"].open() as f:
        cur = [float(r["latency_ms"]) for r in csv.DictReader(f)]
    expected = stats.ks_2samp(ref, cur)
    assert by_name["latency_ms"]["statistic"] == pytest.approx(expected.statistic)
    assert by_name["latency_ms"]["p_value"] == pytest.approx(expected.pvalue)
    assert "dataset drift: 3 of 3 columns drifted" in " ".join(result.stderr.split())


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_parquet_and_jsonl_give_the_csv_answer(files: dict[str, Path], suffix: str) -> None:
    from_csv = json.loads(drift(str(files["ref.csv"]), str(files["cur.csv"])).stdout)
    other = drift(str(files[f"ref{suffix}"]), str(files[f"cur{suffix}"]))
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout) == from_csv
    mixed = drift(str(files["ref.csv"]), str(files[f"cur{suffix}"]))
    assert json.loads(mixed.stdout) == from_csv


def test_html_report(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = drift(str(files["ref.csv"]), str(files["cur.csv"]), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    charts = re.findall(r'<section class="card column"[^>]*data-column="([^"]*)"', page)
    assert sorted(charts) == ["channel", "latency_ms", "message"]
    assert page.count('<script type="application/json"') == 3
    assert not re.search(r"<script[^>]*\ssrc=", page) and "<link" not in page
    assert "ref.csv" in page and "cur.csv" in page
    assert "wrote" in result.stderr and str(out) in "".join(result.stderr.split())  # Rich may wrap the path


def test_html_without_output_goes_to_drift_report_html(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = drift(str(files["ref.csv"]), str(files["cur.csv"]), "--format", "html", "--columns", "channel")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "drift-report.html").read_text()
    assert re.findall(r'<section class="card column"[^>]*data-column="([^"]*)"', page) == ["channel"]


def test_json_to_a_file_and_chosen_tests(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = drift(
        str(files["ref.csv"]),
        str(files["cur.csv"]),
        "-o",
        str(out),
        "--columns",
        "latency_ms,channel",
        "--test",
        "psi",
        "--test",
        "latency_ms=wasserstein",
        "--threshold",
        "latency_ms=5",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [(c["column"], c["test"], c["threshold"], c["drift"]) for c in report["columns"]] == [
        ("latency_ms", "wasserstein", 5.0, False),
        ("channel", "psi", 0.1, True),
    ]
    assert report["share_drifted"] == 0.5 and report["dataset_drift"] is True


def test_fail_on_drift_is_exit_status_1_only_on_drift(files: dict[str, Path]) -> None:
    ref, cur = str(files["ref.csv"]), str(files["cur.csv"])
    assert drift(ref, cur, "--fail-on-drift").exit_code == 1
    assert drift(ref, ref, "--fail-on-drift").exit_code == 0
    assert drift(ref, cur).exit_code == 0
    assert (
        drift(ref, cur, "--fail-on-drift", "--drift-share", "1", "--threshold", "latency_ms=1e-300").exit_code
        == 0
    )


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["prodloop", "drift", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0), " ".join(capsys.readouterr().err.split())


def test_bad_inputs_are_clear_errors_with_status_2(
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = str(files["ref.csv"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    other = _write(tmp_path / "other.csv", [{"x": 1}])
    odd = tmp_path / "odd.dat"
    odd.write_text("a\n1\n")
    cases = [
        ((ref, str(tmp_path / "nope.csv")), "error: no file at"),
        ((ref, str(empty)), "empty.csv is empty"),
        ((ref, str(other)), "have no column in common that can be tested"),
        ((ref, str(odd)), "cannot tell the format of"),
        ((ref, ref, "--columns", "latency_ms,nope"), "has no column 'nope'"),
        ((ref, ref, "--test", "nosuch"), "unknown drift test 'nosuch'; use one of:"),
        (
            (ref, ref, "--test", "ks", "--columns", "channel"),
            "drift test 'ks' does not apply to a categorical column",
        ),
        ((ref, ref, "--threshold", "latency_ms=high"), "--threshold latency_ms=high: 'high' is not a number"),
        ((ref, ref, "--type", "text"), "--type 'text' names no column; write COLUMN=text"),
        ((ref, ref, "--test", "nope=ks"), "the tests names column 'nope', which is not compared"),
        ((ref, ref, "--drift-share", "0"), "drift_share must be in (0, 1]"),
    ]
    for args, message in cases:
        code, stderr = _main(monkeypatch, capsys, *args)
        assert code == 2, (args, stderr)
        assert message in stderr, (args, stderr)
        assert "Traceback" not in stderr
    code, stderr = _main(monkeypatch, capsys, ref, ref, "--format", "xml")
    assert code == 2 and "Invalid value for '--format'" in stderr and "'xml' is not one of" in stderr
