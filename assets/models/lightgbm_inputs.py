"""What every LightGBM learner here shares: the feature matrix, parameter checks, labels.

Features reach LightGBM through ``prepare_features`` only, so training and serving see exactly
the same matrix: numbers as float, strings as a ``category`` whose levels are fixed from the
training split (a level first seen later is missing, never a new code that would collide with
a trained one), and last-N id lists dropped (LightGBM cannot split on a list). Parameters are
checked by name against LightGBM's own list, since LightGBM only warns on unknown ones.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from lightgbm.basic import LightGBMError, _ConfigAliases

SPLIT = "split"
TRAIN = "train"
Categories = dict[str, list[str]]
Calibration = Literal["sigmoid", "isotonic"]

# ``AggregateSpec.feature_names`` names last-N id lists ``<column>_last<n>_<window>``: recognised
# by name too, so a list column that happens to be all-null is still dropped, not made a category.
_LIST_NAME = re.compile(r"_last\d+_[^_]+$")

# Defaults every learner starts from; a user parameter (or any alias of it) replaces the default.
_COMMON_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "num_iterations": 1000,
    "early_stopping_round": 50,
    "first_metric_only": True,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
# AUC is blind to the score shift that ``scale_pos_weight`` causes, so it is the fair stopping
# criterion for a model whose probabilities are calibrated afterwards anyway.
_CLASSIFIER_DEFAULTS: dict[str, Any] = {"objective": "binary", "metric": "auc"}
_RANKER_DEFAULTS: dict[str, Any] = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10]}
# LightGBM's own default gains stop at label 30; beyond that 2**label - 1 stops being sensible.
_MAX_EXPONENTIAL_LABEL = 30


# --------------------------------------------------------------------------- features


def _is_list_column(name: str, series: pd.Series) -> bool:
    """Last-N id lists (arrays in the parquet): recognised by their values or their name."""
    if _LIST_NAME.search(name) and series.dtype == object:
        return True
    if series.dtype != object:
        return False
    values = series.dropna()
    return len(values) > 0 and isinstance(values.iloc[0], list | tuple | np.ndarray)


def _is_string_column(series: pd.Series) -> bool:
    return (
        series.dtype == object
        or isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(series.dtype)
    )


def _training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows category levels are learned from: the train split when the frame carries one."""
    if SPLIT in frame.columns:
        return frame[frame[SPLIT].astype(str) == TRAIN]
    return frame


def _fit_categories(frame: pd.DataFrame, columns: Iterable[str]) -> Categories:
    rows = _training_rows(frame)
    return {col: sorted(rows[col].dropna().astype(str).unique().tolist()) for col in columns}


def _as_category(series: pd.Series, levels: list[str]) -> pd.Series:
    text = series.astype(object).where(series.notna(), None)
    text = text.map(lambda value: None if value is None else str(value))
    return pd.Series(pd.Categorical(text, categories=levels), index=series.index, name=series.name)


def _as_float(name: str, series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise ValueError(f"feature {name!r} is a timestamp; convert it to seconds first")
    try:
        values = series.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise ValueError(f"feature {name!r} is not numeric ({series.dtype}): {err}") from err
    infinite = int(np.isinf(values).sum())
    if infinite:
        raise ValueError(f"feature {name!r} has {infinite} infinite values")
    return pd.Series(values, index=series.index, name=name)


def prepare_features(
    frame: pd.DataFrame, feature_columns: list[str], categories: Categories | None = None
) -> tuple[pd.DataFrame, Categories]:
    """The model matrix of ``frame``: floats and fixed-level categories, list columns dropped.

    With ``categories=None`` the string columns' levels are learned from the train split (all rows
    when there is no ``split`` column) and returned; pass them back for every later frame so codes
    never shift between training and serving. Missing values stay NaN, which LightGBM routes
    natively; an infinite value is an error because it is almost always a division bug upstream.
    """
    missing = [col for col in feature_columns if col not in frame.columns]
    if missing:
        raise ValueError(f"features missing from the frame: {', '.join(missing)}")
    if categories is None:
        used = [col for col in feature_columns if not _is_list_column(col, frame[col])]
        categories = _fit_categories(frame, [c for c in used if _is_string_column(frame[c])])
    else:
        used = [c for c in feature_columns if c in categories or not _is_list_column(c, frame[c])]
    columns = {
        col: _as_category(frame[col], categories[col])
        if col in categories
        else _as_float(col, frame[col])
        for col in used
    }
    return pd.DataFrame(columns, index=frame.index), categories


# --------------------------------------------------------------------------- parameters


@functools.cache
def lightgbm_parameter_names() -> frozenset[str]:
    """Every parameter name and alias LightGBM knows, read from the library itself.

    LightGBM only *warns* on an unknown parameter and trains on, so a typo would silently train
    the default model; ``LGBM_DumpParamAliases`` (wrapped by ``_ConfigAliases``) lists them all.
    """
    aliases = _ConfigAliases._get_all_param_aliases()
    return frozenset(name for names in aliases.values() for name in names)


def check_params(params: Mapping[str, Any]) -> None:
    """Reject parameter names LightGBM does not know, naming them."""
    unknown = sorted(set(params) - lightgbm_parameter_names())
    if unknown:
        raise ValueError(f"unknown LightGBM parameter(s): {', '.join(map(repr, unknown))}")


def _has(params: Mapping[str, Any], name: str) -> bool:
    return bool(_ConfigAliases.get(name) & set(params))


def _merge(defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """User parameters over defaults; a default is dropped when the user set any of its aliases."""
    kept = {key: value for key, value in defaults.items() if not _has(params, key)}
    return {**kept, **params}


def _train_booster(
    params: dict[str, Any], train_set: lgb.Dataset, valid_set: lgb.Dataset
) -> lgb.Booster:
    """``lgb.train`` with early stopping on the validation set; LightGBM errors as ValueError."""
    try:
        return lgb.train(params, train_set, valid_sets=[valid_set], valid_names=["validation"])
    except LightGBMError as err:
        raise ValueError(f"LightGBM rejected the parameters: {err}") from err


# --------------------------------------------------------------------------- labels


def _check_rows(train: pd.DataFrame, valid: pd.DataFrame) -> None:
    if len(train) == 0:
        raise ValueError("the training set is empty")
    if len(valid) == 0:
        raise ValueError("the validation set is empty: early stopping and calibration need it")


def _label_values(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    """The label column as floats: present and never missing, or a ValueError naming it."""
    if label not in frame.columns:
        raise ValueError(f"label {label!r} is not a column of the {part} set")
    values = frame[label]
    if values.isna().any():
        raise ValueError(f"label {label!r} has {int(values.isna().sum())} missing values in {part}")
    return values.to_numpy(dtype=float)


def _binary_label(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    """The label as 0/1 ints; both classes must be present for a classifier to learn anything."""
    y = _label_values(frame, label, part)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"label {label!r} is not binary 0/1 in {part}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"label {label!r} has a single class ({int(y[0])}) in {part}")
    return y.astype(int)
