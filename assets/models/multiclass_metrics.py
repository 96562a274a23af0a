"""Offline metrics of a multiclass classifier, its review band, and the baselines it must beat.

scikit-learn computes every metric (macro-F1, accuracy, log-loss, per-class precision and
recall); this module only fixes the class order (``labels=range(K)``, so a class missing from
the test rows still counts in the macro average, as a 0) and reads a probability matrix as the
decision the service would take: the top class, or human review below ``review_below``.

The baselines answer "is the model worth its trees?": ``class_prior`` gives every row the class
shares of the train split (it always predicts the majority class, the accuracy any model
reaches by saying "ok"); ``logistic_regression`` is a multinomial linear model on the numeric
features.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from runtime.models.features import prepare_features
from runtime.models.multiclass import REVIEW, decide
from runtime.table_chunks import Chunks

_EPS = 1e-15
MULTICLASS_METRICS = ("macro_f1", "accuracy", "log_loss")
MULTICLASS_BASELINES = ("class_prior", "logistic_regression")


def _checked(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=int)
    p = np.atleast_2d(np.asarray(p, dtype=float))
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"need equally long, non-empty labels and scores ({len(y)} vs {len(p)})")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"class indices must be in 0..{p.shape[1] - 1}, got {y.min()}..{y.max()}")
    return y, p


def multiclass_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """macro_f1, accuracy (of the top class) and log_loss of probabilities ``p[rows, classes]``
    against class indices ``y``, plus the row count."""
    y, p = _checked(y, p)
    labels = list(range(p.shape[1]))
    predicted = p.argmax(axis=1)
    clipped = np.clip(p, _EPS, 1.0)
    return {
        "macro_f1": float(f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, predicted)),
        "log_loss": float(log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=labels)),
        "rows": len(y),
    }


def per_class_table(y: np.ndarray, p: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per class: support (test rows of it), predicted rows, precision, recall, F1."""
    y, p = _checked(y, p)
    predicted = p.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=0
    )
    return pd.DataFrame(
        {
            "class": classes,
            "support": support.astype(int),
            "predicted": np.bincount(predicted, minlength=len(classes)).astype(int),
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    )


def review_summary(
    y: np.ndarray, p: np.ndarray, classes: list[str], review_below: float
) -> dict[str, float]:
    """What the review band does on (y, p): the share sent to people, and how good the
    automatic decisions are on the rest (accuracy and macro-F1), beside the accuracy without
    the band. NaN where nothing is decided automatically."""
    y, p = _checked(y, p)
    top, decision = decide(p, classes, review_below)
    auto = decision != REVIEW
    labels = list(range(len(classes)))
    return {
        "review_share": float(1.0 - auto.mean()),
        "auto_share": float(auto.mean()),
        "auto_accuracy": float((top[auto] == y[auto]).mean()) if auto.any() else math.nan,
        "auto_macro_f1": (
            float(f1_score(y[auto], top[auto], labels=labels, average="macro", zero_division=0))
            if auto.any()
            else math.nan
        ),
        "accuracy_without_review": float((top == y).mean()),
    }


def class_prior(y_train: np.ndarray, rows: int, n_classes: int) -> np.ndarray:
    """Every row scored with the class shares of the train split (``[rows, classes]``)."""
    counts = np.bincount(np.asarray(y_train, dtype=int), minlength=n_classes).astype(float)
    if counts.sum() == 0:
        raise ValueError("class_prior needs at least one training row")
    return np.tile(counts / counts.sum(), (rows, 1))


def positive_prior(train: pd.DataFrame, test: pd.DataFrame, label: str) -> np.ndarray:
    """``class_prior`` of a binary label as a score: the train split's positive rate, every row
    (the constant a model with no features would give)."""
    if label not in train.columns:
        raise ValueError(f"label {label!r} is not a column of the train set")
    positive = (train[label].to_numpy(dtype=float, na_value=0.0) > 0).astype(int)
    return np.full(len(test), float(positive.mean()) if len(positive) else 0.0)


def multinomial_logistic(
    train: pd.DataFrame,
    test: pd.DataFrame | Chunks,
    features: list[str],
    y_train: np.ndarray,
    n_classes: int,
) -> np.ndarray:
    """Class probabilities from a class-balanced multinomial logistic regression on the numeric
    features (median-imputed with missing indicators, standardised), ``[rows, classes]``; the
    test rows may come in chunks, each scored as it is read.

    A class absent from the train split gets probability 0 (the model never saw it).
    """
    x_train, categories = prepare_features(train, features)
    numeric = [c for c in x_train.columns if c not in categories]
    if not numeric:
        raise ValueError("logistic_regression needs at least one numeric feature")
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=1000),
    )
    model.fit(x_train[numeric].to_numpy(), np.asarray(y_train, dtype=int))
    del x_train
    parts = []
    for chunk in Chunks.of(test)(numeric):
        if len(chunk):
            x_test = prepare_features(chunk, numeric, {})[0][numeric].to_numpy()
            seen = np.zeros((len(chunk), n_classes))
            seen[:, model.classes_] = model.predict_proba(x_test)
            parts.append(seen)
    return np.concatenate(parts) if parts else np.zeros((0, n_classes))
