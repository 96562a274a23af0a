"""The LightGBM regressor (issue 16): the YAML's objective, quantile interval models with a
conformal correction, and the served object's point and interval predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.models.regression_metrics import regression_metrics
from assets.models.regressor import quantile_params, train_regressor
from runtime.models.regressor import Regressor

SIGMA = 2.0


def _frame(n: int, seed: int) -> pd.DataFrame:
    """y = 10 x + 5 [kind == b] + Normal(0, SIGMA): a known floor of SIGMA for the RMSE."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, n)
    kind = rng.choice(["a", "b"], n)
    y = 10 * x + 5 * (kind == "b") + rng.normal(0, SIGMA, n)
    return pd.DataFrame({"x": x, "kind": kind, "y": y})


@pytest.fixture(scope="module")
def fitted() -> tuple[Regressor, pd.DataFrame]:
    params = {"learning_rate": 0.1, "num_leaves": 15}
    model = train_regressor(
        _frame(4000, 0), _frame(1000, 1), ["x", "kind"], "y", params, interval=(0.1, 0.9)
    )
    return model, _frame(4000, 2)


def test_point_model_reaches_the_noise_floor_and_interval_its_nominal_coverage(fitted) -> None:
    model, test = fitted
    lower, upper = model.predict_interval(test)
    metrics = regression_metrics(test["y"], model.predict(test), lower, upper)
    assert SIGMA * 0.95 < metrics["rmse"] < SIGMA * 1.15
    assert abs(metrics["interval_coverage"] - 0.8) < 0.04  # 4000 rows: sd of coverage ~0.006
    assert (lower <= upper).all()
    assert model.quantiles == (0.1, 0.9) and model.has_interval
    assert model.lower.params["objective"] == "quantile" and model.lower.params["alpha"] == 0.1
    assert model.params["objective"] == "regression"  # the default: L2


def test_conformal_shift_moves_both_bounds(fitted) -> None:
    model, test = fitted
    low, high = model.predict_interval(test)
    raw = model.lower.predict(test), model.upper.predict(test)
    np.testing.assert_allclose(low, np.minimum(*raw) - model.interval_shift)
    np.testing.assert_allclose(high, np.maximum(*raw) + model.interval_shift)


def test_predict_frame_and_matrix_agree(fitted) -> None:
    model, test = fitted
    frame = model.predict_frame(test.head(50))
    np.testing.assert_allclose(frame["prediction"], model.predict(model.features(test.head(50))))
    assert list(frame.columns) == ["prediction", "lower", "upper"]


def test_objective_comes_from_params_and_quantile_heads_replace_it() -> None:
    train, valid = _frame(800, 3), _frame(200, 4)
    huber = train_regressor(train, valid, ["x"], "y", {"objective": "huber", "num_iterations": 20})
    assert huber.params["objective"] == "huber" and not huber.has_interval
    with pytest.raises(ValueError, match="no prediction interval"):
        huber.predict_interval(valid)
    heads = quantile_params({"application": "huber", "alpha": 0.5, "metric": "l1", "seed": 3}, 0.9)
    assert heads == {"seed": 3, "objective": "quantile", "alpha": 0.9, "metric": "quantile"}


def test_missing_or_infinite_labels_are_refused() -> None:
    train, valid = _frame(100, 5), _frame(50, 6)
    with pytest.raises(ValueError, match="missing values"):
        train_regressor(train.assign(y=np.nan), valid, ["x"], "y")
    with pytest.raises(ValueError, match="infinite"):
        train_regressor(train.assign(y=np.inf), valid, ["x"], "y")
    with pytest.raises(ValueError, match="unknown LightGBM parameter"):
        train_regressor(train, valid, ["x"], "y", {"num_leafs": 3})
