"""Tuning a regressor (issue 16): trials are scored on validation with the primary metric (RMSE)
and the search minimises it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from assets.models.tuning import tune
from configs import CONFIG_DIR
from configs.schema.model_stage import SearchRangeSpec, TuningSpec
from dagster_project.use_case_files import load_use_cases


def _training_set(n: int = 3000) -> pd.DataFrame:
    """A training set shaped like pricing's: a stored feature, a passthrough column, the label."""
    rng = np.random.default_rng(0)
    load = rng.poisson(5, n).astype(float)
    distance = rng.uniform(0.5, 10, n)
    y = 600 + 50 * load + 120 * distance + rng.normal(0, 60, n)
    split = np.where(
        np.arange(n) < 0.7 * n, "train", np.where(np.arange(n) < 0.85 * n, "validation", "test")
    )
    return pd.DataFrame(
        {
            "store_load__events_count_1h": load,
            "distance_km": distance,
            "delivery_seconds": y,
            "split": split,
        }
    )


def test_search_minimises_validation_rmse() -> None:
    (spec,) = load_use_cases([CONFIG_DIR / "pricing.yaml"])
    tuning = TuningSpec(
        trials=3, timeout_s=60, space={"num_leaves": SearchRangeSpec(low=2, high=15, integer=True)}
    )
    stage = spec.model["delivery"].model_copy(update={"tuning": tuning})
    spec = spec.model_copy(update={"model": {"delivery": stage}})
    result = tune(spec, "delivery", _training_set())
    assert result.metric == "rmse" and len(result.trials) == 3
    scores = [t["score"] for t in result.trials]
    assert result.best_score == min(scores)  # lower is better: minimised, not maximised
    assert 50 < result.best_score < 80  # the noise's sd is 60
