"""``problem: regression``: fit the regressor, judge it beside its baseline on the test split.

The trainer of :data:`assets.models.train.TRAINERS` for regression, returning what every
trainer returns (fitted model, metrics, baseline metrics, primary metric, predictions, the
gate's ``evaluate``, extras with the plots). The point model is judged by RMSE, MAE and MAPE;
with ``regression.interval`` the quantile models' ``interval_coverage`` is reported too, and
the baseline gets an interval of its own (its training residuals' quantiles) so that coverage
is compared like with like. The gate compares the primary metric (lower is better).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from assets.models.evaluation_rows import plan_evaluation
from assets.models.regression_baselines import (
    History,
    baseline_interval,
    label_known_times,
    regression_baseline,
)
from assets.models.regression_metrics import regression_metrics
from assets.models.regression_plots import regression_plots
from assets.models.regressor import train_regressor
from assets.training.model_views import label_columns
from assets.training.set_splits import SetSplits
from configs.schema.usecase import UseCaseSpec

SCORE = "score"  # the point prediction, as every trainer's predictions table names its score
LOWER, UPPER = "lower", "upper"
POINT_METRICS = ("rmse", "mae", "mape")


def regression_primary(spec: UseCaseSpec) -> str:
    """The gate's metric: ``metrics.primary`` when it judges a point prediction, else RMSE."""
    primary = spec.metrics.primary if spec.metrics is not None else "rmse"
    return primary if primary in POINT_METRICS else "rmse"


Bounds = tuple[np.ndarray, np.ndarray] | None


def _judge(y: np.ndarray):
    """``judge(prediction, bounds)(rows)``: the regression metrics of ``rows``."""

    def judge(prediction: np.ndarray, bounds: Bounds):
        def compute(rows: np.ndarray) -> dict[str, float]:
            low, high = (None, None) if bounds is None else (bounds[0][rows], bounds[1][rows])
            return regression_metrics(y[rows], prediction[rows], low, high)

        return compute

    return judge


def _history(spec: UseCaseSpec, label: str, frame: pd.DataFrame | SetSplits, unit: str) -> History:
    """Every labelled row of the training set, for ``last_value``: its unit, time, arrival (of
    a set read by split, those columns alone, in the set's order)."""
    if isinstance(frame, SetSplits):
        rule = spec.labels[label]
        wanted = [unit, spec.events.timestamp, rule.column, rule.available_at]
        frame = frame.whole([c for c in dict.fromkeys(wanted) if c and c in frame.columns])
    known = label_known_times(spec, label, frame)
    return History(frame, unit, spec.events.timestamp, known)


def train_regression(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame, features: list[str], params: dict
):
    """Fit ``model`` (problem: regression) and evaluate it against its baseline on test."""
    # imported here: train.py imports this module to list it among its trainers
    from assets.models.train import model_input, model_splits

    stage = spec.model[model]
    name, label = next(iter(label_columns(spec, model).items()))
    train, valid, test = model_splits(spec, model, frame)
    plan = plan_evaluation(spec, model, train, test, label)
    interval = stage.regression.interval if stage.regression is not None else None
    fitted = train_regressor(train, valid, features, label, params, interval)
    x_test = fitted.features(test)
    prediction = fitted.predict(x_test)
    bounds = fitted.predict_interval(x_test) if interval is not None else None
    judge = _judge(test[label].to_numpy(dtype=float))
    metrics = plan.metrics(judge(prediction, bounds), test)

    baseline_name = stage.baseline_name
    history = _history(spec, name, frame, plan.unit) if baseline_name == "last_value" else None
    predict_baseline = regression_baseline(baseline_name, train, label, history)
    baseline = predict_baseline(test)
    baseline_bounds = (
        baseline_interval(predict_baseline, train, test, label, interval)
        if interval is not None
        else None
    )
    baseline_metrics = plan.metrics(judge(baseline, baseline_bounds), test)

    rows = plan.evaluated
    y = test[label].to_numpy(dtype=float)
    shown = (bounds[0][rows], bounds[1][rows]) if bounds is not None else None
    extra: dict[str, Any] = {
        "plots": regression_plots(y[rows], prediction[rows], baseline[rows], baseline_name, shown)
    }
    predictions = test[[c for c in test.columns if c not in features]].assign(**{SCORE: prediction})
    if bounds is not None:
        predictions = predictions.assign(**{LOWER: bounds[0], UPPER: bounds[1]})
    primary = regression_primary(spec)

    def evaluate(candidate) -> float:
        candidate_prediction = np.asarray(candidate.predict(model_input(test, features)), float)
        return plan.overall(judge(candidate_prediction, None))[primary]

    return fitted, metrics, baseline_metrics, primary, plan.annotate(predictions), evaluate, extra


def regression_validation_score(
    spec: UseCaseSpec,
    model: str,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    params: dict,
) -> tuple[str, float]:
    """A tuning trial's score: the point model (no interval) on validation, primary metric."""
    label = next(iter(label_columns(spec, model).values()))
    fitted = train_regressor(train, valid, features, label, params)
    y = valid[label].to_numpy(dtype=float)
    primary = regression_primary(spec)
    return primary, regression_metrics(y, fitted.predict(valid))[primary]
