"""What every LightGBM learner here shares: parameter defaults and checks, label checks.

The feature matrix itself is ``runtime.models.features.prepare_features``, shared with the
services so training and serving see exactly the same matrix. Parameters are
checked by name against LightGBM's own list, since LightGBM only warns on unknown ones.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from lightgbm.basic import LightGBMError, _ConfigAliases

# Defaults every learner starts from; a user parameter (or any alias of it) replaces the default.
COMMON_DEFAULTS: dict[str, Any] = {
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
CLASSIFIER_DEFAULTS: dict[str, Any] = {"objective": "binary", "metric": "auc"}
RANKER_DEFAULTS: dict[str, Any] = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10]}
# LightGBM's own default gains stop at label 30; beyond that 2**label - 1 stops being sensible.
MAX_EXPONENTIAL_LABEL = 30


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


def has_param(params: Mapping[str, Any], name: str) -> bool:
    return bool(_ConfigAliases.get(name) & set(params))


def merge_params(defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """User parameters over defaults; a default is dropped when the user set any of its aliases."""
    kept = {key: value for key, value in defaults.items() if not has_param(params, key)}
    return {**kept, **params}


def train_booster(
    params: dict[str, Any], train_set: lgb.Dataset, valid_set: lgb.Dataset
) -> lgb.Booster:
    """``lgb.train`` with early stopping on the validation set; LightGBM errors as ValueError."""
    try:
        return lgb.train(params, train_set, valid_sets=[valid_set], valid_names=["validation"])
    except LightGBMError as err:
        raise ValueError(f"LightGBM rejected the parameters: {err}") from err


# --------------------------------------------------------------------------- labels


def check_rows(train: pd.DataFrame, valid: pd.DataFrame) -> None:
    if len(train) == 0:
        raise ValueError("the training set is empty")
    if len(valid) == 0:
        raise ValueError("the validation set is empty: early stopping and calibration need it")


def label_values(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    """The label column as floats: present and never missing, or a ValueError naming it."""
    if label not in frame.columns:
        raise ValueError(f"label {label!r} is not a column of the {part} set")
    values = frame[label]
    if values.isna().any():
        raise ValueError(f"label {label!r} has {int(values.isna().sum())} missing values in {part}")
    return values.to_numpy(dtype=float)


def binary_label(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    """The label as 0/1 ints; both classes must be present for a classifier to learn anything."""
    y = label_values(frame, label, part)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"label {label!r} is not binary 0/1 in {part}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"label {label!r} has a single class ({int(y[0])}) in {part}")
    return y.astype(int)
