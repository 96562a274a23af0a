"""LightGBM learners for tabular training sets, in one import: a calibrated classifier, a ranker,
a two-head expected-value model, and the approve / review / decline bands of a calibrated score.

Every model is a plain picklable object exposing ``feature_columns`` and a ``predict``-style method
on a DataFrame, which is all ``mlflow.pyfunc`` needs to wrap it. Each learner has its own module;
``lightgbm_inputs`` holds what they share (the feature matrix, parameter checks, labels).
"""

from assets.models.classifier import CalibratedClassifier, Calibrator, train_classifier
from assets.models.decision_bands import DecisionBands, band_summary, decision_bands
from assets.models.expected_value import ExpectedValueModel, train_expected_value
from assets.models.lightgbm_inputs import (
    Categories,
    check_params,
    lightgbm_parameter_names,
    prepare_features,
)
from assets.models.ranker import Ranker, train_ranker

__all__ = [
    "CalibratedClassifier",
    "Calibrator",
    "Categories",
    "DecisionBands",
    "ExpectedValueModel",
    "Ranker",
    "band_summary",
    "check_params",
    "decision_bands",
    "lightgbm_parameter_names",
    "prepare_features",
    "train_classifier",
    "train_expected_value",
    "train_ranker",
]
