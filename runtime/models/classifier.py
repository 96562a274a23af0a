"""A calibrated LightGBM binary classifier as served: trees, calibrator and decision bands.

Platt scaling (default) keeps the ranking, so AUC and PR-AUC do not change, and undoes the
log-odds shift that class weighting causes; isotonic is the other choice. Training lives in
``assets.models.classifier``; this is what MLflow stores and a service loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from runtime.models.decision_bands import DecisionBands
from runtime.models.features import Categories, feature_array, prepare_features

Calibration = Literal["sigmoid", "isotonic"]


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
            # Platt's two parameters applied directly: the same numbers as ``predict_proba``
            # without scikit-learn's input validation, which cost more than the trees per request
            slope, intercept = float(self.model.coef_[0, 0]), float(self.model.intercept_[0])
            return expit(slope * np.asarray(margin, dtype=float) + intercept)
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
    # approve / review / decline thresholds, set when the YAML asks for decision bands
    bands: DecisionBands | None = None
    # LightGBM threads per predict call; 0 = its default (all cores). Services set 1: on one row
    # the thread start-up costs more than the trees.
    predict_threads: int = 0

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return prepare_features(frame, self.feature_columns, self.categories)[0]

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """The matrix the trees read (see :func:`feature_array`)."""
        return feature_array(frame, self.feature_columns, self.categories)

    def margin(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw log-odds of the trees (class-weighted, so not a calibrated quantity); ``frame``
        may be the :meth:`features` matrix already built."""
        x = frame if isinstance(frame, np.ndarray) else self.features(frame)
        return self.booster.predict(
            x,
            num_iteration=self.best_iteration,
            raw_score=True,
            num_threads=self.predict_threads,
        )

    def predict_raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The uncalibrated probability LightGBM itself reports, kept for comparison."""
        return 1.0 / (1.0 + np.exp(-self.margin(frame)))

    def predict_proba(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated probability of the positive class, one per row (a frame or its matrix)."""
        return self.calibrator.transform(self.margin(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(frame)
