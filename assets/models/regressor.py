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

import lightgbm as lgb
import numpy as np
import pandas as pd

from assets.models.lightgbm_inputs import (
    COMMON_DEFAULTS,
    check_params,
    check_rows,
    has_param,
    label_values,
    merge_params,
    train_booster,
)
from runtime.models.features import prepare_features
from runtime.models.regressor import Regressor

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
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_valid: pd.DataFrame,
    y_valid: np.ndarray,
    label: str,
    categories: dict[str, list[str]],
) -> Regressor:
    train_set = lgb.Dataset(x_train, label=y_train, free_raw_data=False)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set)
    booster = train_booster(params, train_set, valid_set)
    best = booster.best_iteration or booster.current_iteration()
    return Regressor(booster, list(x_train.columns), categories, label, best, params)


def quantile_params(params: Mapping[str, Any], level: float) -> dict[str, Any]:
    """The point model's parameters with LightGBM's quantile objective at ``level``."""
    kept = {
        key: value
        for key, value in params.items()
        if not any(has_param({key: value}, name) for name in _QUANTILE_KEYS)
    }
    return {**kept, "objective": "quantile", "alpha": float(level), "metric": "quantile"}


def train_regressor(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    params: Mapping[str, Any] | None = None,
    interval: tuple[float, float] | None = None,
) -> Regressor:
    """LightGBM regressor on ``label``; with ``interval``, lower and upper quantile models too."""
    params = dict(params or {})
    check_params(params)
    check_rows(train, valid)
    y_train = _numeric_label(train, label, "train")
    y_valid = _numeric_label(valid, label, "validation")
    x_train, categories = prepare_features(train, features)
    x_valid, _ = prepare_features(valid, list(x_train.columns), categories)
    merged = merge_params({**COMMON_DEFAULTS, **REGRESSOR_DEFAULTS}, params)
    point = _fit(merged, x_train, y_train, x_valid, y_valid, label, categories)
    if interval is not None:
        low, high = interval
        point.lower, point.upper = (
            _fit(quantile_params(merged, q), x_train, y_train, x_valid, y_valid, label, categories)
            for q in (low, high)
        )
        point.quantiles = (float(low), float(high))
        point.interval_shift = conformal_shift(point, x_valid, y_valid, high - low)
    return point


def conformal_shift(
    model: Regressor, x_valid: pd.DataFrame, y_valid: np.ndarray, coverage: float
) -> float:
    """How far both bounds must move out (negative: in) for ``coverage`` of validation rows,
    with the finite-sample correction of split conformal prediction."""
    low = model.lower.booster.predict(x_valid, num_iteration=model.lower.best_iteration)
    high = model.upper.booster.predict(x_valid, num_iteration=model.upper.best_iteration)
    scores = np.maximum(low - y_valid, y_valid - high)
    n = len(scores)
    level = min(1.0, np.ceil((n + 1) * coverage) / n)
    return float(np.quantile(scores, level, method="higher"))
