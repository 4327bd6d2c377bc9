"""Drift of 1,000,000 reference and 1,000,000 current rows x 20 columns: prodloop against Evidently.

    .venv/bin/python benchmarks/drift.py                  # full size (Evidently takes over a minute)
    .venv/bin/python benchmarks/drift.py --rows 100000    # a quick run
    .venv/bin/python benchmarks/drift.py --skip-evidently # prodloop alone

The data (seeded): 10 numeric columns (normal, lognormal, uniform, integers; shifts from none to
large; some with missing values) and 10 categorical ones (5 to 1,000 categories as strings; shifts
from none to large, a category new in the current data, missing values). Both sides are written once
to Parquet; each tool then reads them as its users would and is timed from data in memory to
verdicts:

- prodloop: ``pyarrow.parquet.read_table`` → ``{column: numpy array}`` (strings as object arrays,
  as ``prodloop drift`` reads files) → ``dataset_drift``; also with the pyarrow arrays handed over
  as they are (no conversion to Python strings);
- Evidently 0.7.23, in its own environment (``benchmarks/evidently_env.py``), in a subprocess:
  ``pandas.read_parquet`` → ``Report([DataDriftPreset()], include_tests=True).run(current, reference)``.

It prints both times, the ratio, and whether every column gets the same test and verdict, and writes
the figures to ``benchmarks/results/drift.json``. The target (issue 4, §7): at least 10x faster than
Evidently, same verdict on every column. The machine is shared, so figures are indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGET_RATIO = 10.0


def _categories(count: int) -> np.ndarray:
    return np.array([f"category-{i:04d}" for i in range(count)], dtype=object)


def _shares(rng: np.random.Generator, count: int) -> np.ndarray:
    weights = rng.gamma(1.0, size=count)
    return weights / weights.sum()


def make_data(rows: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reference and current columns: 10 numeric, 10 categorical, some drifted."""
    rng = np.random.default_rng(seed)
    reference: dict[str, np.ndarray] = {}
    current: dict[str, np.ndarray] = {}
    numeric = [  # (name, reference maker, current maker)
        ("latency_ms", lambda n: rng.lognormal(5, 0.5, n), lambda n: rng.lognormal(5, 0.5, n)),
        ("tokens_in", lambda n: rng.normal(800, 200, n), lambda n: rng.normal(830, 200, n)),
        ("tokens_out", lambda n: rng.normal(300, 80, n), lambda n: rng.normal(340, 80, n)),
        ("cost_usd", lambda n: rng.gamma(2, 0.01, n), lambda n: rng.gamma(2, 0.01, n)),
        ("score", lambda n: rng.uniform(0, 1, n), lambda n: rng.uniform(0.05, 1.05, n)),
        ("turns", lambda n: rng.poisson(4, n).astype(float), lambda n: rng.poisson(4, n).astype(float)),
        (
            "retrieved_docs",
            lambda n: rng.poisson(8, n).astype(float),
            lambda n: rng.poisson(11, n).astype(float),
        ),
        ("temperature", lambda n: rng.normal(0.7, 0.1, n), lambda n: rng.normal(0.7, 0.1, n)),
        ("embedding_norm", lambda n: rng.normal(1, 0.05, n), lambda n: rng.normal(1.02, 0.05, n)),
        ("age_days", lambda n: rng.exponential(30, n), lambda n: rng.exponential(45, n)),
    ]
    for name, make_ref, make_cur in numeric:
        reference[name], current[name] = make_ref(rows), make_cur(rows)
    for name in ("tokens_in", "cost_usd"):  # missing values on both sides
        for side in (reference, current):
            side[name][rng.random(rows) < 0.02] = np.nan

    categorical = [  # (name, categories, how the current shares move)
        ("model", 5, 0.0),
        ("region", 12, 0.0),
        ("intent", 40, 0.6),
        ("language", 25, 0.05),
        ("customer_tier", 4, 0.3),
        ("product", 200, 0.0),
        ("channel", 6, 0.0),
        ("error_code", 50, 0.8),
        ("page", 1000, 0.0),
        ("release", 8, 0.0),
    ]
    for name, count, move in categorical:
        values = _categories(count)
        p_ref = _shares(rng, count)
        p_cur = (1 - move) * p_ref + move * _shares(rng, count) if move else p_ref
        reference[name] = values[rng.choice(count, rows, p=p_ref)]
        current[name] = values[rng.choice(count, rows, p=p_cur)]
    current["release"][: rows // 20] = "category-new"  # a release seen only in the current data
    for name in ("region", "language"):  # missing values on both sides
        for side in (reference, current):
            side[name][rng.random(rows) < 0.01] = None
    return reference, current


def write_parquet(columns: dict[str, np.ndarray], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            name: pa.array(values, type=pa.string() if values.dtype == object else None, from_pandas=True)
            for name, values in columns.items()
        }
    )
    pq.write_table(table, path)


def _read_for_prodloop(path: Path, as_arrow: bool) -> dict[str, Any]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if as_arrow:
        return {name: table.column(name) for name in table.column_names}
    return {name: table.column(name).to_numpy() for name in table.column_names}


def _progress(done: int, total: int) -> None:
    print(f"\r  prodloop: {done}/{total} columns", end="", file=sys.stderr, flush=True)


def run_prodloop(reference_path: Path, current_path: Path, as_arrow: bool) -> dict[str, Any]:
    from prodloop.monitoring.drift import dataset_drift

    started = time.perf_counter()
    reference = _read_for_prodloop(reference_path, as_arrow)
    current = _read_for_prodloop(current_path, as_arrow)
    read_s = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    report = dataset_drift(reference, current, progress=_progress)
    drift_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    print(file=sys.stderr)
    return {
        "read_s": read_s,
        "drift_s": drift_s,
        "cpu_s": cpu_s,
        "columns": {
            c.column: {
                "type": c.type,
                "test": c.result.test,
                "drift": c.result.drift,
                "score": c.result.p_value if c.result.p_value is not None else c.result.statistic,
            }
            for c in report.columns
        },
        "dataset_drift": report.dataset_drift,
    }


def run_evidently_inside(reference_path: str, current_path: str) -> dict[str, Any]:
    """Runs in Evidently's environment (no prodloop there)."""
    import pandas as pd
    from evidently import Report
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
    from evidently.presets import DataDriftPreset

    names = {
        t.display_name: name for name, by_type in _registered_stat_tests.items() for t in by_type.values()
    }
    started = time.perf_counter()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    read_s = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
    drift_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    result = snapshot.dict()
    verdicts = {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
        for t in result["tests"]
        if t["id"] == "drift"
    }
    columns = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = {
                "test": names[config["method"]],
                "drift": verdicts[config["column"]],
                "score": metric["value"],
            }
    dataset = next(t["status"] == "FAIL" for t in result["tests"] if t["id"] == "lt")
    return {
        "read_s": read_s,
        "drift_s": drift_s,
        "cpu_s": cpu_s,
        "columns": columns,
        "dataset_drift": dataset,
    }


def run_evidently(reference_path: Path, current_path: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import evidently_env

    finished = evidently_env.run(Path(__file__), "--inside-evidently", str(reference_path), str(current_path))
    return json.loads(finished.stdout.strip().splitlines()[-1])


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Columns where the test or the verdict differ (empty when all agree)."""
    problems = []
    for name in sorted(set(ours["columns"]) | set(theirs["columns"])):
        mine, other = ours["columns"].get(name), theirs["columns"].get(name)
        if mine is None or other is None:
            problems.append(f"{name}: only in {'Evidently' if mine is None else 'prodloop'}")
        elif (mine["test"], mine["drift"]) != (other["test"], other["drift"]):
            problems.append(
                f"{name}: prodloop {mine['test']} {mine['drift']}, Evidently {other['test']} {other['drift']}"
            )
    if ours["dataset_drift"] != theirs["dataset_drift"]:
        problems.append("dataset verdicts differ")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows on each side (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--inside-evidently", nargs=2, metavar=("REFERENCE", "CURRENT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.inside_evidently:
        print(json.dumps(run_evidently_inside(*args.inside_evidently)))
        return 0

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="prodloop-drift-bench-") as tmp:
        reference_path, current_path = Path(tmp) / "reference.parquet", Path(tmp) / "current.parquet"
        started = time.perf_counter()
        reference, current = make_data(args.rows, args.seed)
        write_parquet(reference, reference_path)
        write_parquet(current, current_path)
        del reference, current
        print(
            f"data: {args.rows:,} + {args.rows:,} rows x 20 columns, made and written in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        ours = run_prodloop(reference_path, current_path, as_arrow=False)
        ours_arrow = run_prodloop(reference_path, current_path, as_arrow=True)
        theirs = None if args.skip_evidently else run_evidently(reference_path, current_path)

    print(f"\nrows per side: {args.rows:,}; columns: 20 (10 numeric, 10 categorical); cpus: {os.cpu_count()}")
    load_after = os.getloadavg()[0]
    print(f"load average before / after: {load_before:.1f} / {load_after:.1f} (other work on the machine)")
    print(f"{'':34} {'read (s)':>9} {'drift (s)':>10} {'drift CPU (s)':>14}")
    for label, run in (("prodloop, numpy arrays", ours), ("prodloop, pyarrow arrays", ours_arrow)):
        print(f"{label:34} {run['read_s']:9.2f} {run['drift_s']:10.2f} {run['cpu_s']:14.2f}")
    figures: dict[str, Any] = {
        "rows": args.rows,
        "load_average": [load_before, load_after],
        "prodloop": ours,
        "prodloop_arrow": ours_arrow,
    }
    status = 0
    if theirs is not None:
        label = "Evidently 0.7.23 DataDriftPreset"
        print(f"{label:34} {theirs['read_s']:9.2f} {theirs['drift_s']:10.2f} {theirs['cpu_s']:14.2f}")
        ratio, ratio_arrow = theirs["drift_s"] / ours["drift_s"], theirs["drift_s"] / ours_arrow["drift_s"]
        problems = compare(ours, theirs) + compare(ours_arrow, theirs)
        print(
            f"\nratio Evidently / prodloop: {ratio:.1f}x (numpy arrays), "
            f"{ratio_arrow:.1f}x (pyarrow arrays); target {TARGET_RATIO:.0f}x"
        )
        print(f"CPU seconds, Evidently / prodloop: {theirs['cpu_s'] / ours['cpu_s']:.1f}x (numpy arrays)")
        print("same test and verdict on every column: " + ("yes" if not problems else "NO"))
        for problem in problems:
            print(f"  {problem}")
        print("\ncolumn               test           prodloop   Evidently  drift")
        for name, mine in ours["columns"].items():
            other = theirs["columns"].get(name, {})
            their_score = other.get("score", float("nan"))
            print(f"{name:20} {mine['test']:14} {mine['score']:10.4g} {their_score:10.4g}  {mine['drift']}")
        figures.update(
            evidently=theirs,
            ratio=ratio,
            cpu_ratio=theirs["cpu_s"] / ours["cpu_s"],
            ratio_arrow=ratio_arrow,
            same_verdicts=not problems,
        )
        status = 0 if not problems else 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drift.json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
