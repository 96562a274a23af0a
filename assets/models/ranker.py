"""A LightGBM LambdaRank ranker over request groups with graded gains."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from assets.models.streamed_matrix import frames_on_ray, training_datasets
from runtime.models.ranker import Ranker
from runtime.table_chunks import Chunks, permuted

# rows of a split put in group order at a time, when its groups are not in order in the file
PERMUTE_ROWS = 131_072

# --------------------------------------------------------------------------- ranker


def _graded_label(frame: pd.DataFrame, label: str, part: str) -> np.ndarray:
    y = label_values(frame, label, part)
    if (y < 0).any() or (y != np.round(y)).any():
        raise ValueError(f"label {label!r} must be non-negative integers in {part}")
    return y.astype(int)


def group_order(values: pd.Series) -> np.ndarray:
    """The positions of a split's rows with each group's rows together, as LightGBM reads
    groups: a stable sort by the group's value (a category by its value, not its code, so a
    split held whole and one read in chunks agree)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    return values.reset_index(drop=True).sort_values(kind="stable").index.to_numpy()


@dataclass
class _GroupedSplit:
    """A split's rows in group order (a frame, or chunks), their labels and group sizes."""

    rows: pd.DataFrame | Chunks
    labels: np.ndarray
    sizes: np.ndarray


def _grouped(
    rows: pd.DataFrame | Chunks, label: str, group: str, part: str, columns: list[str], spill: Path
) -> _GroupedSplit:
    """``rows`` put in :func:`group_order`. Chunks are read for their keys (two numbers a row),
    left as they are when already in order (a set in time order whose group ids grow with
    time), else permuted a bucket at a time through ``spill`` with ``columns`` only."""
    table = Chunks.of(rows)
    keys = table.frame([c for c in (group, label) if c in table.columns])
    if group not in keys.columns:
        raise ValueError(f"group column {group!r} is not in the {part} set")
    order = group_order(keys[group])
    in_order = bool((order == np.arange(len(order))).all())
    if isinstance(rows, pd.DataFrame):
        rows = rows if in_order else rows.iloc[order]
    elif not in_order:
        rows = permuted(rows.select(columns), order, spill, PERMUTE_ROWS)
    keys = keys if in_order else keys.iloc[order]
    sizes = keys.groupby(group, sort=False, observed=True).size().to_numpy()
    return _GroupedSplit(rows, _graded_label(keys, label, part), sizes)


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
    train: pd.DataFrame | Chunks,
    valid: pd.DataFrame | Chunks,
    features: list[str],
    label: str,
    group: str,
    params: Mapping[str, Any] | None = None,
) -> Ranker:
    """LambdaRank over query/request groups, early-stopped on validation NDCG@10 by default.

    Rows are put in group order (:func:`group_order`) because LightGBM reads groups as
    consecutive runs. Either split may be read in chunks: LightGBM then bins it as it reads
    (``assets.models.streamed_matrix``) and grows the same trees; a split whose groups are not
    in order in the file is first permuted through a temporary folder, never held. On Ray the
    splits are read whole (Ray Train's trainer shares frames).
    """
    params = dict(params or {})
    check_params(params)
    train, valid = frames_on_ray(train, valid)
    needed = list(dict.fromkeys([*features, label, group]))
    with tempfile.TemporaryDirectory(prefix="playbook-groups-") as spill:
        parts = [
            _grouped(rows, label, group, part, needed, Path(spill) / part)
            for rows, part in ((train, "train"), (valid, "validation"))
        ]
        return _fit(parts[0], parts[1], features, label, group, params)


def _fit(
    train: _GroupedSplit,
    valid: _GroupedSplit,
    features: list[str],
    label: str,
    group: str,
    params: dict[str, Any],
) -> Ranker:
    check_rows(train.labels, valid.labels)
    if train.labels.max() == 0:
        raise ValueError(f"label {label!r} has no relevant rows in train")
    merged = merge_params({**COMMON_DEFAULTS, **RANKER_DEFAULTS}, params)
    if not has_param(params, "label_gain"):
        merged["label_gain"] = _label_gain(int(max(train.labels.max(), valid.labels.max())))
    labels, groups = (train.labels, valid.labels), (train.sizes, valid.sizes)
    data = training_datasets(train.rows, valid.rows, features, labels, merged, groups)
    booster = train_booster(data.params, data.train, data.valid)
    best = booster.best_iteration or booster.current_iteration()
    return Ranker(booster, data.columns, data.categories, label, group, best, merged)
