"""The feed's expected-value ranker as served: P(click) x P(purchase | click) x value.

Training lives in ``assets.models.expected_value``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from runtime.models.classifier import CalibratedClassifier


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
        click, purchase = self.click_model, self.purchase_model
        x = click.features(frame)
        same = (click.feature_columns, click.categories) == (
            purchase.feature_columns,
            purchase.categories,
        )  # trained on one feature set: build the matrix once for both heads
        p_click = click.predict_proba(x)
        p_given = purchase.predict_proba(x if same else frame)
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
