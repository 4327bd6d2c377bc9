"""The outcome metrics, and what an outcome check asks for (:mod:`prodloop.monitoring.outcomes`).

A metric is computed per trace and aggregated per bucket (hour or day of the trace's start) by
:mod:`prodloop.monitoring.outcome_queries`:

``handled_rate``
    share of traces whose latest ``resolved`` outcome is true, among traces that have one;
``escalation_rate``
    the same for ``escalated``; ``thumbs_down_rate``: share of thumbs that are down;
``signal:NAME``
    the mean of a signal's numeric value (a share when its values are all 0 and 1), among traces
    that have it; ``signal_rate:NAME``: share of traces that have signal NAME at all (copy, regenerate);
``error_rate``, ``latency_p50``, ``latency_p95``
    from the traces themselves, so that a page can show them staying flat while outcomes fall.

Defaults and their reasons: ``docs/monitoring.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prodloop.errors import ValidationFailed
from prodloop.monitoring.changepoints import Worse
from prodloop.monitoring.definitions import Duration, Reference

BUCKETS: dict[str, int] = {"hour": 3600 * 10**9, "day": 86_400 * 10**9}
#: Which direction is worse for signals that prodloop and its demo know by name.
WORSE_BY_SIGNAL: dict[str, Worse] = {
    "resolved": "lower", "csat": "lower", "rating": "lower", "copy": "lower", "thumbs": "lower",
    "escalated": "higher", "regenerate": "higher", "abandon": "higher", "correction": "higher",
    "edit": "higher",
}  # fmt: skip


@dataclass(frozen=True)
class OutcomeMetric:
    """What a metric measures, how it is tested, and which direction is worse."""

    name: str
    label: str
    #: proportion: 0/1 per trace; mean: a number per trace; quantile: latency, tested as exceedance.
    kind: Literal["proportion", "mean", "quantile"]
    worse: Worse
    #: signal: the trace's latest value of ``signal``; presence: whether it has ``signal``;
    #: errors: whether the trace failed; latency: its duration in milliseconds.
    source: Literal["signal", "presence", "errors", "latency"]
    signal: str | None = None
    #: For thumbs: a down vote (value 0) is the event counted.
    count_zero: bool = False
    quantile: float | None = None
    #: Smallest change worth an alert, in the metric's units (shares for proportions and quantiles);
    #: None: 0.2 standard deviations of the reference (for means).
    min_effect: float | None = 0.03

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "kind": self.kind, "worse": self.worse}


BUILTIN_METRICS: dict[str, OutcomeMetric] = {
    m.name: m
    for m in (
        OutcomeMetric("handled_rate", "handled rate", "proportion", "lower", "signal", "resolved"),
        OutcomeMetric("escalation_rate", "escalation rate", "proportion", "higher", "signal", "escalated"),
        OutcomeMetric("thumbs_down_rate", "thumbs-down rate", "proportion", "higher", "signal", "thumbs",
                      count_zero=True),
        OutcomeMetric("error_rate", "error rate", "proportion", "higher", "errors", min_effect=0.01),
        OutcomeMetric("latency_p50", "latency p50", "quantile", "higher", "latency", quantile=0.5,
                      min_effect=0.05),
        OutcomeMetric("latency_p95", "latency p95", "quantile", "higher", "latency", quantile=0.95,
                      min_effect=0.02),
    )
}  # fmt: skip


def outcome_metric(name: str, worse: Worse | None = None) -> OutcomeMetric:
    """The metric called ``name`` (a built-in, ``signal:NAME`` or ``signal_rate:NAME``); ``worse``
    overrides its direction. A ``signal:`` metric is a mean until
    :func:`~prodloop.monitoring.outcomes.evaluate_outcome` finds its values are all 0 and 1."""
    if name in BUILTIN_METRICS:
        metric = BUILTIN_METRICS[name]
    else:
        prefix, _, signal = name.partition(":")
        if prefix not in ("signal", "signal_rate") or not signal:
            known = ", ".join([*BUILTIN_METRICS, "signal:NAME", "signal_rate:NAME"])
            raise ValidationFailed(f"no outcome metric {name!r}; the metrics are: {known}", {"metric": name})
        direction = worse or WORSE_BY_SIGNAL.get(signal)
        if direction is None:
            raise ValidationFailed(
                f"prodloop does not know whether more or less {signal!r} is worse: "
                "set worse to lower or higher",
                {"metric": name},
            )
        if prefix == "signal":
            metric = OutcomeMetric(
                name, f"mean {signal}", "mean", direction, "signal", signal, min_effect=None
            )
        else:
            metric = OutcomeMetric(name, f"{signal} rate", "proportion", direction, "presence", signal)
    return replace(metric, worse=worse) if worse else metric


def outcome_names() -> list[str]:
    """The built-in outcome metrics (``signal:NAME`` and ``signal_rate:NAME`` work for any signal)."""
    return sorted(BUILTIN_METRICS)


# --------------------------------------------------------------------------------------------------
# What a check asks for


class SliceFilter(BaseModel):
    """Which traces: a release, a model, and root-span attributes that must equal the given values."""

    model_config = ConfigDict(extra="forbid")

    release: str | None = None
    model: str | None = None
    attributes: dict[str, str | bool | int | float] = Field(default_factory=dict)

    def is_empty(self) -> bool:
        return self.release is None and self.model is None and not self.attributes

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("release", self.release), ("model", self.model)) if v is not None]
        parts += [f"{k}={v}" for k, v in sorted(self.attributes.items())]
        return ",".join(parts)


class CusumSettings(BaseModel):
    """The CUSUM over the last ``window`` of buckets, against the reference just before that window.

    ``k`` (allowance) and ``h`` (decision interval) are in standard errors: with 0.5 and 5 a stable
    metric alarms about once in 930 buckets (one-sided, Montgomery table 9.3) and a shift of one
    standard error is caught in about 10 buckets, two in about 4."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    k: float = Field(default=0.5, ge=0)
    h: float = Field(default=5.0, gt=0)
    window: Duration = timedelta(days=7)
    #: The reference must hold at least this many buckets with data, or the CUSUM waits.
    min_reference_buckets: int = Field(default=7, ge=3)


class OutcomeArguments(BaseModel):
    """An outcome check's own arguments (a monitor supplies feature, reference and current window)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = "handled_rate"
    #: Which direction is worse, where the metric's own is not right (or not known).
    worse: Worse | None = None
    bucket: Literal["hour", "day"] = "day"
    alpha: float = Field(default=0.005, gt=0, lt=1)
    #: Smallest change that alerts; None: the metric's default (3 points for outcome rates).
    min_effect: float | None = Field(default=None, ge=0)
    #: Fewer observations than this in the current window or the reference: no test.
    min_samples: int = Field(default=100, ge=1)
    cusum: CusumSettings = Field(default_factory=CusumSettings)
    slice: SliceFilter = Field(default_factory=SliceFilter)
    #: A trace attribute (``support.route``, ``release``) to break the change down by.
    breakdown: str | None = Field(default=None, min_length=1, max_length=200)
    #: How many affected trace ids a finding carries for routing, most telling first.
    max_trace_ids: int = Field(default=200, ge=0, le=10_000)

    @model_validator(mode="after")
    def _known_metric(self) -> OutcomeArguments:
        try:
            outcome_metric(self.metric, self.worse)
        except ValidationFailed as error:
            raise ValueError(error.message) from None
        return self


class OutcomeCheck(OutcomeArguments):
    """Everything :func:`~prodloop.monitoring.outcomes.evaluate_outcome` needs: which feature, compared
    with what, how."""

    feature: str = Field(min_length=1, max_length=200)
    reference: Reference = Field(default_factory=lambda: Reference(window=timedelta(days=14)))
    #: The current window, ending at the run's time.
    current: Duration = timedelta(days=2)

    @model_validator(mode="after")
    def _whole_buckets(self) -> OutcomeCheck:
        size = timedelta(microseconds=BUCKETS[self.bucket] // 1000)
        spans_ = {
            "current": self.current,
            "cusum.window": self.cusum.window,
            "reference.window": self.reference.window,
        }
        for name, value in spans_.items():
            if value is not None and (value < size or value % size):
                raise ValueError(f"{name} must be a whole number of {self.bucket}s (the bucket), got {value}")
        return self
