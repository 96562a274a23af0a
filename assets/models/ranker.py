"""A LightGBM LambdaRank ranker over request groups with graded gains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from assets.models.lightgbm_inputs import (
    COMMON_DEFAULTS,
    MAX_EXPONENTIAL_LABEL,
    RANKER_DEFAULTS,
    check_params,
    check_rows,
    has_param,
    label_values,
    merge_params,
    train_booster,
)
from runtime.models.features import prepare_features
from runtime.models.ranker import Ranker

# --------------------------------------------------------------------------- ranker


def _graded_label(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    y = label_values(frame, label, part)
    if (y < 0).any() or (y != np.round(y)).any():
        raise ValueError(f"label {label!r} must be non-negative integers in {part}")
    return y.astype(int)


def _group_sizes(frame: pd.DataFrame, group: str) -> np.ndarray:
    if group not in frame.columns:
        raise ValueError(f"group column {group!r} is not in the frame")
    return frame.groupby(group, sort=False, observed=True).size().to_numpy()


def _label_gain(max_label: int) -> list[float]:
    """``2**label - 1`` gains (LightGBM's default) sized for the labels present, linear beyond 30.

    LightGBM fails on a label at or above ``len(label_gain)``; setting it from the data means a
    graded label set never depends on the default's length.
    """
    size = max(max_label + 1, 2)
    if max_label <= MAX_EXPONENTIAL_LABEL:
        return [float(2**g - 1) for g in range(size)]
    return [float(g) for g in range(size)]


def train_ranker(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    label: str,
    group: str,
    params: Mapping[str, Any] | None = None,
) -> Ranker:
    """LambdaRank over query/request groups, early-stopped on validation NDCG@10 by default.

    Rows are stably sorted by ``group`` because LightGBM reads groups as consecutive runs.
    """
    params = dict(params or {})
    check_params(params)
    check_rows(train, valid)
    train = train.sort_values(group, kind="stable") if group in train.columns else train
    valid = valid.sort_values(group, kind="stable") if group in valid.columns else valid
    y_train, y_valid = (
        _graded_label(train, label, "train"),
        _graded_label(valid, label, "validation"),
    )
    if y_train.max() == 0:
        raise ValueError(f"label {label!r} has no relevant rows in train")
    x_train, categories = prepare_features(train, features)
    x_valid, _ = prepare_features(valid, list(x_train.columns), categories)
    merged = merge_params({**COMMON_DEFAULTS, **RANKER_DEFAULTS}, params)
    if not has_param(params, "label_gain"):
        merged["label_gain"] = _label_gain(int(max(y_train.max(), y_valid.max())))
    train_set = lgb.Dataset(
        x_train, label=y_train, group=_group_sizes(train, group), free_raw_data=False
    )
    valid_set = lgb.Dataset(
        x_valid, label=y_valid, group=_group_sizes(valid, group), reference=train_set
    )
    booster = train_booster(merged, train_set, valid_set)
    best = booster.best_iteration or booster.current_iteration()
    return Ranker(booster, list(x_train.columns), categories, label, group, best, merged)
