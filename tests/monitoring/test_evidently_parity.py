"""prodloop gives Evidently 0.7.23's verdicts on the same data.

The inputs are rebuilt from scikit-learn's bundled data sets and seeded generators
(``data/evidently_cases.py``); what Evidently said about them was recorded by
``benchmarks/record_evidently.py`` into ``data/evidently_0_7_23.json``. For every column the type,
the test picked (or asked for), the threshold and the verdict must be the same, and the score (the
p-value of a p-value test, the statistic of a distance) equal to a tight tolerance.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from prodloop.monitoring.drift import dataset_drift
from prodloop.monitoring.selection import infer_column_type, typed_sample
from prodloop.monitoring.stattests import get_stattest
from tests.monitoring.data.evidently_cases import Case, cases, checksum, type_columns

FIXTURE = Path(__file__).parent / "data" / "evidently_0_7_23.json"
TYPE_NAMES = {"num": "numeric", "cat": "categorical", "text": "text"}


@cache
def recording() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


@cache
def cases_by_name() -> dict[str, Case]:
    return {case.name: case for case in cases()}


def _recorded_names() -> list[str]:
    return [case["name"] for case in recording()["cases"]]


def _same_score(ours: float | None, theirs: float) -> bool:
    assert ours is not None
    if math.isinf(ours) or math.isinf(theirs):
        return ours == theirs
    # Evidently's z test takes 2 * (1 - cdf), statsmodels 2 * sf: equal until 1 - cdf rounds to 0.
    return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)


def test_the_recording_covers_both_sizes_every_test_and_every_type() -> None:
    columns = [column for case in recording()["cases"] for column in case["columns"]]
    tests = {column["test"] for column in columns}
    assert tests == {"ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi", "hellinger", "kl_div"}
    assert {column["type"] for column in columns} == {"numeric", "categorical"}
    sizes = {case["n_reference"] > 1000 for case in recording()["cases"]}
    assert sizes == {True, False}
    assert {column["drift"] for column in columns} == {True, False}
    assert {case["dataset_drift"] for case in recording()["cases"]} == {True, False}


@pytest.mark.parametrize("name", _recorded_names())
def test_same_verdicts_as_evidently(name: str) -> None:
    recorded = next(case for case in recording()["cases"] if case["name"] == name)
    case = cases_by_name()[name]
    for side in ("reference", "current"):
        rebuilt = {column: checksum(values) for column, values in getattr(case, side).items()}
        assert rebuilt == recorded["checksums"][side], f"the {side} inputs differ from the recorded ones"

    tests = {c["column"]: c["requested_test"] for c in recorded["columns"] if c["requested_test"]}
    thresholds = {
        c["column"]: c["requested_threshold"] for c in recorded["columns"] if c["requested_threshold"]
    }
    report = dataset_drift(
        case.reference, case.current, tests=tests, thresholds=thresholds, drift_share=recorded["drift_share"]
    )

    ours = {column.column: column for column in report.columns}
    assert set(ours) == {c["column"] for c in recorded["columns"]}
    for theirs in recorded["columns"]:
        mine = ours[theirs["column"]]
        where = f"{name} / {theirs['column']}"
        assert mine.type == theirs["type"], where
        assert mine.result.test == theirs["test"], where
        assert mine.result.threshold == pytest.approx(theirs["threshold"]), where
        assert mine.result.drift == theirs["drift"], where
        kind = get_stattest(theirs["test"]).kind
        score = mine.result.p_value if kind == "p_value" else mine.result.statistic
        assert _same_score(score, theirs["score"]), f"{where}: {score} != {theirs['score']}"
    assert report.share_drifted == pytest.approx(recorded["share_drifted"])
    assert report.dataset_drift == recorded["dataset_drift"]
    assert (report.n_reference, report.n_current) == (recorded["n_reference"], recorded["n_current"])


def test_same_column_types_as_evidently() -> None:
    recorded = recording()["types"]
    data = type_columns()
    assert {name: checksum(values) for name, values in data.items()} == recorded["checksums"]
    for name, values in data.items():
        theirs = recorded["inferred"][name]
        if theirs in TYPE_NAMES:
            assert infer_column_type(values) == TYPE_NAMES[theirs], name
        else:  # dates, objects that are not strings, nothing at all: Evidently leaves them out
            assert typed_sample(values) is None, name
