"""Learned thresholds: alert when a chunk's drift statistic leaves what the reference itself shows.

A fixed threshold (p < 0.05, distance >= 0.1) ignores how much a statistic moves by chance at a
given chunk size. NannyML's approach learns the band instead:

1. split the reference into chunks: every ``chunk_size`` rows, or by ``period`` ("hour", "day",
   "week" starting on Monday, UTC) of the rows' ``timestamps``;
2. compute the drift test on each reference chunk against the whole reference;
3. the band is mean ± ``sigmas`` (3) x standard deviation of those values (population standard
   deviation, as NannyML's ``StandardDeviationThreshold``);
4. each current chunk, tested against the whole reference in the same way, alerts when its value
   is above the upper bound, or below the lower bound where lower means drift.

What is compared (``value``): the test's statistic (default; higher means drift for every test but
``z``, whose signed statistic alerts on both sides), or its p-value (``value="p_value"``, lower means
drift). The test is the one given, or the default Evidently rule picks for the whole reference
(:func:`prodloop.monitoring.selection.default_stattest`). Rows left over after the last full chunk
of ``chunk_size`` join the last chunk (NannyML's ``incomplete="append"``); chunks with no value
(all missing) are left out of the band and reported without a value.

Usage::

    learned = learn_threshold(reference["latency_ms"], chunk_size=1_000)
    learned.to_dict()                      # JSON: store it with the monitor
    for chunk in chunk_drift(reference["latency_ms"], current["latency_ms"], learned,
                             timestamps=current_times, period="day"):
        print(chunk.label, chunk.value, chunk.alert)

:class:`LearnedThreshold` keeps the band, the reference chunks' values and how they were cut;
:meth:`LearnedThreshold.from_dict` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from prodloop.errors import ValidationFailed
from prodloop.monitoring.binning import Sample, as_sample, is_arrow
from prodloop.monitoring.selection import default_stattest, typed_sample
from prodloop.monitoring.stattests import DriftTestResult, get_stattest

PERIODS = ("hour", "day", "week")
Value = Literal["statistic", "p_value"]
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Chunk:
    """Some rows of a sample: a run of ``chunk_size`` rows or one period of time."""

    label: str  # "rows 0-999", "2026-03-02" (day), "2026-03-02T14" (hour), "week of 2026-03-02"
    rows: np.ndarray  # positions of the chunk's rows in the sample


@dataclass(frozen=True)
class LearnedThreshold:
    """The band learned from the reference chunks, and how it was learned."""

    test: str
    column_type: str
    value: Value
    sigmas: float
    mean: float
    std: float
    lower: float | None  # None: values below the band do not alert
    upper: float | None  # None: values above the band do not alert
    chunking: dict[str, Any]  # {"chunk_size": N} or {"period": "day"}
    reference_chunks: list[str] = field(default_factory=list)
    reference_values: list[float] = field(default_factory=list)

    def is_alert(self, value: float) -> bool:
        """Whether ``value`` lies outside the band on a side where that means drift."""
        return (self.upper is not None and value > self.upper) or (
            self.lower is not None and value < self.lower
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "test": self.test,
            "column_type": self.column_type,
            "value": self.value,
            "sigmas": self.sigmas,
            "mean": self.mean,
            "std": self.std,
            "lower": self.lower,
            "upper": self.upper,
            "chunking": dict(self.chunking),
            "reference_chunks": list(self.reference_chunks),
            "reference_values": list(self.reference_values),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedThreshold:
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValidationFailed(f"learned threshold of format {version} is not known; learn it again")
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**fields)


@dataclass(frozen=True)
class ChunkDrift:
    """One current chunk against the learned band."""

    label: str
    n: int  # rows in the chunk, missing values included
    value: float | None  # None when the chunk has no value to test
    lower: float | None
    upper: float | None
    alert: bool
    result: DriftTestResult | None  # the test's own result, with its fixed-threshold verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "n": self.n,
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
            "alert": self.alert,
            "result": None if self.result is None else self.result.to_dict(),
        }


def _as_datetime64(timestamps: Any) -> np.ndarray:
    if is_arrow(timestamps):
        timestamps = timestamps.to_numpy(zero_copy_only=False)
    array = np.asarray(timestamps)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]")
    if array.dtype.kind in "iu":  # integer nanoseconds since the epoch, as the store keeps times
        return array.astype("int64").astype("datetime64[ns]")
    if array.dtype.kind == "O":
        naive = []
        for value in array.tolist():
            if not isinstance(value, datetime):
                raise ValidationFailed(
                    "timestamps must be datetimes, numpy datetime64 or integer nanoseconds since the epoch",
                    {"found": type(value).__name__},
                )
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            naive.append(np.datetime64(value, "ns"))
        return np.array(naive, dtype="datetime64[ns]")
    raise ValidationFailed(
        "timestamps must be datetimes, numpy datetime64 or integer nanoseconds since the epoch",
        {"dtype": str(array.dtype)},
    )


def split_chunks(
    n_rows: int, *, chunk_size: int | None = None, timestamps: Any = None, period: str | None = None
) -> list[Chunk]:
    """Chunks of ``n_rows`` rows: runs of ``chunk_size`` rows (the rest joins the last run), or one
    chunk per ``period`` of ``timestamps`` (UTC), in time order."""
    if (chunk_size is None) == (timestamps is None):
        raise ValidationFailed(
            "chunk by rows (chunk_size) or by time (timestamps and period), one of the two"
        )
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValidationFailed(f"chunk_size must be at least 1, not {chunk_size}")
        starts = list(range(0, n_rows, chunk_size))
        if len(starts) > 1 and n_rows - starts[-1] < chunk_size:
            starts.pop()  # the incomplete last run joins the previous one
        stops = [*starts[1:], n_rows]
        return [Chunk(f"rows {a}-{b - 1}", np.arange(a, b)) for a, b in zip(starts, stops, strict=True)]
    if period not in PERIODS:
        raise ValidationFailed(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    times = _as_datetime64(timestamps)
    if times.size != n_rows:
        raise ValidationFailed(f"{times.size} timestamps for {n_rows} rows; give one timestamp per row")
    if np.isnat(times).any():
        raise ValidationFailed("some timestamps are missing; every row needs one to be chunked by time")
    if period == "hour":
        keys = times.astype("datetime64[h]")
    else:
        days = times.astype("datetime64[D]")
        # 1970-01-01 was a Thursday: Monday-based weeks start 3 days before it.
        keys = days if period == "day" else days - ((days.astype(np.int64) + 3) % 7).astype("timedelta64[D]")
    values, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(values.size + 1))
    chunks = []
    for i, start in enumerate(values):
        text = str(start)
        label = f"week of {text}" if period == "week" else text
        chunks.append(Chunk(label, order[bounds[i] : bounds[i + 1]]))
    return chunks


def _take(values: Any, rows: np.ndarray) -> Any:
    if is_arrow(values):
        return values.take(rows)
    return np.asarray(values)[rows]


def _value_of(result: DriftTestResult, value: Value) -> float:
    if value == "p_value":
        if result.p_value is None:
            raise ValidationFailed(f"drift test {result.test!r} has no p-value; learn its statistic instead")
        return result.p_value
    return result.statistic


def _sides(test: str, value: Value) -> tuple[bool, bool]:
    """(lower bound alerts, upper bound alerts)."""
    if value == "p_value":
        return True, False
    return (True, True) if test == "z" else (False, True)


def learn_threshold(
    reference: Any,
    *,
    column_type: str | None = None,
    test: str | None = None,
    chunk_size: int | None = None,
    timestamps: Any = None,
    period: str | None = None,
    sigmas: float = 3.0,
    value: Value = "statistic",
) -> LearnedThreshold:
    """The band of the test's value over the reference's chunks (see the module docstring)."""
    if value not in ("statistic", "p_value"):
        raise ValidationFailed(f"value must be 'statistic' or 'p_value', not {value!r}")
    if not sigmas > 0:
        raise ValidationFailed(f"sigmas must be positive, not {sigmas}")
    whole = _reference_sample(reference, column_type)
    name = test if test is not None else default_stattest(whole, whole, whole.column_type)
    stattest = get_stattest(name)
    chunks = split_chunks(_length(reference), chunk_size=chunk_size, timestamps=timestamps, period=period)
    labels, values = [], []
    for chunk in chunks:
        part = as_sample(_take(reference, chunk.rows), whole.column_type)
        if part.n == 0:
            continue
        labels.append(chunk.label)
        values.append(_value_of(_run(stattest, whole, part), value))
    if len(values) < 2:
        raise ValidationFailed(
            f"the reference makes {len(values)} chunk(s) with values; a threshold needs at least 2 "
            "(10 or more give a steadier band): use smaller chunks or a longer reference",
            {"chunks": len(values)},
        )
    mean, std = float(np.mean(values)), float(np.std(values))
    lower_alerts, upper_alerts = _sides(stattest.name, value)
    return LearnedThreshold(
        test=stattest.name,
        column_type=whole.column_type,
        value=value,
        sigmas=float(sigmas),
        mean=mean,
        std=std,
        lower=mean - sigmas * std if lower_alerts else None,
        upper=mean + sigmas * std if upper_alerts else None,
        chunking={"chunk_size": chunk_size} if chunk_size is not None else {"period": period},
        reference_chunks=labels,
        reference_values=[float(v) for v in values],
    )


def chunk_drift(
    reference: Any,
    current: Any,
    learned: LearnedThreshold,
    *,
    chunk_size: int | None = None,
    timestamps: Any = None,
    period: str | None = None,
) -> list[ChunkDrift]:
    """Each chunk of ``current`` tested against the whole reference and compared with the band.
    Without chunking arguments, the current data is cut as the reference was (``chunk_size``)."""
    if chunk_size is None and timestamps is None:
        chunk_size = learned.chunking.get("chunk_size")
        if chunk_size is None:
            raise ValidationFailed("the threshold was learned by time: give the current rows' timestamps")
    if timestamps is not None and period is None:
        period = learned.chunking.get("period")
    whole = _reference_sample(reference, learned.column_type)
    stattest = get_stattest(learned.test)
    results = []
    for chunk in split_chunks(_length(current), chunk_size=chunk_size, timestamps=timestamps, period=period):
        part = as_sample(_take(current, chunk.rows), learned.column_type)
        if part.n == 0:
            results.append(
                ChunkDrift(chunk.label, chunk.rows.size, None, learned.lower, learned.upper, False, None)
            )
            continue
        result = _run(stattest, whole, part)
        observed = _value_of(result, learned.value)
        results.append(
            ChunkDrift(
                chunk.label,
                chunk.rows.size,
                observed,
                learned.lower,
                learned.upper,
                learned.is_alert(observed),
                result,
            )
        )
    return results


def _reference_sample(reference: Any, column_type: str | None) -> Sample:
    sample = typed_sample(reference) if column_type is None else as_sample(reference, column_type)
    if sample is None:
        raise ValidationFailed("cannot tell the column's type; give column_type")
    if sample.n == 0:
        raise ValidationFailed("the reference has no values (empty, or all missing)")
    return sample


def _run(stattest: Any, reference: Sample, current: Sample) -> DriftTestResult:
    if getattr(stattest, "accepts_samples", False):
        return stattest(reference, current, reference.column_type)
    return stattest(reference.values(), current.values(), reference.column_type)


def _length(values: Any) -> int:
    return len(values)


__all__ = ["Chunk", "ChunkDrift", "LearnedThreshold", "chunk_drift", "learn_threshold", "split_chunks"]
