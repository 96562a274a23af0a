"""Train one tabular model of a use case on its training set and evaluate it on the test split.

The ``problem`` of the YAML picks the learner — LightGBM binary classifier with calibration and
decision bands, LambdaRank ranker, or the feed's expected-value model (calibrated P(click) x
P(purchase | click) x value) — and the evaluation that goes with it. Every metric comes beside
the same metric of the named baseline, computed on the same test rows, so a number always comes
with the number it must beat. Which test rows count (warm units only, a filter, seen items
removed) is the YAML's ``evaluation`` (:mod:`assets.models.evaluation_rows`); the model, the
baseline and the promotion gate's candidates are all judged on those rows, and the predictions
table keeps every test row with ``evaluated`` and ``cold_unit`` beside its score. Plain
functions: the asset only wires them to storage and MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from assets.models.baselines import baseline_reader, baseline_scores
from assets.models.classification import train_classification
from assets.models.evaluation import (
    classification_metrics,
    compare,
    higher_is_better,
    ranking_metrics,
)
from assets.models.evaluation_rows import EvaluationPlan, plan_evaluation, ranked_item_key
from assets.models.multiclass import train_multiclass_model
from assets.models.plots import cutoff_plot
from assets.models.regression import train_regression
from assets.models.split_chunks import model_parts, scored_chunks
from assets.models.tabular import train_expected_value, train_ranker
from assets.training.model_views import label_columns, passthrough_columns
from assets.training.set_splits import SetSplits
from configs.schema.model_stage import TABULAR, ModelStageSpec  # noqa: F401 (TABULAR re-exported)
from configs.schema.usecase import UseCaseSpec
from runtime import layout
from runtime.table_chunks import Chunks

SCORE = "score"
REVENUE = "revenue"  # purchased x value: the gain an expected-value ranking is judged on


@dataclass
class TrainedModel:
    """A fitted model, its test-split evaluation next to the baseline's, and the test scores."""

    model: Any
    features: list[str]
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    comparison: pd.DataFrame
    primary: str
    predictions: pd.DataFrame
    evaluate: Any  # callable(model with .predict) -> primary metric on the test split
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.primary)


def _is_list(frame: pd.DataFrame | SetSplits, column: str) -> bool:
    if isinstance(frame, SetSplits):
        first = frame.first_value(column)
    else:
        valid = frame[column].notna().to_numpy()
        first = frame[column].iloc[int(valid.argmax())] if valid.any() else None
    return isinstance(first, list | tuple | np.ndarray)


def feature_columns(spec: UseCaseSpec, model: str, frame: pd.DataFrame | SetSplits) -> list[str]:
    """The model's tabular features: ``<table>__<feature>`` plus passthrough, lists left out
    (a list column: its first value in the set is a list, the set whole or by split)."""
    stored = [c for c in frame.columns if layout.is_feature_column(c)]
    columns = stored + [c for c in passthrough_columns(spec, model) if c in frame.columns]
    return [c for c in columns if not _is_list(frame, c)]


def model_input(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Features in plain dtypes for a logged model's signature: numbers as float64 (nulls as
    NaN), text as str with "" for missing — an unseen category, which the model reads as null."""
    out = {}
    for column in features:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[column] = values.astype("float64")
        else:
            out[column] = values.astype(object).where(values.notna(), "").astype(str)
    return pd.DataFrame(out, index=frame.index)


def split_ranking_metrics(
    spec, test: pd.DataFrame, scores: np.ndarray, label: str
) -> dict[str, float]:
    frame = test.assign(**{SCORE: scores})
    return ranking_metrics(frame, spec.events.group, label, SCORE, tuple(spec.metrics.k))


CURVE_KS = (1, 3, 5, 10, 20)


def _ranking_judge(spec, test: pd.DataFrame, label: str):
    """``judge(scores, rows)``: the ranking metrics of the groups of ``rows``."""

    def judge(scores, rows: np.ndarray) -> dict[str, float]:
        return split_ranking_metrics(spec, test[rows], np.asarray(scores, dtype=float)[rows], label)

    return judge


def _gain_plot(spec, test, label, scores, baseline, baseline_name, plan: EvaluationPlan):
    """NDCG by cut-off for the model and its baseline on the evaluated test groups."""
    curves = {}
    rows = plan.evaluated
    for name, values in (("model", scores), (baseline_name, baseline)):
        frame = test[rows].assign(**{SCORE: np.asarray(values)[rows]})
        metrics = ranking_metrics(frame, spec.events.group, label, SCORE, CURVE_KS)
        curves[name] = {k: metrics[f"ndcg@{k}"] for k in CURVE_KS}
    return cutoff_plot(f"NDCG@k by {label}", curves, "ndcg@k")


def primary_ranking_metric(spec) -> str:
    primary = spec.metrics.primary
    return (
        f"{primary}@{spec.metrics.k[0]}"
        if primary in ("ndcg", "recall", "hit_rate", "precision")
        else primary
    )


def _ranking(spec, model, frame, features, params):
    """Fit and evaluate a LambdaRank ranker against its baseline; its splits may stay in the
    set's file (``assets.models.split_chunks``), the test rows' other columns held."""
    stage = spec.model[model]
    label = next(iter(label_columns(spec, model).values()))
    group = spec.events.group
    if group is None:
        raise ValueError(f"{spec.name}: model.{model}: learning_to_rank needs events.group")
    name = stage.baseline or "random"
    item_key = ranked_item_key(spec, model)
    parts = model_parts(
        spec,
        model,
        frame,
        features,
        label,
        baseline_reader(name, features, label, item_key),
        [group],
    )
    train, valid, test_chunks, test = parts.train, parts.valid, parts.scored, parts.test
    baseline_rows = parts.baseline_rows
    plan = plan_evaluation(spec, model, parts.units, test, label)
    del parts
    fitted = train_ranker(train, valid, features, label, group, params)
    scores = scored_chunks(fitted.predict, test_chunks, fitted.feature_columns)
    judge = _ranking_judge(spec, test, label)
    metrics = plan.metrics(lambda rows: judge(scores, rows), test)
    baseline = baseline_scores(name, baseline_rows, test_chunks, features, label, item_key)
    del baseline_rows
    baseline_metrics = plan.metrics(lambda rows: judge(baseline, rows), test)
    primary = primary_ranking_metric(spec)
    predictions = test[[c for c in test.columns if c not in features]].assign(**{SCORE: scores})
    plots = _gain_plot(spec, test, label, scores, baseline, name, plan)

    def evaluate(candidate) -> float:
        candidate_scores = scored_chunks(
            lambda chunk: candidate.predict(model_input(chunk, features)), test_chunks, features
        )
        return plan.overall(lambda rows: judge(candidate_scores, rows))[primary]

    extra = {"plots": plots}
    return fitted, metrics, baseline_metrics, primary, plan.annotate(predictions), evaluate, extra


def _expected_value(spec, model, frame, features, params):
    """Fit and evaluate the expected-value model (click and purchase heads) against its
    baseline on revenue; its splits may stay in the set's file, as a ranker's."""
    stage = spec.model[model]
    labels = list(label_columns(spec, model).values())
    if len(labels) != 2 or not stage.value_feature:
        raise ValueError(
            f"{spec.name}: model.{model}: multi_task needs two labels (click, purchase) and"
            " value_feature"
        )
    click, purchase = labels
    name = stage.baseline or "random"
    item_key = ranked_item_key(spec, model)
    if stage.value_feature not in frame.columns:
        raise ValueError(
            f"{spec.name}: model.{model}.value_feature: {stage.value_feature!r} is not a column of"
            " the training set"
        )
    rows = baseline_reader(name, features, click, item_key)
    needed = [spec.events.group, stage.value_feature]
    parts = model_parts(spec, model, frame, features, click, rows, needed)
    train, valid, test_chunks, test = parts.train, parts.valid, parts.scored, parts.test
    baseline_rows = parts.baseline_rows
    plan = plan_evaluation(spec, model, parts.units, test, click)
    del parts
    fitted = train_expected_value(
        train, valid, features, click, purchase, stage.value_feature, params
    )
    value = test[stage.value_feature].astype(float).fillna(0.0)
    test = test.assign(**{REVENUE: test[purchase] * value})
    heads = [fitted.heads(c) for c in Chunks.of(test_chunks)(fitted.feature_columns) if len(c)]
    heads = pd.concat(heads, ignore_index=True)
    scores = heads["expected_value"].to_numpy()
    judge = _ranking_judge(spec, test, REVENUE)
    metrics = plan.metrics(lambda rows: judge(scores, rows), test)
    rows = plan.evaluated
    clicks = classification_metrics(test[click].to_numpy()[rows], heads["p_click"].to_numpy()[rows])
    metrics.update(auc_click=clicks["auc"], ece_click=clicks["ece"])
    baseline = baseline_scores(name, baseline_rows, test_chunks, features, click, item_key)
    del baseline_rows
    baseline_metrics = plan.metrics(lambda rows: judge(baseline, rows), test)
    primary = primary_ranking_metric(spec)
    predictions = test[[c for c in test.columns if c not in features]].assign(
        **{SCORE: scores, "p_click": heads["p_click"].to_numpy()}
    )

    plots = _gain_plot(spec, test, REVENUE, scores, baseline, name, plan)

    def evaluate(candidate) -> float:
        candidate_scores = scored_chunks(
            lambda chunk: candidate.predict(model_input(chunk, features)), test_chunks, features
        )
        return plan.overall(lambda rows: judge(candidate_scores, rows))[primary]

    extra = {"plots": plots}
    return fitted, metrics, baseline_metrics, primary, plan.annotate(predictions), evaluate, extra


TRAINERS = {
    "binary_classification": train_classification,
    "learning_to_rank": _ranking,
    "multi_task": _expected_value,
    "regression": train_regression,
    "multiclass_classification": train_multiclass_model,
}


def metric_targets(stage: ModelStageSpec) -> dict[str, float]:
    """Metrics best at a value rather than at an end: a regression interval's coverage, at the
    share its quantiles enclose."""
    interval = stage.regression.interval if stage.regression is not None else None
    return {"interval_coverage": interval[1] - interval[0]} if interval is not None else {}


def train_tabular(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame | SetSplits, params: dict | None = None
) -> TrainedModel:
    """Fit the model of ``model`` on its training set (a frame, or its splits as read from its
    file) and evaluate it against its baseline.

    ``params`` (e.g. a tuning search's best) replace the YAML's ``params`` of the same names.
    """
    features = feature_columns(spec, model, frame)
    trainer = TRAINERS[spec.model[model].problem]
    chosen = {**spec.model[model].params, **(params or {})}
    fitted, metrics, baseline, primary, predictions, evaluate, extra = trainer(
        spec, model, frame, features, chosen
    )
    return TrainedModel(
        fitted,
        features,
        metrics,
        baseline,
        compare(metrics, baseline, metric_targets(spec.model[model])),
        primary,
        predictions,
        evaluate,
        extra,
    )
