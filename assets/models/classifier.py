"""A LightGBM binary classifier with class weights, early stopping and calibrated probabilities.

Platt scaling (default) keeps the ranking, so AUC and PR-AUC do not change, and undoes the
log-odds shift that class weighting causes; isotonic is the other choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import pandas as pd

from assets.models.lightgbm_inputs import (
    CLASSIFIER_DEFAULTS,
    COMMON_DEFAULTS,
    binary_label,
    check_params,
    check_rows,
    has_param,
    merge_params,
    train_booster,
)
from runtime.models.classifier import CalibratedClassifier, Calibration, Calibrator
from runtime.models.features import prepare_features

# --------------------------------------------------------------------------- classifier


def train_classifier(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    params: Mapping[str, Any] | None = None,
    *,
    calibration: Calibration = "sigmoid",
) -> CalibratedClassifier:
    """LightGBM binary classifier, class-weighted, early-stopped on validation AUC, calibrated.

    Imbalance is handled with ``scale_pos_weight = negatives / positives`` (unless ``params`` set
    it or ``is_unbalance``): rare positives then shape the trees, and the probability distortion
    that weighting causes is removed by the calibrator fit on the validation rows.
    """
    params = dict(params or {})
    check_params(params)
    check_rows(train, valid)
    y_train = binary_label(train, label, "train")
    y_valid = binary_label(valid, label, "validation")
    x_train, categories = prepare_features(train, features)
    x_valid, _ = prepare_features(valid, list(x_train.columns), categories)
    merged = merge_params({**COMMON_DEFAULTS, **CLASSIFIER_DEFAULTS}, params)
    if not (has_param(params, "scale_pos_weight") or has_param(params, "is_unbalance")):
        merged["scale_pos_weight"] = float((y_train == 0).sum() / (y_train == 1).sum())
    train_set = lgb.Dataset(x_train, label=y_train, free_raw_data=False)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set)
    booster = train_booster(merged, train_set, valid_set)
    best = booster.best_iteration or booster.current_iteration()
    margin = booster.predict(x_valid, num_iteration=best, raw_score=True)
    calibrator = Calibrator.fit(margin, y_valid, calibration)
    return CalibratedClassifier(
        booster, list(x_train.columns), categories, label, calibrator, best, merged
    )
