"""A LightGBM regressor, early-stopped on validation, with optional quantile interval models.

The loss is the YAML's own LightGBM ``objective`` (default ``regression``, i.e. L2; ``huber``,
``quantile`` with ``alpha``, ...), and early stopping watches that objective's own metric unless
``params`` name one. An interval (``regression.interval: [lower, upper]``) adds two boosters with
the same parameters but ``objective: quantile`` at each level, early-stopped on their own
quantile (pinball) loss: the loss whose minimiser *is* that quantile.

Boosted quantile models fit the training rows' quantiles, and early stopping leaves them a little
overconfident on new rows (an 80% interval covered about 75% of test rows on the pricing world).
The interval is therefore conformalized on the validation rows (conformalized quantile
regression, Romano et al. 2019): both bounds move by the ``(1 - alpha)(1 + 1/n)`` quantile of
``max(lower - y, y - upper)``, which gives the nominal coverage on exchangeable rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from assets.models.lightgbm_inputs import (
    COMMON_DEFAULTS,
    check_params,
    has_param,
    label_values,
    merge_params,
    train_booster,
)
from assets.models.streamed_matrix import fit_splits, split_predictions, training_datasets
from runtime.models.regressor import Regressor
from runtime.table_chunks import Chunks

REGRESSOR_DEFAULTS: dict[str, Any] = {"objective": "regression"}
# what a quantile head replaces in the point model's parameters
_QUANTILE_KEYS = ("objective", "alpha", "metric")


def _numeric_label(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    y = label_values(frame, label, part)
    if not np.isfinite(y).all():
        raise ValueError(f"label {label!r} has {int((~np.isfinite(y)).sum())} infinite values")
    return y


def _fit(
    params: dict[str, Any],
    train: pd.DataFrame | Chunks,
    valid: pd.DataFrame | Chunks,
    features: list[str],
    labels: tuple[np.ndarray, np.ndarray],
    label: str,
) -> Regressor:
    data = training_datasets(train, valid, features, labels, params)
    booster = train_booster(data.params, data.train, data.valid)
    best = booster.best_iteration or booster.current_iteration()
    return Regressor(booster, data.columns, data.categories, label, best, params)


def quantile_params(params: Mapping[str, Any], level: float) -> dict[str, Any]:
    """The point model's parameters with LightGBM's quantile objective at ``level``."""
    kept = {
        key: value
        for key, value in params.items()
        if not any(has_param({key: value}, name) for name in _QUANTILE_KEYS)
    }
    return {**kept, "objective": "quantile", "alpha": float(level), "metric": "quantile"}


def train_regressor(
    train: pd.DataFrame | Chunks,
    valid: pd.DataFrame | Chunks,
    features: list[str],
    label: str,
    params: Mapping[str, Any] | None = None,
    interval: tuple[float, float] | None = None,
) -> Regressor:
    """LightGBM regressor on ``label``; with ``interval``, lower and upper quantile models too.

    Either split may be read in chunks: each booster's sets are then binned as they are read
    (``assets.models.streamed_matrix``), the same trees; on Ray the splits are read whole.
    """
    params = dict(params or {})
    check_params(params)
    train, valid, train_labels, valid_labels = fit_splits(train, valid, label)
    y_train = _numeric_label(train_labels, label, "train")
    y_valid = _numeric_label(valid_labels, label, "validation")
    del train_labels, valid_labels
    labels = (y_train, y_valid)
    merged = merge_params({**COMMON_DEFAULTS, **REGRESSOR_DEFAULTS}, params)
    point = _fit(merged, train, valid, features, labels, label)
    if interval is not None:
        low, high = interval
        point.lower, point.upper = (
            _fit(quantile_params(merged, q), train, valid, features, labels, label)
            for q in (low, high)
        )
        point.quantiles = (float(low), float(high))
        point.interval_shift = conformal_shift(point, valid, y_valid, high - low)
    return point


def conformal_shift(
    model: Regressor, valid: pd.DataFrame | Chunks, y_valid: np.ndarray, coverage: float
) -> float:
    """How far both bounds must move out (negative: in) for ``coverage`` of validation rows,
    with the finite-sample correction of split conformal prediction."""
    low, high = (
        split_predictions(
            head.booster,
            valid,
            model.feature_columns,
            model.categories,
            num_iteration=head.best_iteration,
        )
        for head in (model.lower, model.upper)
    )
    scores = np.maximum(low - y_valid, y_valid - high)
    n = len(scores)
    level = min(1.0, np.ceil((n + 1) * coverage) / n)
    return float(np.quantile(scores, level, method="higher"))
