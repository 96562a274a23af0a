"""LightGBM learners for tabular training sets, in one import: a calibrated classifier, a ranker,
a two-head expected-value model, and the approve / review / decline bands of a calibrated score.

Every model is a plain picklable object exposing ``feature_columns`` and a ``predict``-style method
on a DataFrame, which is all ``mlflow.pyfunc`` needs to wrap it. Each learner's training has its own module
here and its served model a module in ``runtime.models``.
"""

from assets.models.classifier import train_classifier
from assets.models.decision_bands import band_summary, decision_bands
from assets.models.expected_value import train_expected_value
from assets.models.lightgbm_inputs import check_params, lightgbm_parameter_names
from assets.models.ranker import train_ranker
from runtime.models.classifier import CalibratedClassifier, Calibrator
from runtime.models.decision_bands import DecisionBands
from runtime.models.expected_value import ExpectedValueModel
from runtime.models.features import Categories, prepare_features
from runtime.models.ranker import Ranker

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
