"""Column and dataset drift: the JSON contract, the dataset rule, options, progress and errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from prodloop.errors import ValidationFailed
from prodloop.monitoring import drift
from prodloop.monitoring.drift import column_drift, dataset_drift
from prodloop.monitoring.stattests import DriftTestResult, get_stattest, register_stattest

RNG = np.random.default_rng(44)
N = 400  # reference rows: p-value tests


def data(n: int, shift: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = [0.5 - shift / 2, 0.3, 0.2 + shift / 2]
    return {
        "latency": rng.normal(100 + 30 * shift, 20, n),
        "tokens": rng.normal(500, 50, n),
        "intent": rng.choice(np.array(["billing", "refund", "bug"], dtype=object), n, p=p),
        "thumbs": rng.choice(np.array(["up", "down"], dtype=object), n, p=[0.8, 0.2]),
    }


def test_column_drift_picks_the_test_and_the_type_as_evidently() -> None:
    reference, current = data(N, 0.0, 1), data(N, 1.0, 2)
    latency = column_drift("latency", reference["latency"], current["latency"])
    assert (latency.type, latency.result.test, latency.drift) == ("numeric", "ks", True)
    intent = column_drift("intent", reference["intent"], current["intent"])
    assert (intent.type, intent.result.test, intent.drift) == ("categorical", "chisquare", True)
    thumbs = column_drift("thumbs", reference["thumbs"], current["thumbs"])
    assert (thumbs.type, thumbs.result.test) == ("categorical", "z")
    assert thumbs.result == get_stattest("z")(reference["thumbs"], current["thumbs"], "categorical")


def test_column_drift_with_a_chosen_test_type_and_threshold() -> None:
    reference, current = data(N, 0.0, 1), data(N, 0.0, 2)
    result = column_drift(
        "tokens", reference["tokens"], current["tokens"], column_type="numeric", test="psi", threshold=0.5
    )
    assert (result.result.test, result.result.threshold, result.drift) == ("psi", 0.5, False)


def test_the_json_contract() -> None:
    report = dataset_drift(data(N, 0.0, 1), data(N, 1.0, 2))
    encoded = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert set(encoded) == {
        "columns",
        "dataset_drift",
        "share_drifted",
        "drift_share",
        "n_reference",
        "n_current",
    }
    assert [c["column"] for c in encoded["columns"]] == ["latency", "tokens", "intent", "thumbs"]
    for column in encoded["columns"]:
        assert set(column) == {"column", "type", "test", "statistic", "p_value", "threshold", "drift"}
        assert isinstance(column["drift"], bool)
    assert isinstance(encoded["dataset_drift"], bool)
    assert encoded["share_drifted"] == pytest.approx(sum(c["drift"] for c in encoded["columns"]) / 4)
    assert (encoded["n_reference"], encoded["n_current"], encoded["drift_share"]) == (N, N, 0.5)


def test_the_dataset_drifts_when_the_share_of_drifted_columns_reaches_drift_share() -> None:
    reference, current = data(N, 0.0, 1), data(N, 0.0, 2)
    current["latency"] = current["latency"] + 40  # 1 of 4 columns drifts
    one = dataset_drift(reference, current)
    assert one.drifted_columns == ["latency"]
    assert (one.share_drifted, one.dataset_drift) == (0.25, False)
    assert dataset_drift(reference, current, drift_share=0.25).dataset_drift  # at the share: drift
    current["tokens"] = current["tokens"] * 2  # 2 of 4: exactly 0.5
    two = dataset_drift(reference, current)
    assert (two.share_drifted, two.dataset_drift) == (0.5, True)


def test_one_test_for_all_columns_or_per_column_and_thresholds() -> None:
    reference, current = data(N, 0.0, 1), data(N, 0.3, 2)
    everywhere = dataset_drift(reference, current, tests="psi", thresholds=0.2)
    assert {c.result.test for c in everywhere.columns} == {"psi"}
    assert {c.result.threshold for c in everywhere.columns} == {0.2}
    mixed = dataset_drift(
        reference,
        current,
        tests={"latency": "wasserstein"},
        thresholds={"intent": 0.001},
        columns=["latency", "intent"],
    )
    by_name = {c.column: c.result for c in mixed.columns}
    assert by_name["latency"].test == "wasserstein"
    assert (by_name["intent"].test, by_name["intent"].threshold) == ("chisquare", 0.001)


def test_column_types_override_the_inferred_ones() -> None:
    reference = {"stars": RNG.integers(1, 6, N)}  # integers with 5 values: categorical
    current = {"stars": RNG.integers(1, 6, N)}
    assert dataset_drift(reference, current).columns[0].type == "categorical"
    report = dataset_drift(reference, current, column_types={"stars": "numeric"})
    assert (report.columns[0].type, report.columns[0].result.test) == ("numeric", "chisquare")


def test_pyarrow_arrays_and_numpy_arrays_give_the_same_report() -> None:
    reference, current = data(3000, 0.0, 1), data(3000, 0.2, 2)
    as_arrow = {name: pa.array(values) for name, values in current.items()}
    assert dataset_drift(reference, as_arrow).to_dict() == dataset_drift(reference, current).to_dict()


def test_threads_give_the_same_report_and_report_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    reference, current = data(2000, 0.0, 1), data(2000, 0.2, 2)
    calls: list[tuple[int, int]] = []
    sequential = dataset_drift(reference, current, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    monkeypatch.setattr(drift, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(drift.os, "cpu_count", lambda: 4)
    calls.clear()
    threaded = dataset_drift(reference, current, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert threaded.to_dict() == sequential.to_dict()


def test_columns_of_no_drift_type_are_left_out_unless_named() -> None:
    reference, current = data(N, 0.0, 1), data(N, 0.0, 2)
    for side in (reference, current):
        side["created"] = np.arange(N).astype("datetime64[s]")
    report = dataset_drift(reference, current)
    assert "created" not in [c.column for c in report.columns]
    with pytest.raises(ValidationFailed, match="column 'created': cannot tell whether"):
        dataset_drift(reference, current, columns=["latency", "created"])


def test_a_text_column_gets_the_test_it_names() -> None:
    seen: dict[str, Any] = {}

    class Lengths:
        name = "text_length_test_only"
        kind = "distance"
        default_threshold = 5.0
        column_types = frozenset({"text"})

        def __call__(
            self, reference: Any, current: Any, column_type: str, threshold: float | None = None
        ) -> Any:
            seen.update(reference=reference, column_type=column_type)
            statistic = abs(np.mean([len(t) for t in current]) - np.mean([len(t) for t in reference]))
            return DriftTestResult(self.name, float(statistic), None, 5.0, bool(statistic >= 5.0))

    register_stattest(Lengths())
    reference = np.array([f"question number {i}" for i in range(50)] + [None], dtype=object)
    current = np.array([f"a much longer question, number {i}" for i in range(40)], dtype=object)
    result = column_drift("question", reference, current, test="text_length_test_only")
    assert (result.type, result.drift) == ("text", True)
    assert seen["column_type"] == "text"
    assert seen["reference"].dtype == object and len(seen["reference"]) == 50  # the missing value dropped


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ["latency", "nope"]}, "columns missing from the reference or the current data: 'nope'"),
        ({"tests": {"nope": "ks"}}, "tests name columns that are not compared: 'nope'"),
        ({"tests": "ks"}, "column 'intent': drift test 'ks' does not apply to a categorical column"),
        ({"tests": {"latency": "kolmogorov"}}, "column 'latency': unknown drift test 'kolmogorov'"),
        ({"column_types": {"latency": "ordinal"}}, "column 'latency': unknown column type 'ordinal'"),
        ({"drift_share": 0}, "drift_share must be in"),
        ({"thresholds": "high"}, "thresholds must be one value for all columns or a mapping"),
    ],
)
def test_bad_options_are_refused_with_the_column_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        dataset_drift(data(N, 0.0, 1), data(N, 0.0, 2), **kwargs)


def test_an_all_missing_column_is_refused_with_its_name() -> None:
    reference, current = data(N, 0.0, 1), data(N, 0.0, 2)
    current["latency"] = np.full(N, np.nan)
    with pytest.raises(ValidationFailed, match="column 'latency': no values in the current data") as caught:
        dataset_drift(reference, current)
    assert caught.value.detail["column"] == "latency"


def test_columns_of_different_lengths_and_empty_data_are_refused() -> None:
    reference = data(N, 0.0, 1)
    reference["tokens"] = reference["tokens"][:10]
    with pytest.raises(ValidationFailed, match="reference columns differ in length"):
        dataset_drift(reference, data(N, 0.0, 2))
    with pytest.raises(ValidationFailed, match="no column to compare"):
        dataset_drift({}, {})
