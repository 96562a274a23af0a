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

from assets.models.baselines import FEATURE_PREFIX
from assets.models.evaluation_rows import evaluation_unit, plan_evaluation
from assets.models.regression_baselines import (
    History,
    baseline_interval,
    label_known_times,
    regression_baseline,
)
from assets.models.regression_metrics import regression_metrics
from assets.models.regression_plots import regression_plots
from assets.models.regressor import train_regressor
from assets.models.split_chunks import model_parts, scored_chunks
from assets.training.model_views import label_columns
from assets.training.set_splits import SetSplits
from configs.schema.usecase import UseCaseSpec
from runtime.table_chunks import Chunks

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


def _baseline_columns(spec: UseCaseSpec, name: str, label: str, unit: str) -> list[str]:
    """The columns a regression baseline reads of the rows it predicts and is fit on: the
    label, the unit and time (``last_value``), its feature (``feature:<column>``)."""
    column = name.removeprefix(FEATURE_PREFIX) if name.startswith(FEATURE_PREFIX) else None
    return [c for c in dict.fromkeys([label, unit, spec.events.timestamp, column]) if c]


def _predicted(fitted, rows: pd.DataFrame | Chunks, interval: bool):
    """The point predictions of ``rows`` and, with ``interval``, their bounds, a chunk at a time
    (a frame is one chunk)."""
    points, lows, highs = [], [], []
    for chunk in Chunks.of(rows)(fitted.feature_columns):
        if not len(chunk):
            continue
        x = fitted.features(chunk)
        points.append(fitted.predict(x))
        if interval:
            low, high = fitted.predict_interval(x)
            lows.append(low)
            highs.append(high)
    prediction = np.concatenate(points) if points else np.empty(0)
    return prediction, ((np.concatenate(lows), np.concatenate(highs)) if interval else None)


def train_regression(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame, features: list[str], params: dict
):
    """Fit ``model`` (problem: regression) and evaluate it against its baseline on test; its
    splits may stay in the set's file (``assets.models.split_chunks``), the test rows' other
    columns and the baseline's held."""
    # imported here: train.py imports this module to list it among its trainers
    from assets.models.train import model_input

    stage = spec.model[model]
    name, label = next(iter(label_columns(spec, model).items()))
    baseline_name = stage.baseline_name
    unit = evaluation_unit(spec, model)
    wanted = _baseline_columns(spec, baseline_name, label, unit)

    def baseline_rows_of(train: Chunks, rows: int) -> pd.DataFrame:
        return train.frame([c for c in wanted if c in train.columns])

    parts = model_parts(spec, model, frame, features, label, baseline_rows_of, wanted)
    train, valid, test_chunks, test = parts.train, parts.valid, parts.scored, parts.test
    baseline_rows = parts.baseline_rows
    plan = plan_evaluation(spec, model, parts.units, test, label)
    del parts
    interval = stage.regression.interval if stage.regression is not None else None
    fitted = train_regressor(train, valid, features, label, params, interval)
    prediction, bounds = _predicted(fitted, test_chunks, interval is not None)
    judge = _judge(test[label].to_numpy(dtype=float))
    metrics = plan.metrics(judge(prediction, bounds), test)

    history = _history(spec, name, frame, plan.unit) if baseline_name == "last_value" else None
    predict_baseline = regression_baseline(baseline_name, baseline_rows, label, history)
    baseline = predict_baseline(test)
    baseline_bounds = (
        baseline_interval(predict_baseline, baseline_rows, test, label, interval)
        if interval is not None
        else None
    )
    del baseline_rows
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
        candidate_prediction = scored_chunks(
            lambda chunk: candidate.predict(model_input(chunk, features)), test_chunks, features
        )
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
