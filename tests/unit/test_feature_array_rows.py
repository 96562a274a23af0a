"""``feature_array`` from serving's rows (lists of Python values) equals the frame's matrix, and
its errors name the feature, whichever way the columns were converted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runtime.models.features import feature_array

COLUMNS = ["card__amount_sum_1h", "card__count_1h", "card_attributes__country", "r__ratio"]
CATEGORIES = {"card_attributes__country": ["DE", "FR", "US"]}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "card__amount_sum_1h": [12.5, np.nan, 0.0, 3.25],
            "card__count_1h": pd.array([3, None, 0, 7], dtype="Int64"),
            "card_attributes__country": ["FR", None, "XX", "US"],
            "r__ratio": [0.5, 1.0, np.nan, 2.0],
        }
    )


def _rows(frame: pd.DataFrame) -> dict[str, list]:
    """The columns as serving holds them: Python values, None where missing."""
    return {c: [None if pd.isna(v) else v for v in frame[c].tolist()] for c in frame.columns}


def test_rows_give_the_frames_matrix() -> None:
    frame = _frame()
    expected = feature_array(frame, COLUMNS, CATEGORIES)
    np.testing.assert_array_equal(feature_array(_rows(frame), COLUMNS, CATEGORIES), expected)
    assert expected[:, 2].tolist()[:1] == [1.0] and np.isnan(expected[1:3, 2]).all()
    one = {c: values[0] for c, values in _rows(frame).items()}  # one request: scalars
    np.testing.assert_array_equal(feature_array(one, COLUMNS, CATEGORIES), expected[:1])


@pytest.mark.parametrize(
    ("value", "message"),
    [("a lot", "'r__ratio' is not numeric"), (float("inf"), "'r__ratio' has 1 infinite")],
)
def test_a_bad_value_names_its_feature(value: object, message: str) -> None:
    rows = _rows(_frame())
    rows["r__ratio"][3] = value
    with pytest.raises(ValueError, match=message):
        feature_array(rows, COLUMNS, CATEGORIES)
