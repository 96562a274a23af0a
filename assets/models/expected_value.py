"""The feed's expected-value ranker: calibrated P(click) x P(purchase | click) x value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from assets.models.classifier import CalibratedClassifier, train_classifier

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
