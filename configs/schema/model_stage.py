"""The model section: one trained model per entry, its problem type, label(s) and learner, and
the metrics section the promotion gate reads.

The problem type fixes the rest (playbook: the product question fixes the problem type, which
fixes objective, metrics, model and serving); the sub-sections of each type live beside it in
their own modules (``regression``, ``multiclass``, ``sequence``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from configs.schema.base import StrictModel
from configs.schema.multiclass import MulticlassSpec
from configs.schema.regression import RegressionSpec
from configs.schema.sequence import SequenceSpec

ProblemType = Literal[
    "binary_classification",
    "learning_to_rank",
    "multi_task",
    "two_tower",
    "regression",
    "multiclass_classification",
    "sequence",
]


# One place for which problem types share a path, so a new type is added to each group here.
RANKERS: tuple[str, ...] = ("learning_to_rank", "multi_task")  # order a candidate list
# one LightGBM model over a training-set row (the training-set, drift and Triton paths)
TABULAR: tuple[str, ...] = (
    "binary_classification",
    *RANKERS,
    "regression",
    "multiclass_classification",
)
# the baseline a model is compared with when the YAML names none (else ``random``)
DEFAULT_BASELINES: dict[str, str] = {
    "regression": "mean",
    "multiclass_classification": "class_prior",
}
# an item embedding table and a user encoder, searched with a FAISS index
RETRIEVERS: tuple[str, ...] = ("two_tower", "sequence")


class NegativeSamplingSpec(StrictModel):
    """Negatives for implicit feedback: items a user did not interact with, drawn per positive.

    ``popularity`` draws items in proportion to their impressions before the positive's time, the
    harder and less biased choice for retrieval; ``random`` draws uniformly from the catalog.
    """

    entity: str = Field("item", description="Entity whose key is replaced by sampled ones.")
    strategy: Literal["random", "popularity"] = "popularity"
    ratio: int = Field(4, ge=1, le=100, description="Negatives per positive.")
    seed: int = Field(0, ge=0)


class DecisionBandsSpec(StrictModel):
    """Approve / review / decline from a calibrated probability, chosen on validation data.

    ``precision``: decline when the score is at least the lowest threshold whose precision is
    ``decline_precision``; approve below the highest threshold that lets at most
    ``approve_max_positive_share`` of positives through; review in between. ``cost``: the two
    thresholds minimise the expected cost per case with the given costs.
    """

    method: Literal["precision", "cost"] = "precision"
    decline_precision: float = Field(0.9, gt=0, le=1)
    approve_max_positive_share: float = Field(0.1, ge=0, lt=1)
    cost_false_approve: float = Field(100.0, ge=0, description="Cost of approving a positive.")
    cost_false_decline: float = Field(5.0, ge=0, description="Cost of declining a negative.")
    cost_review: float = Field(1.0, ge=0, description="Cost of a human review.")


class IndexSpec(StrictModel):
    """The FAISS index over item embeddings: chosen by catalog size, tuned to a recall target."""

    kind: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    exact_below: int = Field(
        50_000, ge=1, description="Catalogs smaller than this use exact search."
    )
    target_recall: float = Field(0.95, gt=0, le=1, description="recall@k vs exact search to reach.")
    k: int = Field(10, ge=1, le=1000)
    nlist: int | None = Field(None, ge=1, description="IVF lists; default about 4*sqrt(n).")
    hnsw_m: int = Field(32, ge=4, le=128)


class SearchRangeSpec(StrictModel):
    """One tuned learner parameter: a range, sampled on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False
    integer: bool = Field(False, description="Sample whole numbers (e.g. num_leaves).")

    @model_validator(mode="after")
    def _ordered(self) -> SearchRangeSpec:
        if not self.low < self.high:
            raise ValueError(f"expected low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class TuningSpec(StrictModel):
    """An Optuna search on the validation split; the best parameters train the final model."""

    trials: int = Field(20, ge=1, le=10_000)
    timeout_s: float = Field(300, gt=0, description="Stop starting trials after this long.")
    seed: int = Field(0, ge=0)
    space: dict[str, SearchRangeSpec] = Field(min_length=1, description="Parameter -> range.")


class EvaluationFilterSpec(StrictModel):
    """Test rows left out of the evaluation, each rule a named, checked key (no expressions)."""

    drop_units_with_prior_label: str | None = Field(
        None,
        description=(
            "A label (its name or column): leave out test rows whose unit already had a positive"
            " of it known before the row's time, e.g. cards already known compromised; known when"
            " the label's available_at / available_after says, never earlier."
        ),
    )


SeenItems = Literal["all", "train_positives", "none"]


class EvaluationSpec(StrictModel):
    """Which units and rows a model is judged on; the promotion gate compares the same rows."""

    unit: str | None = Field(
        None,
        description=(
            "Entity whose key is the evaluation unit (card, user); default: two_tower's user,"
            " else the first entity whose key is an events column."
        ),
    )
    units: Literal["warm", "all"] = Field(
        "all",
        description=(
            "warm: only units seen in the train split; all: every unit, with the metrics of warm"
            " and cold units also reported apart (warm/<metric>, cold/<metric>)."
        ),
    )
    exclude_seen: SeenItems | None = Field(
        None,
        description=(
            "two_tower and rankers: what is removed from a unit's candidates (and from what"
            " counts as relevant): all items it interacted with in the train split, only its"
            " train positives, or none. Default: train_positives for two_tower, none for rankers."
        ),
    )
    filter: EvaluationFilterSpec = Field(
        default_factory=EvaluationFilterSpec, description="Test rows left out of the evaluation."
    )


class ModelStageSpec(StrictModel):
    """One trained model: its problem type, label(s) and learner parameters."""

    problem: ProblemType
    labels: list[str] = Field(min_length=1, description="Label names from the labels section.")
    features: list[str] = Field(
        default_factory=list, description="Feature views used; empty = all."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Learner parameters.")
    baseline: str | None = Field(None, description="Named baseline the model must beat.")
    promotion_margin: float = Field(
        0.0, ge=0, le=1, description="How much worse than the champion a challenger may be."
    )
    negatives: NegativeSamplingSpec | None = Field(
        None, description="Sampled negatives for implicit feedback (positives = the first label)."
    )
    decision_bands: DecisionBandsSpec | None = Field(
        None, description="binary_classification: approve / review / decline thresholds."
    )
    value_feature: str | None = Field(
        None, description="multi_task: feature multiplied into the expected value, e.g. price."
    )
    embedding_dim: int = Field(
        32, ge=2, le=1024, description="two_tower and sequence: embedding size."
    )
    epochs: int = Field(
        10,
        ge=1,
        le=1000,
        description="two_tower: most passes over the training set (the best epoch on validation is kept).",
    )
    index: IndexSpec | None = Field(
        None, description="two_tower and sequence: the FAISS index of items."
    )
    tuning: TuningSpec | None = Field(
        None, description="LightGBM models: an Optuna search of params on the validation split."
    )
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec,
        description="Which units and test rows the metrics (and the promotion gate) count.",
    )
    regression: RegressionSpec | None = Field(
        None, description="regression: prediction intervals (quantile models)."
    )
    multiclass: MulticlassSpec | None = Field(
        None, description="multiclass_classification: classes, calibration, human-review band."
    )
    sequence: SequenceSpec | None = Field(
        None, description="sequence: the encoder over a user's recent items."
    )

    @property
    def baseline_name(self) -> str:
        """The baseline the model is compared with: the YAML's, else its problem's default."""
        return self.baseline or DEFAULT_BASELINES.get(self.problem, "random")


Metric = Literal[
    "auc",
    "pr_auc",
    "log_loss",
    "ece",
    "card_precision",
    "ndcg",
    "mrr",
    "map",
    "recall",
    "hit_rate",
    "precision",
    "rmse",
    "mae",
    "mape",
    "interval_coverage",
    "macro_f1",
    "accuracy",
]


class MetricsSpec(StrictModel):
    """Offline metrics; the first is the one the promotion gate compares.

    ``card_precision`` (binary_classification, events with time) is the fraud literature's
    alert-budget metric: per day, the share of compromised cards among the k riskiest.
    """

    primary: Metric
    others: list[Metric] = Field(default_factory=list)
    k: list[int] = Field(
        default_factory=lambda: [10],
        description="Cut-offs for @K metrics (card_precision: cards checked per day, e.g. 100).",
    )
