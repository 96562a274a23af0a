"""The use case's monitoring and experiment sections: what is watched after serving, and how a
live A/B test is split and judged. Apart from ``stages`` so that module stays one screenful per
section; ``configs.schema.stages`` re-exports these names."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from configs.schema.base import StrictModel
from configs.schema.guardrails import GuardrailSpec

# New raw rows after which the new-data sensor requests a retrain, when a config does not say.
RETRAIN_AFTER_ROWS = 100_000


class MonitoringSpec(StrictModel):
    """Drift thresholds and the retraining schedule."""

    psi_warn: float = Field(0.1, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    min_window_rows: int = Field(1000, ge=100, description="Smallest window PSI is computed on.")
    retrain_cron: str | None = Field(
        None, description="Cron for scheduled retraining, e.g. '0 3 * * 1'."
    )
    retrain_after_rows: int = Field(
        RETRAIN_AFTER_ROWS,
        ge=1,
        description=(
            "Retrain once this many new raw-log rows arrived since the last request: the trigger"
            " of the <name>_new_data_sensor, which every use case has (stopped until turned on)."
            " Default 100,000; set it to the volume after which a model trained without those"
            " rows is worth replacing (the shipped configs use about a week of their data)."
        ),
    )

    @field_validator("retrain_after_rows", mode="before")
    @classmethod
    def _null_is_the_default(cls, rows: object) -> object:
        """``null`` means the default: specs saved before it existed (serving bundles, MLflow
        runs) stored ``null`` for "no new-data sensor", and must still load."""
        return RETRAIN_AFTER_ROWS if rows is None else rows

    @field_validator("retrain_cron")
    @classmethod
    def _cron_parses(cls, cron: str | None) -> str | None:
        if cron is None:
            return cron
        from croniter import croniter

        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise ValueError(
                f"expected a 5-field cron (minute hour day-of-month month day-of-week), got {cron!r}"
            )
        return cron

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringSpec:
        if self.psi_alert < self.psi_warn:
            raise ValueError(f"psi_alert ({self.psi_alert}) must be >= psi_warn ({self.psi_warn})")
        return self


class ArmSpec(StrictModel):
    """One experiment arm: which model version it serves and its share of traffic."""

    name: str
    model_alias: str = Field(
        "champion", description="Registry alias (or version) served by this arm."
    )
    weight: float = Field(gt=0, le=1)


class ExperimentSpec(StrictModel):
    """An A/B test: arms, split, unit of assignment, the metric it is judged on and guardrails."""

    name: str
    salt: str | None = Field(None, description="Hash salt; defaults to the experiment name.")
    unit: str = Field(description="Column whose value is hashed to an arm, e.g. user_id.")
    metric: str = Field(description="Outcome label the arms are compared on.")
    arms: list[ArmSpec] = Field(min_length=2)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    minimum_detectable_effect: float = Field(0.05, gt=0, description="Relative lift to detect.")
    higher_is_better: bool = Field(
        True, description="Direction of the metric; false for e.g. a fraud or chargeback rate."
    )
    guardrails: list[GuardrailSpec] = Field(
        default_factory=list,
        description=(
            "Metrics the treatment must not degrade beyond a margin (non-inferiority tests);"
            " one shown worse than its margin stops the test early."
        ),
    )

    @model_validator(mode="after")
    def _weights(self) -> ExperimentSpec:
        total = sum(arm.weight for arm in self.arms)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arm weights must sum to 1, got {total:g}")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be distinct, got {names}")
        shown = [guardrail.label for guardrail in self.guardrails]
        if len(set(shown)) != len(shown):
            raise ValueError(f"guardrail names must be distinct (set name:), got {shown}")
        return self
