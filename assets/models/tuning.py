"""Optuna search of a LightGBM model's parameters on the validation split.

Each trial fits the problem's learner on the train split with sampled parameters and scores it
on validation with the use case's primary metric — the test split is never looked at, so the
final evaluation stays honest. The best parameters train the final model; every trial is kept
(parameters, score, seconds) so the asset can log them as nested MLflow runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import optuna
import pandas as pd

from assets.models.evaluation import classification_metrics, higher_is_better
from assets.models.multiclass import multiclass_validation_score
from assets.models.regression import regression_primary, regression_validation_score
from assets.models.tabular import train_classifier, train_expected_value, train_ranker
from assets.models.train import (
    REVENUE,
    feature_columns,
    model_splits,
    primary_ranking_metric,
    split_ranking_metrics,
)
from assets.training.model_views import label_columns
from configs.schema.stages import SearchRangeSpec
from configs.schema.usecase import UseCaseSpec

optuna.logging.set_verbosity(logging.WARNING)


@dataclass
class TuningResult:
    best_params: dict
    best_score: float
    metric: str
    trials: list[dict] = field(default_factory=list)  # params, score, seconds, state


def _sample(trial: optuna.Trial, name: str, space: SearchRangeSpec):
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


def _validation_score(spec, model, train, valid, features, params) -> tuple[str, float]:
    """Fit on train and score on validation with the primary metric."""
    stage = spec.model[model]
    labels = list(label_columns(spec, model).values())
    if stage.problem == "multiclass_classification":
        return multiclass_validation_score(spec, model, train, valid, features, params)
    if stage.problem == "regression":
        return regression_validation_score(spec, model, train, valid, features, params)
    if stage.problem == "binary_classification":
        fitted = train_classifier(train, valid, features, labels[0], params)
        metrics = classification_metrics(valid[labels[0]], fitted.predict_proba(valid))
        metric = spec.metrics.primary if spec.metrics.primary in metrics else "pr_auc"
        return metric, metrics[metric]
    metric = primary_ranking_metric(spec)
    if stage.problem == "learning_to_rank":
        fitted = train_ranker(train, valid, features, labels[0], spec.events.group, params)
        return metric, split_ranking_metrics(spec, valid, fitted.predict(valid), labels[0])[metric]
    click, purchase = labels
    fitted = train_expected_value(
        train, valid, features, click, purchase, stage.value_feature, params
    )
    value = valid[stage.value_feature].astype(float).fillna(0.0)
    scored = valid.assign(**{REVENUE: valid[purchase] * value})
    return metric, split_ranking_metrics(spec, scored, fitted.predict(scored), REVENUE)[metric]


def tune(spec: UseCaseSpec, model: str, frame: pd.DataFrame) -> TuningResult:
    """Run the YAML's search for ``model``; returns the best parameters and every trial."""
    stage = spec.model[model]
    tuning = stage.tuning
    features = feature_columns(spec, model, frame)
    train, valid, _ = model_splits(spec, model, frame)
    trials: list[dict] = []
    metric_name = {"name": ""}

    def objective(trial: optuna.Trial) -> float:
        sampled = {name: _sample(trial, name, space) for name, space in tuning.space.items()}
        started = time.perf_counter()
        metric, score = _validation_score(
            spec, model, train, valid, features, {**stage.params, **sampled}
        )
        metric_name["name"] = metric
        trials.append({"params": sampled, "score": score, "seconds": time.perf_counter() - started})
        return score

    # the direction needs the metric's name: score one trial's metric name from the spec
    probe = "pr_auc" if stage.problem == "binary_classification" else primary_ranking_metric(spec)
    if stage.problem == "binary_classification" and spec.metrics.primary in (
        "auc",
        "pr_auc",
        "log_loss",
        "ece",
    ):
        probe = spec.metrics.primary
    if stage.problem == "multiclass_classification":
        probe = "log_loss"  # minimised on validation, whatever the gate's metric
    if stage.problem == "regression":
        probe = regression_primary(spec)  # rmse, mae or mape: minimised
    study = optuna.create_study(
        direction="maximize" if higher_is_better(probe) else "minimize",
        sampler=optuna.samplers.TPESampler(seed=tuning.seed),
    )
    study.optimize(objective, n_trials=tuning.trials, timeout=tuning.timeout_s)
    return TuningResult(study.best_params, study.best_value, metric_name["name"] or probe, trials)
