"""A LightGBM binary classifier with class weights, early stopping and calibrated probabilities.

Platt scaling (default) keeps the ranking, so AUC and PR-AUC do not change, and undoes the
log-odds shift that class weighting causes; isotonic is the other choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from assets.models.lightgbm_inputs import (
    CLASSIFIER_DEFAULTS,
    COMMON_DEFAULTS,
    binary_label,
    check_params,
    has_param,
    merge_params,
    train_booster,
)
from assets.models.streamed_matrix import fit_splits, split_predictions, training_datasets
from runtime.models.classifier import CalibratedClassifier, Calibration, Calibrator
from runtime.table_chunks import Chunks

# --------------------------------------------------------------------------- classifier


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
    train, valid, train_labels, valid_labels = fit_splits(train, valid, label)
    y_train = binary_label(train_labels, label, "train")
    y_valid = binary_label(valid_labels, label, "validation")
    del train_labels, valid_labels
    merged = merge_params({**COMMON_DEFAULTS, **CLASSIFIER_DEFAULTS}, params)
    if not (has_param(params, "scale_pos_weight") or has_param(params, "is_unbalance")):
        merged["scale_pos_weight"] = float((y_train == 0).sum() / (y_train == 1).sum())
    data = training_datasets(train, valid, features, (y_train, y_valid), merged)
    booster = train_booster(data.params, data.train, data.valid)
    best = booster.best_iteration or booster.current_iteration()
    columns, categories = data.columns, data.categories
    margin = split_predictions(
        booster, valid, columns, categories, num_iteration=best, raw_score=True
    )
    calibrator = Calibrator.fit(margin, y_valid, calibration)
    return CalibratedClassifier(booster, columns, categories, label, calibrator, best, merged)
