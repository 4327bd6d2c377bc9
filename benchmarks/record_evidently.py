"""Records what Evidently 0.7.23 says about the parity cases, for ``test_evidently_parity.py``.

Rerun it after changing the cases (``tests/monitoring/data/evidently_cases.py``):

    .venv/bin/python benchmarks/record_evidently.py

It makes Evidently's own environment when needed (``benchmarks/evidently_env.py``), runs itself
there with ``--inside``, and writes ``tests/monitoring/data/evidently_0_7_23.json``. Inside, each
case goes through Evidently's public API as a user would run it::

    Report([DataDriftPreset(method=..., num_method=..., cat_method=...,
                            per_column_threshold=..., drift_share=...)], include_tests=True)
        .run(current_dataframe, reference_dataframe)

and for each column the recording keeps the column type (Evidently's default data definition of the
current data), the test (Evidently's registry name), the drift score (the p-value for p-value tests,
the statistic for distances), the threshold and the verdict (the column's test status), with a
checksum of the inputs; for each case the share of drifted columns and the dataset verdict. A last
section records the types Evidently infers for a few more columns (text among them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "monitoring" / "data" / "evidently_0_7_23.json"
FORMAT_VERSION = 1


def _inside() -> dict[str, Any]:
    """Runs in Evidently's environment: every case through Evidently, as JSON-ready records."""
    import numpy as np
    import pandas as pd
    import scipy
    import sklearn
    from evidently import Dataset, Report
    from evidently import __version__ as evidently_version
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
    from evidently.presets import DataDriftPreset

    sys.path.insert(0, str(ROOT))
    from tests.monitoring.data.evidently_cases import cases, checksum, type_columns

    by_display_name = {
        test.display_name: name
        for name, by_type in _registered_stat_tests.items()
        for test in by_type.values()
    }

    def registry_name(method: str) -> str:
        return method if method in _registered_stat_tests else by_display_name[method]

    records = []
    for case in cases():
        reference = pd.DataFrame(case.reference)
        current = pd.DataFrame(case.current)
        preset = DataDriftPreset(
            method=case.method,
            num_method=case.num_method,
            cat_method=case.cat_method,
            per_column_threshold=case.per_column_threshold or None,
            drift_share=case.drift_share,
        )
        snapshot = Report([preset], include_tests=True).run(current, reference).dict()
        definition = Dataset.from_pandas(current).data_definition
        verdicts = {
            test["metric_config"]["params"]["column"]: test["status"] == "FAIL"
            for test in snapshot["tests"]
            if test["id"] == "drift"
        }
        columns, share, dataset_drift = [], None, None
        for metric in snapshot["metrics"]:
            config = metric["config"]
            if config["type"].endswith("DriftedColumnsCount"):
                share = metric["value"]["share"]
            elif config["type"].endswith("ValueDrift"):
                name = config["column"]
                column_type = definition.get_column_type(name).value
                requested = {"num": case.num_method, "cat": case.cat_method}.get(column_type) or case.method
                columns.append(
                    {
                        "column": name,
                        "type": {"num": "numeric", "cat": "categorical", "text": "text"}[column_type],
                        "requested_test": requested,
                        "requested_threshold": case.per_column_threshold.get(name),
                        "test": registry_name(config["method"]),
                        "score": float(metric["value"]),
                        "threshold": float(config["threshold"]),
                        "drift": verdicts[name],
                    }
                )
        for test in snapshot["tests"]:
            if test["id"] == "lt":
                dataset_drift = test["status"] == "FAIL"  # "share of drifted columns < drift_share" failed
        records.append(
            {
                "name": case.name,
                "description": case.description,
                "drift_share": case.drift_share,
                "n_reference": len(reference),
                "n_current": len(current),
                "checksums": {
                    "reference": {k: checksum(v) for k, v in case.reference.items()},
                    "current": {k: checksum(v) for k, v in case.current.items()},
                },
                "columns": columns,
                "share_drifted": share,
                "dataset_drift": dataset_drift,
            }
        )
    type_data = type_columns()
    types = {
        name: Dataset.from_pandas(pd.DataFrame({name: values})).data_definition.get_column_type(name).value
        for name, values in type_data.items()
    }
    return {
        "format_version": FORMAT_VERSION,
        "recorded_with": {
            "evidently": evidently_version,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "how": "benchmarks/record_evidently.py: Report([DataDriftPreset(...)], include_tests=True)",
        "cases": records,
        "types": {"checksums": {k: checksum(v) for k, v in type_data.items()}, "inferred": types},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inside", action="store_true", help="(internal) run in Evidently's environment")
    parser.add_argument("--output", type=Path, default=FIXTURE)
    args = parser.parse_args()
    if args.inside:
        json.dump(_inside(), sys.stdout)
        return 0
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import evidently_env

    finished = evidently_env.run(Path(__file__), "--inside", timeout=1800)
    recording = json.loads(finished.stdout)
    args.output.write_text(json.dumps(recording, indent=1, sort_keys=False) + "\n")
    n_columns = sum(len(case["columns"]) for case in recording["cases"])
    print(f"recorded {len(recording['cases'])} cases, {n_columns} column verdicts -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
