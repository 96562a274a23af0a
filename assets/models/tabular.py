"""LightGBM learners for tabular training sets: a calibrated classifier, a ranker and a two-head
expected-value model, plus the approve / review / decline bands read off a calibrated score.

The training sets come from ``assets.training.build``: entity keys, ``event_time``, labels,
``as_of``, ``split`` and ``<table>__<feature>`` columns. Features reach LightGBM through
``prepare_features`` only, so training and serving see exactly the same matrix: numbers as float,
strings as a ``category`` whose levels are fixed from the training split (a level first seen later
is missing, never a new code that would collide with a trained one), and last-N id lists dropped
(LightGBM cannot split on a list).

Every model is a plain picklable object exposing ``feature_columns`` and a ``predict``-style method
on a DataFrame, which is all ``mlflow.pyfunc`` needs to wrap it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
from lightgbm.basic import LightGBMError, _ConfigAliases
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from configs.schema.stages import DecisionBandsSpec

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


def _binary_label(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    """The label as 0/1 ints; both classes must be present for a classifier to learn anything."""
    if label not in frame.columns:
        raise ValueError(f"label {label!r} is not a column of the {part} set")
    values = frame[label]
    if values.isna().any():
        raise ValueError(f"label {label!r} has {int(values.isna().sum())} missing values in {part}")
    y = values.to_numpy(dtype=float)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"label {label!r} is not binary 0/1 in {part}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"label {label!r} has a single class ({int(y[0])}) in {part}")
    return y.astype(int)


# --------------------------------------------------------------------------- classifier


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
            return self.model.predict_proba(margin.reshape(-1, 1))[:, 1]
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

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return prepare_features(frame, self.feature_columns, self.categories)[0]

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw log-odds of the trees (class-weighted, so not a calibrated quantity)."""
        x = self.matrix(frame)
        return self.booster.predict(x, num_iteration=self.best_iteration, raw_score=True)

    def predict_raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The uncalibrated probability LightGBM itself reports, kept for comparison."""
        return 1.0 / (1.0 + np.exp(-self.margin(frame)))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class, one per row."""
        return self.calibrator.transform(self.margin(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(frame)


def train_classifier(
    train: pd.DataFrame,
    valid: pd.DataFrame,
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
    """
    params = dict(params or {})
    check_params(params)
    _check_rows(train, valid)
    y_train = _binary_label(train, label, "train")
    y_valid = _binary_label(valid, label, "validation")
    x_train, categories = prepare_features(train, features)
    x_valid, _ = prepare_features(valid, list(x_train.columns), categories)
    merged = _merge({**_COMMON_DEFAULTS, **_CLASSIFIER_DEFAULTS}, params)
    if not (_has(params, "scale_pos_weight") or _has(params, "is_unbalance")):
        merged["scale_pos_weight"] = float((y_train == 0).sum() / (y_train == 1).sum())
    train_set = lgb.Dataset(x_train, label=y_train, free_raw_data=False)
    valid_set = lgb.Dataset(x_valid, label=y_valid, reference=train_set)
    booster = _train_booster(merged, train_set, valid_set)
    best = booster.best_iteration or booster.current_iteration()
    margin = booster.predict(x_valid, num_iteration=best, raw_score=True)
    calibrator = Calibrator.fit(margin, y_valid, calibration)
    return CalibratedClassifier(
        booster, list(x_train.columns), categories, label, calibrator, best, merged
    )


# --------------------------------------------------------------------------- decision bands


@dataclass
class DecisionBands:
    """Approve below one threshold, decline at or above another, review in between."""

    approve_below: float
    decline_at_or_above: float
    summary: dict[str, Any]

    def apply_bands(self, p: np.ndarray | pd.Series) -> np.ndarray:
        """``"approve"`` / ``"review"`` / ``"decline"`` for each probability."""
        p = np.asarray(p, dtype=float)
        out = np.full(p.shape, "review", dtype=object)
        out[p < self.approve_below] = "approve"
        out[p >= self.decline_at_or_above] = "decline"
        return out


def _decline_threshold(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """Lowest score whose decline set (p >= score) has precision at least ``target``."""
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    last_of_value = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    precision = np.cumsum(y_sorted) / np.arange(1, len(y_sorted) + 1)
    ok = last_of_value & (precision >= target)
    return float(p_sorted[ok].min()) if ok.any() else math.inf


def _approve_threshold(y: np.ndarray, p: np.ndarray, max_share: float) -> float:
    """Highest score below which at most ``max_share`` of the positives fall."""
    positives = np.sort(p[y == 1])
    allowed = int(math.floor(max_share * len(positives) + 1e-9))
    return float(positives[allowed]) if allowed < len(positives) else math.inf


def _cost_thresholds(y: np.ndarray, p: np.ndarray, spec: DecisionBandsSpec) -> tuple[float, float]:
    """The (approve, decline) pair with the least total cost, searched exactly over cut points.

    Sorted ascending, approving the first ``i`` rows and declining from row ``j`` costs
    ``f(i) + g(j)`` with ``f(i) = c_fa * positives[:i] - c_r * i`` and
    ``g(j) = c_fd * negatives[j:] + c_r * j``; a running minimum of ``f`` gives the best ``i <= j``.
    """
    order = np.argsort(p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    n = len(p_sorted)
    cuts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1], True])  # 0..n, value edges
    cum_pos = np.r_[0, np.cumsum(y_sorted)][cuts]
    cum_neg = np.r_[0, np.cumsum(1 - y_sorted)][cuts]
    f = spec.cost_false_approve * cum_pos - spec.cost_review * cuts
    g = spec.cost_false_decline * (cum_neg[-1] - cum_neg) + spec.cost_review * cuts
    best_f_index = _running_argmin(f)
    j = int(np.argmin(f[best_f_index] + g))
    i = int(best_f_index[j])
    threshold = np.r_[p_sorted, math.inf]
    return float(threshold[cuts[i]] if cuts[i] < n else math.inf), float(threshold[cuts[j]])


def _running_argmin(values: np.ndarray) -> np.ndarray:
    """Index of the smallest value among ``values[: k + 1]`` for every ``k``."""
    running = np.minimum.accumulate(values)
    is_new_min = np.r_[True, running[1:] < running[:-1]]
    return np.maximum.accumulate(np.where(is_new_min, np.arange(len(values)), 0))


def band_summary(
    y: np.ndarray, p: np.ndarray, bands: DecisionBands, spec: DecisionBandsSpec
) -> dict[str, Any]:
    """Shares, decline precision, approved positives and cost per case of ``bands`` on (y, p)."""
    decision = bands.apply_bands(p)
    approve, decline = decision == "approve", decision == "decline"
    review = ~(approve | decline)
    n_pos = max(int(y.sum()), 1)
    cost = (
        spec.cost_false_approve * (approve & (y == 1)).sum()
        + spec.cost_false_decline * (decline & (y == 0)).sum()
        + spec.cost_review * review.sum()
    )
    return {
        "approve_share": float(approve.mean()),
        "review_share": float(review.mean()),
        "decline_share": float(decline.mean()),
        "decline_precision": float(y[decline].mean()) if decline.any() else math.nan,
        "positive_share_approved": float((approve & (y == 1)).sum() / n_pos),
        "cost_per_case": float(cost / len(y)),
    }


def decision_bands(
    y_valid: np.ndarray | pd.Series, p_valid: np.ndarray | pd.Series, spec: DecisionBandsSpec
) -> DecisionBands:
    """Thresholds read off calibrated validation scores (``precision`` or ``cost`` method).

    When the approve threshold would pass the decline threshold the review band is empty and the
    approve threshold is lowered to the decline one: declining wins, as a missed positive is the
    costlier mistake these bands exist to limit.
    """
    y = np.asarray(y_valid, dtype=int)
    p = np.asarray(p_valid, dtype=float)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"need equally long, non-empty labels and scores ({len(y)} vs {len(p)})")
    if y.sum() == 0:
        raise ValueError("decision bands need at least one positive validation row")
    if spec.method == "precision":
        decline = _decline_threshold(y, p, spec.decline_precision)
        approve = _approve_threshold(y, p, spec.approve_max_positive_share)
    else:
        approve, decline = _cost_thresholds(y, p, spec)
    approve = min(approve, decline)
    bands = DecisionBands(approve, decline, {})
    bands.summary = {"method": spec.method, "rows": len(y), **band_summary(y, p, bands, spec)}
    return bands


# --------------------------------------------------------------------------- ranker


@dataclass
class Ranker:
    """A LightGBM LambdaRank model; ``predict`` scores rows, higher ranks first within a group."""

    booster: lgb.Booster
    feature_columns: list[str]
    categories: Categories
    label: str
    group: str
    best_iteration: int
    params: dict[str, Any] = field(default_factory=dict)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        x = prepare_features(frame, self.feature_columns, self.categories)[0]
        return self.booster.predict(x, num_iteration=self.best_iteration)


def _graded_label(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    if label not in frame.columns:
        raise ValueError(f"label {label!r} is not a column of the {part} set")
    values = frame[label]
    if values.isna().any():
        raise ValueError(f"label {label!r} has {int(values.isna().sum())} missing values in {part}")
    y = values.to_numpy(dtype=float)
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
    if max_label <= _MAX_EXPONENTIAL_LABEL:
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
    _check_rows(train, valid)
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
    merged = _merge({**_COMMON_DEFAULTS, **_RANKER_DEFAULTS}, params)
    if not _has(params, "label_gain"):
        merged["label_gain"] = _label_gain(int(max(y_train.max(), y_valid.max())))
    train_set = lgb.Dataset(
        x_train, label=y_train, group=_group_sizes(train, group), free_raw_data=False
    )
    valid_set = lgb.Dataset(
        x_valid, label=y_valid, group=_group_sizes(valid, group), reference=train_set
    )
    booster = _train_booster(merged, train_set, valid_set)
    best = booster.best_iteration or booster.current_iteration()
    return Ranker(booster, list(x_train.columns), categories, label, group, best, merged)


# --------------------------------------------------------------------------- expected value


@dataclass
class ExpectedValueModel:
    """Calibrated P(click) times calibrated P(purchase | click) times the item's value.

    Two heads rather than one P(purchase) model: purchases are rare, and conditioning on the
    click lets the second head learn from the rows where a purchase was possible at all.
    """

    click_model: CalibratedClassifier
    purchase_model: CalibratedClassifier
    value_feature: str
    feature_columns: list[str]

    def value(self, frame: pd.DataFrame) -> np.ndarray:
        """The value multiplied in; unknown (NaN) value counts as 0 expected value."""
        if self.value_feature not in frame.columns:
            raise ValueError(f"value feature {self.value_feature!r} is not in the frame")
        values = frame[self.value_feature].to_numpy(dtype=float, na_value=np.nan)
        return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)

    def heads(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row p_click, p_purchase_given_click, p_purchase, value and expected_value."""
        p_click = self.click_model.predict_proba(frame)
        p_given = self.purchase_model.predict_proba(frame)
        value = self.value(frame)
        return pd.DataFrame(
            {
                "p_click": p_click,
                "p_purchase_given_click": p_given,
                "p_purchase": p_click * p_given,
                "value": value,
                "expected_value": p_click * p_given * value,
            },
            index=frame.index,
        )

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.heads(frame)["expected_value"].to_numpy()


def train_expected_value(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    click: str,
    purchase: str,
    value_feature: str,
    params: Mapping[str, Any] | None = None,
) -> ExpectedValueModel:
    """Train the click head on every row and the purchase head on clicked rows only."""
    for part, frame in (("train", train), ("validation", valid)):
        if value_feature not in frame.columns:
            raise ValueError(f"value feature {value_feature!r} is not a column of the {part} set")
    click_model = train_classifier(train, valid, features, click, params)
    clicked_train = train[train[click] > 0]
    clicked_valid = valid[valid[click] > 0]
    try:
        purchase_model = train_classifier(clicked_train, clicked_valid, features, purchase, params)
    except ValueError as err:
        raise ValueError(f"purchase head (rows where {click!r} > 0): {err}") from err
    heads = set(click_model.feature_columns) | set(purchase_model.feature_columns)
    columns = sorted(heads | {value_feature})
    return ExpectedValueModel(click_model, purchase_model, value_feature, columns)
