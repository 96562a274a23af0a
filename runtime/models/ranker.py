"""A LightGBM LambdaRank model as served; training lives in ``assets.models.ranker``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from runtime.models.features import Categories, feature_array


@dataclass
class Ranker:
    """A LightGBM LambdaRank model; ``predict`` scores rows, higher ranks first within a group."""

    booster: lgb.Booster
    feature_columns: list[str]
    categories: Categories
    label: str
    group: str
    best_iteration: int
    params: dict[str, Any] = field(default_factory=dict)
    predict_threads: int = 0  # LightGBM threads per call; 0 = its default (all cores)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        x = feature_array(frame, self.feature_columns, self.categories)
        return self.booster.predict(
            x, num_iteration=self.best_iteration, num_threads=self.predict_threads
        )
