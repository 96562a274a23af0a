"""The regression entry of ``TRAINERS`` (issue 16): what every trainer returns, judged beside
its baseline on the same test rows, the gate's direction and its ``evaluate``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.models.train import TRAINERS, model_input, train_tabular
from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases


def _training_set(n: int = 4000) -> pd.DataFrame:
    """Orders of 10 stores every 5 minutes; a store's level shows in its own past targets."""
    rng = np.random.default_rng(1)
    store = rng.integers(0, 10, n)
    distance = rng.uniform(0.5, 10, n)
    y = 1200 + 60 * store + 120 * distance + rng.normal(0, 60, n)
    time = pd.Timestamp("2025-03-03") + pd.to_timedelta(np.arange(n) * 5, unit="min")
    position = np.arange(n) / n
    split = np.where(position < 0.7, "train", np.where(position < 0.85, "validation", "test"))
    return pd.DataFrame(
        {
            "store_id": store,
            "event_time": time,
            "store_load__events_count_1h": rng.poisson(5, n).astype(float),
            "distance_km": distance,
            "delivery_seconds": y,
            "split": split,
        }
    )


@pytest.fixture(scope="module")
def spec():
    (spec,) = load_use_cases([CONFIG_DIR / "pricing.yaml"])
    return spec


def _with_baseline(spec, baseline: str):
    stage = spec.model["delivery"].model_copy(update={"baseline": baseline})
    return spec.model_copy(update={"model": {"delivery": stage}})


def test_regression_is_registered_and_judged_beside_last_value(spec) -> None:
    assert "regression" in TRAINERS
    frame = _training_set()
    trained = train_tabular(_with_baseline(spec, "last_value"), "delivery", frame)
    assert trained.primary == "rmse" and not trained.higher_is_better
    assert {"rmse", "mae", "mape", "interval_coverage"} <= set(trained.metrics)
    assert set(trained.comparison["metric"]) == {"rmse", "mae", "mape", "interval_coverage"}
    # the store is no feature, so the model sees distance only; last_value sees the store level
    assert trained.metrics["rmse"] < 200
    assert trained.metrics["rmse"] != trained.baseline_metrics["rmse"]
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    assert len(trained.predictions) == len(test)
    assert {"score", "lower", "upper", "evaluated"} <= set(trained.predictions.columns)
    assert (trained.predictions["lower"] <= trained.predictions["upper"]).all()

    class Constant:
        def predict(self, rows: pd.DataFrame) -> np.ndarray:
            return np.full(len(rows), 2000.0)

    assert trained.evaluate(trained.model) == pytest.approx(trained.metrics["rmse"])
    assert trained.evaluate(Constant()) > trained.metrics["rmse"]
    served = trained.model.predict(model_input(test, trained.features))
    np.testing.assert_allclose(served, trained.predictions["score"])


def test_mean_baseline_is_the_default_and_a_classifier_baseline_is_refused(spec) -> None:
    frame = _training_set(1500)
    stage = spec.model["delivery"].model_copy(update={"baseline": None})
    plain = spec.model_copy(update={"model": {"delivery": stage}})
    trained = train_tabular(plain, "delivery", frame)
    test = frame[frame["split"] == "test"]
    mean = frame.loc[frame["split"] == "train", "delivery_seconds"].mean()
    expected = np.sqrt(np.mean((test["delivery_seconds"] - mean) ** 2))
    assert trained.baseline_metrics["rmse"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown regression baseline 'random'"):
        train_tabular(_with_baseline(spec, "random"), "delivery", frame)
