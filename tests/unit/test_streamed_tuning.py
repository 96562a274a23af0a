"""A tuning search on a set whose splits stay in its file: each trial's LightGBM bins the train
split a chunk at a time, validation is read once, and test never; the trials, their scores and
the best parameters are those of the search on held splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.models.tuning import tune
from configs import CONFIG_DIR
from configs.schema import load_specs
from configs.schema.model_stage import SearchRangeSpec, TuningSpec
from tests.streamed_fits import streamed_set
from tests.unit.test_regression_tuning import _training_set
from tests.unit.test_streamed_matrix import FEATURES, _frame

SPACE = {
    "num_leaves": SearchRangeSpec(low=3, high=31, integer=True),
    "learning_rate": SearchRangeSpec(low=0.02, high=0.3, log=True),
}


def _tuned(use_case: str, model: str, params: dict):
    (spec,) = load_specs([CONFIG_DIR / f"{use_case}.yaml"])
    tuning = TuningSpec(trials=4, timeout_s=120, space=SPACE)
    stage = spec.model[model].model_copy(update={"tuning": tuning, "params": params})
    return spec.model_copy(update={"model": {**spec.model, model: stage}})


def _fraud_set() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    frame = _frame(6_000, seed=5).rename(columns={c: f"card__{c}" for c in FEATURES})
    frame["card_id"] = rng.integers(0, 400, len(frame))
    frame["split"] = pd.Categorical(rng.choice(["train", "validation", "test"], len(frame)))
    return frame


@pytest.mark.parametrize(
    ("use_case", "model", "frame"),
    [("fraud", "scorer", _fraud_set), ("pricing", "delivery", _training_set)],
)
def test_a_search_on_streamed_splits_is_the_held_one_s(use_case, model, frame) -> None:
    spec = _tuned(use_case, model, {"num_iterations": 25})
    frame = frame()
    held = tune(spec, model, frame)
    cuts = [1, 700, 700, 2_100]
    streamed = tune(spec, model, streamed_set(spec, model, frame, cuts, ("validation",)))
    assert len(held.trials) == 4 and held.metric == streamed.metric
    assert [t["params"] for t in streamed.trials] == [t["params"] for t in held.trials]
    assert [t["score"] for t in streamed.trials] == [t["score"] for t in held.trials]
    assert len({t["score"] for t in held.trials}) > 1  # the sampled parameters matter
    assert streamed.best_params == held.best_params
