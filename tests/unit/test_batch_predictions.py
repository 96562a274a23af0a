"""Batch scoring's pure parts: which entities a window scores, the stored table, the drift check.

An entity first seen after a window closed is not scored in it; the table stamps each row with
its window's close and the champion's version; a model answering several numbers per row, or
needing a column the batch run lacks, is refused with the reason. The drift check flags a planted
shift of the predictions (PSI at the alert level: failed), passes the same distribution, gives no
verdict on a window under ``min_window_rows`` and passes the first window, which has nothing to
compare with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.monitoring.drift_status import DriftStatus
from assets.monitoring.prediction_drift import prediction_drift
from configs.schema.operations import MonitoringSpec
from runtime.batch_predictions import output_columns, prediction_table, scores, scoring_rows


def test_an_entity_is_scored_only_in_windows_closing_after_it_appeared() -> None:
    first_seen = pd.DataFrame(
        {
            "store_id": [3, 1, 2],
            "first_seen": pd.to_datetime(
                ["2025-01-01 00:30", "2025-01-01 00:10", "2025-01-01 01:00"]
            ),
        }
    )
    closes = [
        pd.Timestamp("2025-01-01 01:00", tz="UTC"),
        pd.Timestamp("2025-01-01 02:00", tz="UTC"),
    ]
    rows = scoring_rows(first_seen, "store_id", closes, ["w0", "w1"])
    # store 2 appeared exactly at the first close: not known before it
    assert rows[rows["window"] == "w0"]["store_id"].tolist() == [1, 3]
    assert rows[rows["window"] == "w1"]["store_id"].tolist() == [1, 2, 3]
    assert (rows["as_of"] < pd.Timestamp("2025-01-01 02:00")).all()
    assert rows["as_of"].max() == pd.Timestamp("2025-01-01 02:00") - pd.Timedelta(microseconds=1)

    created = pd.Timestamp("2026-01-01", tz="UTC")
    table = prediction_table(
        rows,
        "store_id",
        {"prediction": np.arange(5.0)},
        dict(zip(["w0", "w1"], closes, strict=True)),
        "7",
        created,
    )
    assert table["event_timestamp"].tolist() == [closes[0]] * 2 + [closes[1]] * 3
    assert (table["model_version"] == 7).all() and table["model_version"].dtype == np.int64
    assert (table["created_timestamp"] == created).all()
    assert table["prediction"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


class _Model:
    feature_columns = ["view__x"]

    def __init__(self, width: int = 1) -> None:
        self.width = width

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame["view__x"].to_numpy() * 2.0
        return values if self.width == 1 else np.tile(values[:, None], (1, self.width))


def test_scores_need_one_number_per_row_and_every_column() -> None:
    frame = pd.DataFrame({"view__x": [1.0, 2.0]})
    assert scores(_Model(), frame)["prediction"].tolist() == [2.0, 4.0]
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        scores(_Model(width=3), frame)
    with pytest.raises(ValueError, match="view__x"):
        scores(_Model(), pd.DataFrame({"other": [1.0]}))


class _Multiclass:
    feature_columns = ["view__x"]
    classes = ["low", "mid", "high"]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame["view__x"].to_numpy()
        return np.stack([1 - x, x * 0.25, x * 0.75], axis=1)


class _Interval(_Model):
    def predict_interval(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x = frame["view__x"].to_numpy()
        return x, x * 3.0


def test_outputs_follow_the_problem_type() -> None:
    frame = pd.DataFrame({"view__x": [0.2, 0.8]})
    assert output_columns("binary_classification", False) == (("prediction", "float"),)
    assert output_columns("regression", False) == (("prediction", "float"),)
    columns = [name for name, _ in output_columns("regression", True)]
    assert columns == ["prediction", "lower", "upper"]
    bounds = scores(_Interval(), frame, columns)
    assert bounds["lower"].tolist() == [0.2, 0.8] and bounds["prediction"].tolist() == [0.4, 1.6]
    assert bounds["upper"] == pytest.approx([0.6, 2.4])
    columns = [name for name, _ in output_columns("multiclass_classification", False)]
    assert columns == ["prediction", "label"]
    top = scores(_Multiclass(), frame, columns)
    assert top["label"].tolist() == ["low", "high"]
    assert top["prediction"] == pytest.approx([0.8, 0.6])


def test_prediction_drift_flags_a_shift_and_passes_the_same_distribution() -> None:
    rng = np.random.default_rng(1)
    monitoring = MonitoringSpec(min_window_rows=100)
    before = pd.Series(rng.beta(2, 30, 2000))
    same = prediction_drift(before, pd.Series(rng.beta(2, 30, 2000)), monitoring)
    assert same.status is DriftStatus.OK and same.passed and same.psi < 0.1
    shifted = prediction_drift(before, pd.Series(rng.beta(6, 30, 2000)), monitoring)
    assert shifted.status is DriftStatus.ALERT and not shifted.passed, shifted.summary
    assert shifted.psi >= monitoring.psi_alert
    assert shifted.breakdown is not None and len(shifted.breakdown) == 11  # 10 bins + null
    small = prediction_drift(before, pd.Series(rng.beta(6, 30, 50)), monitoring)
    assert small.status is DriftStatus.INSUFFICIENT and small.passed
    first = prediction_drift(None, pd.Series(rng.beta(2, 30, 2000)), monitoring)
    assert first.status is None and first.passed and "no earlier window" in first.summary
