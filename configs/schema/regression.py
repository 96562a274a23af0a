"""``problem: regression`` options: prediction intervals beside the point estimate.

The point model's loss is LightGBM's own ``objective`` in ``params`` (``regression`` = L2,
``huber``, ``quantile`` with ``alpha``), so a user reads LightGBM's documentation, not ours.
An interval needs two more models (the lower and upper quantiles), which is why it is a section.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from configs.schema.base import StrictModel


class RegressionSpec(StrictModel):
    """Prediction intervals: quantile models for ``interval`` = [lower, upper] quantiles."""

    interval: tuple[float, float] | None = Field(
        None,
        description=(
            "Lower and upper quantiles of a prediction interval, e.g. [0.1, 0.9]: two quantile"
            " models are trained beside the point model and interval_coverage is reported."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> RegressionSpec:
        if self.interval is not None:
            low, high = self.interval
            if not 0 < low < high < 1:
                raise ValueError(f"interval: expected 0 < lower < upper < 1, got [{low}, {high}]")
        return self
