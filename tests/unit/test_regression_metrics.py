"""Regression metrics and baselines (issue 16): RMSE / MAE / MAPE against hand-computed values,
MAPE's zero guard, interval coverage, and the baselines' use of only what was known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from assets.models.evaluation import compare, is_count
from assets.models.regression_baselines import (
    History,
    baseline_interval,
    label_known_times,
    last_value,
    regression_baseline,
)
from assets.models.regression_metrics import MAPE_DROPPED, interval_coverage, regression_metrics
from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases


def test_point_metrics_match_hand_computed_values() -> None:
    y = np.array([10.0, 20.0, 40.0])
    p = np.array([12.0, 20.0, 34.0])
    metrics = regression_metrics(y, p)
    assert metrics["rmse"] == pytest.approx(math.sqrt((4 + 0 + 36) / 3))
    assert metrics["mae"] == pytest.approx((2 + 0 + 6) / 3)
    assert metrics["mape"] == pytest.approx((0.2 + 0 + 0.15) / 3)
    assert metrics["rows"] == 3 and metrics[MAPE_DROPPED] == 0
    assert "interval_coverage" not in metrics


def test_mape_leaves_zero_targets_out_and_counts_them() -> None:
    metrics = regression_metrics(np.array([0.0, 10.0, 0.0, 20.0]), np.array([5.0, 11.0, 1.0, 18.0]))
    assert metrics["mape"] == pytest.approx((0.1 + 0.1) / 2)  # not ~1e15 from the zeros
    assert metrics[MAPE_DROPPED] == 2
    assert math.isnan(regression_metrics(np.zeros(3), np.ones(3))["mape"])
    assert is_count(MAPE_DROPPED)  # reported, never compared with the baseline's
    table = compare(metrics, metrics)
    assert MAPE_DROPPED not in set(table["metric"])


def test_interval_coverage_counts_bounds_as_inside() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    lower = np.array([1.0, 2.5, 0.0, 4.5])
    upper = np.array([2.0, 3.0, 3.0, 5.0])
    assert interval_coverage(y, lower, upper) == 0.5  # rows 0 and 2 (on a bound)
    metrics = regression_metrics(y, y, lower, upper)
    assert metrics["interval_coverage"] == 0.5 and metrics["rmse"] == 0.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equally long"):
        regression_metrics(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="not finite"):
        regression_metrics(np.ones(2), np.array([1.0, np.nan]))


def _orders() -> pd.DataFrame:
    """Two stores; a delivery is known only when it is delivered (``delivered_at``)."""
    t = pd.Timestamp("2025-03-03 12:00")
    minutes = pd.to_timedelta
    return pd.DataFrame(
        {
            "store_id": [1, 1, 1, 2, 1],
            "event_time": [t, t + minutes("10min"), t + minutes("20min"), t, t + minutes("90min")],
            "delivered_at": [
                t + minutes("30min"),  # known at 12:30
                t + minutes("80min"),  # known at 13:20
                t + minutes("40min"),  # known at 12:40, before the order placed at 12:10
                t + minutes("15min"),
                t + minutes("2h"),
            ],
            "y": [30.0, 70.0, 20.0, 15.0, 30.0],
        }
    )


def test_last_value_uses_only_labels_known_before_the_row() -> None:
    orders = _orders()
    history = History(orders, "store_id", "event_time", orders["delivered_at"])
    values = last_value(orders, history, "y", fallback=-1.0)
    # row 0, 1, 2: nothing of store 1 delivered by 12:00 / 12:10 / 12:20 -> the fallback;
    # row 3: store 2 has no earlier order; row 4 (13:30): the latest known by then is row 1's
    # (delivered 13:20), not row 2's, which was placed later but delivered earlier
    assert values.tolist() == [-1.0, -1.0, -1.0, -1.0, 70.0]


def test_last_value_ignores_a_label_arriving_at_the_rows_own_instant() -> None:
    orders = _orders()
    at_row_time = orders["delivered_at"].copy()
    at_row_time.iloc[1] = orders["event_time"].iloc[4]  # delivered exactly when row 4 is placed
    values = last_value(orders, History(orders, "store_id", "event_time", at_row_time), "y", -1.0)
    # row 1's delivery arrives at row 4's own instant: not known yet; row 2's (12:40) is the latest
    assert values[4] == 20.0


def test_mean_and_feature_baselines_fall_back_to_the_training_mean() -> None:
    train = pd.DataFrame({"y": [10.0, 20.0, 30.0], "f": [1.0, 2.0, 3.0]})
    test = pd.DataFrame({"y": [5.0, 6.0], "f": [25.0, np.nan]})
    assert regression_baseline("mean", train, "y")(test).tolist() == [20.0, 20.0]
    assert regression_baseline("feature:f", train, "y")(test).tolist() == [25.0, 20.0]
    with pytest.raises(ValueError, match="not a column"):
        regression_baseline("feature:g", train, "y")(test)
    with pytest.raises(ValueError, match="known: mean, last_value"):
        regression_baseline("median", train, "y")
    with pytest.raises(ValueError, match="labelled history"):
        regression_baseline("last_value", train, "y")


def test_mean_baseline_interval_is_the_training_targets_quantiles() -> None:
    train = pd.DataFrame({"y": np.arange(101, dtype=float)})
    predict = regression_baseline("mean", train, "y")
    lower, upper = baseline_interval(predict, train, train.head(2), "y", (0.1, 0.9))
    assert lower.tolist() == [10.0, 10.0] and upper.tolist() == [90.0, 90.0]


def test_known_times_follow_the_labels_availability() -> None:
    (spec,) = load_use_cases([CONFIG_DIR / "pricing.yaml"])
    orders = _orders().rename(columns={"y": "delivery_seconds"})
    known = label_known_times(spec, "delivery_time", orders)
    pd.testing.assert_series_equal(known, orders["delivered_at"], check_names=False)
    # a training set without the arrival column: final after the label's maturity (3h)
    without = orders.drop(columns="delivered_at")
    later = label_known_times(spec, "delivery_time", without)
    assert (later == orders["event_time"] + pd.Timedelta("3h")).all()
    label = spec.labels["delivery_time"].model_copy(update={"maturity": "0d"})
    unsure = spec.model_copy(update={"labels": {"delivery_time": label}})
    with pytest.raises(ValueError, match="maturity is 0"):
        label_known_times(unsure, "delivery_time", without)


def test_interval_coverage_is_better_closer_to_its_nominal_share() -> None:
    """An 80% interval covering 0.79 beats one covering 0.95: over-wide is not better."""
    model = {"interval_coverage": 0.79, "rmse": 2.0}
    baseline = {"interval_coverage": 0.95, "rmse": 3.0}
    table = compare(model, baseline, {"interval_coverage": 0.8}).set_index("metric")
    assert bool(table.loc["interval_coverage", "better"]) and bool(table.loc["rmse", "better"])
    swapped = compare(baseline, model, {"interval_coverage": 0.8}).set_index("metric")
    assert not bool(swapped.loc["interval_coverage", "better"])
    # without its target, coverage is read as higher-is-better, which is what the target fixes
    assert not bool(compare(model, baseline).set_index("metric").loc["interval_coverage", "better"])
