"""A LightGBM regressor as served: the point model and, optionally, a prediction interval.

The point model's loss is whatever LightGBM ``objective`` the YAML chose (L2, huber, quantile);
the interval is two more boosters trained with LightGBM's ``quantile`` objective at the lower
and upper quantiles (``regression.interval``), stored in the same object so a service returns
point and interval from one loaded model. Training lives in ``assets.models.regressor``.

Each booster sits in its own :class:`Regressor` (``booster``, ``feature_columns``,
``categories``, ``best_iteration``), the shape the registry's native logging
(:mod:`runtime.native`) and the Triton export read, so the point model is logged as the
``booster`` part like a classifier's. With the identity-link objectives above the raw score is
the prediction, so a served raw margin needs no transform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from runtime.models.features import Categories, feature_array


@dataclass
class Regressor:
    """One LightGBM regression booster; ``lower`` / ``upper`` quantile models when an interval
    was asked for (``quantiles`` holds their levels, e.g. (0.1, 0.9))."""

    booster: lgb.Booster
    feature_columns: list[str]
    categories: Categories
    label: str
    best_iteration: int
    params: dict[str, Any] = field(default_factory=dict)
    lower: Regressor | None = None
    upper: Regressor | None = None
    quantiles: tuple[float, float] | None = None
    # conformal widening of both bounds, fit on validation (assets.models.regressor)
    interval_shift: float = 0.0
    predict_threads: int = 0  # LightGBM threads per call; 0 = its default (all cores)

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """The matrix the trees read (see :func:`feature_array`)."""
        return feature_array(frame, self.feature_columns, self.categories)

    def _trees(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(
            x, num_iteration=self.best_iteration, num_threads=self.predict_threads
        )

    def predict(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The point prediction per row (a frame or its :meth:`features` matrix)."""
        x = frame if isinstance(frame, np.ndarray) else self.features(frame)
        return self._trees(x)

    @property
    def has_interval(self) -> bool:
        return self.lower is not None and self.upper is not None

    def predict_interval(self, frame: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) bounds per row from the two quantile models.

        Each bound moves out by ``interval_shift`` (in by a negative one), the conformal
        correction fit on validation rows so that the interval covers its nominal share.
        Separately fitted quantile models can cross on a few rows; the bounds are then swapped
        so that lower <= upper always holds (the interval a user reads).
        """
        if self.lower is None or self.upper is None:
            raise ValueError(
                f"{self.label}: this regressor has no prediction interval (regression.interval)"
            )
        x = frame if isinstance(frame, np.ndarray) else self.features(frame)
        low = self.lower._trees(x) - self.interval_shift
        high = self.upper._trees(x) + self.interval_shift
        return np.minimum(low, high), np.maximum(low, high)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``prediction`` and, with an interval, ``lower`` and ``upper`` columns per row."""
        x = self.features(frame)
        out = pd.DataFrame({"prediction": self._trees(x)}, index=frame.index)
        if self.has_interval:
            out["lower"], out["upper"] = self.predict_interval(x)
        return out
