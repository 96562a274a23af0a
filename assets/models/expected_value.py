"""The feed's expected-value ranker: calibrated P(click) x P(purchase | click) x value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from assets.models.classifier import train_classifier
from runtime.models.expected_value import ExpectedValueModel
from runtime.table_chunks import Chunks

# --------------------------------------------------------------------------- expected value


def _clicked(rows: pd.DataFrame | Chunks, click: str) -> pd.DataFrame | Chunks:
    """The rows where ``click`` is positive: the purchase head's (filtered as read, in chunks)."""
    if isinstance(rows, Chunks):
        return rows.where(click, lambda values: (values > 0).to_numpy())
    return rows[rows[click] > 0]


def train_expected_value(
    train: pd.DataFrame | Chunks,
    valid: pd.DataFrame | Chunks,
    features: list[str],
    click: str,
    purchase: str,
    value_feature: str,
    params: Mapping[str, Any] | None = None,
) -> ExpectedValueModel:
    """Train the click head on every row and the purchase head on clicked rows only; either
    split may be read in chunks, as :func:`train_classifier` reads them."""
    for part, frame in (("train", train), ("validation", valid)):
        if value_feature not in Chunks.of(frame).columns:
            raise ValueError(f"value feature {value_feature!r} is not a column of the {part} set")
    click_model = train_classifier(train, valid, features, click, params)
    clicked_train, clicked_valid = _clicked(train, click), _clicked(valid, click)
    try:
        purchase_model = train_classifier(clicked_train, clicked_valid, features, purchase, params)
    except ValueError as err:
        raise ValueError(f"purchase head (rows where {click!r} > 0): {err}") from err
    heads = set(click_model.feature_columns) | set(purchase_model.feature_columns)
    columns = sorted(heads | {value_feature})
    return ExpectedValueModel(click_model, purchase_model, value_feature, columns)
