"""A calibrated LightGBM multiclass classifier as served: trees, per-class calibrators, review band.

LightGBM's softmax over class-weighted trees is not a calibrated probability (the weights that
help rare classes shape the trees inflate their scores). Each class gets its own one-vs-rest
calibrator on its raw margin, fit on validation rows the trees never saw, and the calibrated
scores are renormalised to sum to 1 per row: scikit-learn's ``CalibratedClassifierCV`` recipe
for multiclass, with the per-class step being :class:`runtime.models.classifier.Calibrator`.
``review_below`` is the human-in-the-loop band: a row whose top calibrated probability is below
it goes to a person instead of being decided. Training lives in ``assets.models.multiclass``;
this is what MLflow stores and a service loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import softmax

from runtime.models.classifier import Calibrator
from runtime.models.features import Categories, feature_array

REVIEW = "review"  # the decision of a row sent to human review


@dataclass
class ClassCalibration:
    """One-vs-rest calibrators of a multiclass margin matrix, or none (plain softmax)."""

    method: str  # isotonic, sigmoid or none
    calibrators: list[Calibrator] = field(default_factory=list)

    @classmethod
    def fit(cls, margins: np.ndarray, y: np.ndarray, method: str) -> ClassCalibration:
        """Per class ``k``, a calibrator of ``margins[:, k]`` against ``y == k`` (class indices).

        A class absent from ``y`` (or present in every row) cannot be calibrated against
        itself; a ValueError says which, since its probability would be a constant.
        """
        if method == "none":
            return cls(method)
        calibrators = []
        for k in range(margins.shape[1]):
            target = (y == k).astype(int)
            if target.min() == target.max():
                raise ValueError(
                    f"class {k} is {'absent from' if target.max() == 0 else 'every row of'} the"
                    " validation split: one-vs-rest calibration needs both outcomes"
                    " (use calibration: none, or a longer validation window)"
                )
            calibrators.append(Calibrator.fit(margins[:, k], target, method))
        return cls(method, calibrators)

    def transform(self, margins: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, rows summing to 1.

        A row every calibrator maps to 0 (isotonic can) falls back to the softmax of its
        margins, so a probability is never undefined.
        """
        margins = np.atleast_2d(np.asarray(margins, dtype=float))
        fallback = softmax(margins, axis=1)
        if not self.calibrators:
            return fallback
        scores = np.column_stack(
            [c.transform(margins[:, k]) for k, c in enumerate(self.calibrators)]
        )
        total = scores.sum(axis=1, keepdims=True)
        safe = np.where(total > 0, total, 1.0)
        return np.where(total > 0, scores / safe, fallback)


@dataclass
class MulticlassClassifier:
    """A LightGBM multiclass model plus its calibration; ``predict_proba`` is one row per input
    and one column per class (in ``classes`` order), summing to 1."""

    booster: lgb.Booster
    feature_columns: list[str]
    categories: Categories
    label: str
    classes: list[str]  # class names, in the booster's class order
    codes: list[int]  # the label column's value of each class
    calibration: ClassCalibration
    best_iteration: int
    params: dict[str, Any] = field(default_factory=dict)
    review_below: float | None = None
    # LightGBM threads per predict call; 0 = its default. Services set 1 (see the classifier).
    predict_threads: int = 0

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """The matrix the trees read (see :func:`feature_array`)."""
        return feature_array(frame, self.feature_columns, self.categories)

    def margins(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw per-class scores of the trees, ``[rows, classes]``."""
        x = frame if isinstance(frame, np.ndarray) else self.features(frame)
        raw = self.booster.predict(
            x, num_iteration=self.best_iteration, raw_score=True, num_threads=self.predict_threads
        )
        return np.asarray(raw, dtype=float).reshape(len(x), len(self.classes))

    def predict_proba(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, ``[rows, classes]``."""
        return self.calibration.transform(self.margins(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """What the pyfunc (and drift monitoring) reads: the class probabilities."""
        return self.predict_proba(frame)

    def decide(self, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row the top class's index, and the decision: its name, or ``review`` when its
        probability is below ``review_below``."""
        return decide(probabilities, self.classes, self.review_below)


def decide(
    probabilities: np.ndarray, classes: list[str], review_below: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top class index and decision (class name or ``review``) per row of ``probabilities``."""
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=float))
    top = probabilities.argmax(axis=1)
    decision = np.asarray(classes, dtype=object)[top]
    if review_below is not None:
        decision = np.where(probabilities.max(axis=1) < review_below, REVIEW, decision)
    return top, decision
