"""A LightGBM binary classifier with class weights, early stopping and calibrated probabilities.

Platt scaling (default) keeps the ranking, so AUC and PR-AUC do not change, and undoes the
log-odds shift that class weighting causes; isotonic is the other choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
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
from assets.models.streamed_matrix import feature_matrices, sampling_params, streamed_dataset
from runtime.models.classifier import CalibratedClassifier, Calibration, Calibrator
from runtime.models.features import prepare_features
from runtime.table_chunks import Chunks
from runtime.training_engine import current_training_engine

# --------------------------------------------------------------------------- classifier


def _label_rows(rows: pd.DataFrame | Chunks, label: str, part: str) -> pd.DataFrame:
    """The label column of a split, held or read in chunks (one number a row)."""
    table = Chunks.of(rows)
    if label not in table.columns:
        raise ValueError(f"label {label!r} is not a column of the {part} set")
    return table.frame([label])


def train_classifier(
    train: pd.DataFrame | Chunks,
    valid: pd.DataFrame | Chunks,
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

    Either split may be read in chunks: LightGBM then bins it as it reads
    (``assets.models.streamed_matrix``), never holding it or its matrix, and grows the same
    trees; the validation margins are computed a chunk at a time. Ray Train's trainer shares
    frames among its workers, so on Ray the splits are read whole.
    """
    params = dict(params or {})
    check_params(params)
    if current_training_engine() is not None:  # frames for Ray Train, held ones as they are
        train, valid = (
            rows.frame(list(rows.columns)) if isinstance(rows, Chunks) else rows
            for rows in (train, valid)
        )
    train_labels, valid_labels = (
        _label_rows(train, label, "train"),
        _label_rows(valid, label, "validation"),
    )
    check_rows(train_labels, valid_labels)
    y_train = binary_label(train_labels, label, "train")
    y_valid = binary_label(valid_labels, label, "validation")
    del train_labels, valid_labels
    merged = merge_params({**COMMON_DEFAULTS, **CLASSIFIER_DEFAULTS}, params)
    if not (has_param(params, "scale_pos_weight") or has_param(params, "is_unbalance")):
        merged["scale_pos_weight"] = float((y_train == 0).sum() / (y_train == 1).sum())
    fit_params = merged
    if isinstance(train, Chunks):
        streamed = streamed_dataset(train, features, y_train, free_raw_data=False)
        train_set, columns, categories = streamed.dataset, streamed.columns, streamed.categories
        fit_params = {**merged, **sampling_params(merged)}
    else:
        x_train, categories = prepare_features(train, features)
        columns = list(x_train.columns)
        train_set = lgb.Dataset(x_train, label=y_train, free_raw_data=False)
        del x_train
    if isinstance(valid, Chunks):
        layout = (columns, categories)
        valid_set = streamed_dataset(valid, columns, y_valid, layout=layout, reference=train_set)
        booster = train_booster(fit_params, train_set, valid_set.dataset)
        best = booster.best_iteration or booster.current_iteration()
        margins = [
            booster.predict(matrix, num_iteration=best, raw_score=True)
            for matrix in feature_matrices(valid, columns, categories)
        ]
        margin = np.concatenate(margins)
    else:
        x_valid, _ = prepare_features(valid, columns, categories)
        booster = train_booster(
            fit_params, train_set, lgb.Dataset(x_valid, y_valid, reference=train_set)
        )
        best = booster.best_iteration or booster.current_iteration()
        margin = booster.predict(x_valid, num_iteration=best, raw_score=True)
    calibrator = Calibrator.fit(margin, y_valid, calibration)
    return CalibratedClassifier(booster, columns, categories, label, calibrator, best, merged)
