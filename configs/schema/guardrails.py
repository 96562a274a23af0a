"""Guardrails of an A/B test: metrics the treatment must not make worse by more than a margin.

A guardrail is judged by a one-sided non-inferiority test against its margin (see
``assets.experiments.guardrails``): the treatment ships only when every guardrail is shown
non-inferior, and a guardrail shown worse than its margin stops the test early. Three metrics:

* ``latency_p<q>`` (e.g. ``latency_p99``): that quantile of the request latency the request log
  records per served request, per arm;
* ``error_rate``: each unit's share of logged requests that failed;
* the name of a label (e.g. ``purchase``): its rate per unit since exposure, as the primary
  metric is computed.
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from configs.schema.base import StrictModel

LATENCY = re.compile(r"^latency_p(\d{1,2}(?:\.\d+)?)$")
ERROR_RATE = "error_rate"


def latency_quantile(metric: str) -> float | None:
    """The quantile of a ``latency_p<q>`` metric (``latency_p99`` -> 0.99), else None."""
    match = LATENCY.match(metric)
    return float(match.group(1)) / 100 if match else None


class GuardrailSpec(StrictModel):
    """One guardrail: a metric, which way is worse, and the largest degradation allowed."""

    metric: str = Field(
        description=(
            "latency_p<q> (e.g. latency_p99: that quantile of request latency in ms),"
            " error_rate (share of a unit's requests that failed) or a label name (its rate"
            " per unit since exposure)."
        )
    )
    name: str | None = Field(None, description="Shown name; defaults to the metric.")
    higher_is_better: bool | None = Field(
        None, description="Direction; default false for latency and error_rate, true for a label."
    )
    max_degradation: float = Field(
        gt=0,
        description=(
            "Non-inferiority margin: the largest degradation accepted, relative to the control"
            " (0.1 = 10% worse) or, with relative: false, in the metric's units."
        ),
    )
    relative: bool = Field(True, description="max_degradation is a share of the control value.")

    @model_validator(mode="after")
    def _checked(self) -> GuardrailSpec:
        quantile = latency_quantile(self.metric)
        if self.metric.startswith("latency") and quantile is None:
            raise ValueError(
                f"metric {self.metric!r}: expected latency_p<q> with q in (0, 100), e.g. latency_p99"
            )
        if quantile is not None and not 0 < quantile < 1:
            raise ValueError(f"metric {self.metric!r}: the quantile must be in (0, 100)")
        if self.relative and self.max_degradation >= 1 and self.direction_higher:
            raise ValueError(
                f"guardrail {self.label}: a relative drop of {self.max_degradation:g} (>= 100%)"
                " allows any value; give a share below 1"
            )
        return self

    @property
    def label(self) -> str:
        """The guardrail's shown name."""
        return self.name or self.metric

    @property
    def kind(self) -> str:
        """``latency``, ``error_rate`` or ``label``: where its values come from."""
        if latency_quantile(self.metric) is not None:
            return "latency"
        return ERROR_RATE if self.metric == ERROR_RATE else "label"

    @property
    def direction_higher(self) -> bool:
        """Whether higher values are better (the default follows the metric)."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return self.kind == "label"
