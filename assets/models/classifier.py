"""A LightGBM binary classifier with class weights, early stopping and calibrated probabilities.

Platt scaling (default) keeps the ranking, so AUC and PR-AUC do not change, and undoes the
log-odds shift that class weighting causes; isotonic is the other choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from assets.models.lightgbm_inputs import (
    _CLASSIFIER_DEFAULTS,
    _COMMON_DEFAULTS,
    Calibration,
    Categories,
    _binary_label,
    _check_rows,
    _has,
    _merge,
    _train_booster,
    check_params,
    prepare_features,
)

# --------------------------------------------------------------------------- classifier


@dataclass
class Calibrator:
    """Maps LightGBM's raw margin to a probability, fit on validation rows the trees never saw.

    ``sigmoid`` (Platt) is the default: with ``scale_pos_weight`` the trees' log-odds are mostly
    shifted by ``log(weight)`` and stretched, which two parameters undo; it keeps the ranking (AUC
    and PR-AUC are unchanged) and does not overfit validation sets with few positives, which matter
    for fraud. ``isotonic`` is more flexible but needs many positives and creates ties.
    """

    method: Calibration
    model: LogisticRegression | IsotonicRegression

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray, method: Calibration) -> Calibrator:
        if method == "sigmoid":
            model: LogisticRegression | IsotonicRegression = LogisticRegression(C=1e6)
            model.fit(margin.reshape(-1, 1), y)
        elif method == "isotonic":
            model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            model.fit(margin, y)
        else:
            raise ValueError(f"unknown calibration {method!r}: use 'sigmoid' or 'isotonic'")
        return cls(method, model)

    def transform(self, margin: np.ndarray) -> np.ndarray:
        if isinstance(self.model, LogisticRegression):
            return self.model.predict_proba(margin.reshape(-1, 1))[:, 1]
        return self.model.predict(margin)


@dataclass
class CalibratedClassifier:
    """A LightGBM binary model plus its calibrator; ``predict_proba`` gives calibrated P(label)."""

    booster: lgb.Booster
    feature_columns: list[str]
    categories: Categories
    label: str
    calibrator: Calibrator
    best_iteration: int
    params: dict[str, Any] = field(default_factory=dict)

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return prepare_features(frame, self.feature_columns, self.categories)[0]

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw log-odds of the trees (class-weighted, so not a calibrated quantity)."""
        x = self.matrix(frame)
        return self.booster.predict(x, num_iteration=self.best_iteration, raw_score=True)

    def predict_raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The uncalibrated probability LightGBM itself reports, kept for comparison."""
        return 1.0 / (1.0 + np.exp(-self.margin(frame)))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class, one per row."""
        return self.calibrator.transform(self.margin(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(frame)


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
    _check_rows(train, valid)
    y_train = _binary_label(train, label, "train")
    y_valid = _binary_label(valid, label, "validation")
    x_train, categories = prepare_features(train, features)
    x_valid, _ = prepare_features(valid, list(x_train.columns), categories)
    merged = _merge({**_COMMON_DEFAULTS, **_CLASSIFIER_DEFAULTS}, params)
    if not (_has(params, "scale_pos_weight") or _has(params, "is_unbalance")):
        merged["scale_pos_weight"] = float((y_train == 0).sum() / (y_train == 1).sum())
    train_set = lgb.Dataset(x_train, label=y_train, free_raw_data=False)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set)
    booster = _train_booster(merged, train_set, valid_set)
    best = booster.best_iteration or booster.current_iteration()
    margin = booster.predict(x_valid, num_iteration=best, raw_score=True)
    calibrator = Calibrator.fit(margin, y_valid, calibration)
    return CalibratedClassifier(
        booster, list(x_train.columns), categories, label, calibrator, best, merged
    )
