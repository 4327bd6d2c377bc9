"""Learned thresholds: the band is mean +- 3 sigma of the reference chunks' statistics (NannyML)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from prodloop.errors import ValidationFailed
from prodloop.monitoring.learned import LearnedThreshold, chunk_drift, learn_threshold, split_chunks
from prodloop.monitoring.stattests import get_stattest

REFERENCE = np.random.default_rng(8).normal(50, 10, 20_000)


def test_the_band_is_mean_plus_three_population_sigmas_of_the_reference_chunks() -> None:
    learned = learn_threshold(REFERENCE, chunk_size=2_000)
    assert learned.test == "wasserstein"  # the default for a reference of 20,000 numbers
    wasserstein = get_stattest("wasserstein")
    values = [
        wasserstein(REFERENCE, REFERENCE[i : i + 2_000], "numeric").statistic for i in range(0, 20_000, 2_000)
    ]
    assert learned.reference_values == pytest.approx(values, rel=1e-12)
    assert learned.mean == pytest.approx(np.mean(values))
    assert learned.std == pytest.approx(np.std(values))  # ddof 0, as NannyML
    assert learned.upper == pytest.approx(np.mean(values) + 3 * np.std(values))
    assert learned.lower is None  # a distance alerts only above the band
    assert learned.reference_chunks[0] == "rows 0-1999"


def test_a_shifted_chunk_alerts_and_chunks_like_the_reference_do_not() -> None:
    learned = learn_threshold(REFERENCE, chunk_size=2_000)
    rng = np.random.default_rng(0)
    current = np.concatenate([rng.normal(50, 10, 6_000), rng.normal(50.8, 10, 2_000)])  # +0.08 sigma
    chunks = chunk_drift(REFERENCE, current, learned)
    assert [chunk.label for chunk in chunks] == [
        "rows 0-1999",
        "rows 2000-3999",
        "rows 4000-5999",
        "rows 6000-7999",
    ]
    assert [chunk.alert for chunk in chunks] == [False, False, False, True]
    # The fixed threshold (0.1) misses the small shift that the learned band catches.
    assert chunks[3].result is not None and not chunks[3].result.drift
    assert chunks[3].value is not None and learned.upper is not None and chunks[3].value > learned.upper


def test_categories_with_the_default_test() -> None:
    labels = np.array(["billing", "refund", "bug", "other"], dtype=object)
    rng = np.random.default_rng(1)
    reference = rng.choice(labels, 12_000, p=[0.4, 0.3, 0.2, 0.1])
    learned = learn_threshold(reference, chunk_size=1_000)
    assert (learned.test, learned.column_type) == ("jensenshannon", "categorical")
    current = np.concatenate(
        [rng.choice(labels, 1_000, p=[0.4, 0.3, 0.2, 0.1]), rng.choice(labels, 1_000, p=[0.3, 0.3, 0.2, 0.2])]
    )
    assert [chunk.alert for chunk in chunk_drift(reference, current, learned)] == [False, True]


def test_p_values_alert_below_the_band_and_z_on_both_sides() -> None:
    learned = learn_threshold(REFERENCE, test="ks", chunk_size=2_000, value="p_value")
    assert learned.upper is None and learned.lower is not None
    assert learned.is_alert(learned.lower - 0.01) and not learned.is_alert(1.0)
    flags = np.random.default_rng(2).choice(np.array(["yes", "no"], dtype=object), 10_000, p=[0.3, 0.7])
    z = learn_threshold(flags, test="z", chunk_size=1_000)
    assert z.lower is not None and z.upper is not None and z.lower < 0 < z.upper


def test_chunks_by_day_and_week_from_timestamps() -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    times = np.array([start + timedelta(hours=6 * i) for i in range(56)], dtype=object)  # 14 days
    days = split_chunks(56, timestamps=times, period="day")
    assert [chunk.label for chunk in days][:2] == ["2026-03-02", "2026-03-03"]
    assert [len(chunk.rows) for chunk in days] == [4] * 14
    weeks = split_chunks(56, timestamps=times, period="week")
    assert [chunk.label for chunk in weeks] == ["week of 2026-03-02", "week of 2026-03-09"]
    nanoseconds = np.array([int(t.timestamp() * 1e9) for t in times])
    assert [c.label for c in split_chunks(56, timestamps=nanoseconds, period="week")] == [
        c.label for c in weeks
    ]
    # 23:00 on Sunday in UTC-2 is 01:00 on Monday in UTC: chunks are cut in UTC.
    late = datetime(2026, 3, 8, 23, tzinfo=timezone(timedelta(hours=-2)))
    assert split_chunks(1, timestamps=[late], period="week")[0].label == "week of 2026-03-09"
    shuffled = np.random.default_rng(1).permutation(56)
    by_day = split_chunks(56, timestamps=times[shuffled], period="day")
    assert sorted(times[shuffled][by_day[0].rows]) == list(times[:4])


def test_learning_by_day_then_checking_days() -> None:
    start = np.datetime64("2026-01-01T00:00", "m")
    reference_times = start + np.arange(20_000) * np.timedelta64(1, "m")  # about 14 days
    learned = learn_threshold(REFERENCE, timestamps=reference_times, period="day")
    assert learned.chunking == {"period": "day"} and len(learned.reference_values) == 14
    rng = np.random.default_rng(3)
    current = np.concatenate([rng.normal(50, 10, 1440), rng.normal(56, 10, 1440)])
    current_times = np.datetime64("2026-02-01T00:00", "m") + np.arange(2880) * np.timedelta64(1, "m")
    chunks = chunk_drift(REFERENCE, current, learned, timestamps=current_times)
    assert [(chunk.label, chunk.alert) for chunk in chunks] == [("2026-02-01", False), ("2026-02-02", True)]


def test_the_rows_after_the_last_full_chunk_join_it() -> None:
    chunks = split_chunks(2_500, chunk_size=1_000)
    assert [chunk.label for chunk in chunks] == ["rows 0-999", "rows 1000-2499"]
    assert [chunk.label for chunk in split_chunks(500, chunk_size=1_000)] == ["rows 0-499"]


def test_a_chunk_without_values_is_reported_without_a_value() -> None:
    learned = learn_threshold(REFERENCE, chunk_size=2_000)
    current = np.concatenate([np.full(2_000, np.nan), np.random.default_rng(4).normal(50, 10, 2_000)])
    empty, full = chunk_drift(REFERENCE, current, learned)
    assert (empty.value, empty.alert, empty.result) == (None, False, None)
    assert full.value is not None


def test_the_threshold_round_trips_through_json() -> None:
    learned = learn_threshold(REFERENCE, chunk_size=5_000)
    again = LearnedThreshold.from_dict(json.loads(json.dumps(learned.to_dict(), allow_nan=False)))
    assert again == learned
    assert [c.alert for c in chunk_drift(REFERENCE, REFERENCE[:5_000], again)] == [False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 20_000}, "makes 1 chunk"),
        ({}, "chunk by rows"),
        ({"chunk_size": 100, "timestamps": np.zeros(20_000, dtype=np.int64)}, "chunk by rows"),
        ({"timestamps": np.zeros(20_000, dtype=np.int64), "period": "fortnight"}, "period must be one of"),
        ({"timestamps": np.zeros(3, dtype=np.int64), "period": "day"}, "3 timestamps for 20000 rows"),
        ({"chunk_size": 1_000, "value": "p_value"}, "has no p-value"),
        ({"chunk_size": 1_000, "sigmas": 0}, "sigmas must be positive"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        learn_threshold(REFERENCE, **kwargs)


def test_missing_timestamps_are_refused() -> None:
    times = np.array(["2026-01-01", "NaT"], dtype="datetime64[ns]")
    with pytest.raises(ValidationFailed, match="some timestamps are missing"):
        split_chunks(2, timestamps=times, period="day")
