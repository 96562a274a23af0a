"""Float metadata is shown rounded to four significant digits; nothing else changes."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.metadata import round_float, rounded_metadata, table_metadata


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.912345678, 0.9123),
        (0.000123456, 0.0001235),
        (-0.98765, -0.9877),
        (3.14159, 3.142),
        (12345.678, 12346.0),  # the integer part is never cut
        (0.0, 0.0),
    ],
)
def test_round_float_keeps_four_significant_digits(value: float, shown: float) -> None:
    assert round_float(value) == shown


def test_rounded_metadata_touches_floats_only() -> None:
    rounded = rounded_metadata(
        {
            "auc": 0.912345678,
            "numpy": np.float32(1 / 3),
            "typed": dg.MetadataValue.float(2.718281828),
            "nan": math.nan,
            "rows": 12345,
            "flag": True,
            "name": "scorer",
        }
    )
    assert rounded["auc"] == 0.9123 and rounded["numpy"] == 0.3333
    assert rounded["typed"] == dg.MetadataValue.float(2.718)
    assert math.isnan(rounded["nan"])
    assert (rounded["rows"], rounded["flag"], rounded["name"]) == (12345, True, "scorer")


def test_table_metadata_rounds_label_and_null_rates() -> None:
    frame = pd.DataFrame({"label": [1, 0, 0], "x": [1.0, None, 2.0]})
    metadata = table_metadata(frame, labels={"clicked": "label"})
    assert metadata["label_rate/clicked"] == 0.3333
    assert "0.3333" in metadata["null_rates"].value
    assert "0.333333" not in metadata["null_rates"].value
