"""Offline metrics of a regressor: RMSE, MAE, MAPE and the coverage of its prediction interval.

scikit-learn computes RMSE, MAE and MAPE. MAPE divides by the target, so rows whose target is 0
are left out of it (scikit-learn would divide by its epsilon instead and report ~1e15, which
says nothing about the model); how many were left out is reported as ``dropped/mape_zero_target``
(a count, never compared) and MAPE is NaN when every target is 0. ``interval_coverage`` is the share of targets inside
[lower, upper] (bounds included): near the nominal upper - lower quantile gap for a calibrated
interval, far below it for an overconfident one.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    root_mean_squared_error,
)

MAPE_DROPPED = "dropped/mape_zero_target"  # a count (assets.models.evaluation.is_count)


def mape(y: np.ndarray, prediction: np.ndarray) -> tuple[float, int]:
    """MAPE over the rows whose target is not 0, and how many rows that is."""
    y, prediction = np.asarray(y, dtype=float), np.asarray(prediction, dtype=float)
    counted = y != 0
    if not counted.any():
        return math.nan, 0
    return float(mean_absolute_percentage_error(y[counted], prediction[counted])), int(
        counted.sum()
    )


def interval_coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of targets with lower <= y <= upper."""
    y = np.asarray(y, dtype=float)
    inside = (y >= np.asarray(lower, dtype=float)) & (y <= np.asarray(upper, dtype=float))
    return float(inside.mean())


def regression_metrics(
    y: np.ndarray,
    prediction: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, float]:
    """rmse, mae, mape (non-zero targets), rows and the rows MAPE left out; interval_coverage
    when bounds are given."""
    y, prediction = np.asarray(y, dtype=float), np.asarray(prediction, dtype=float)
    if len(y) != len(prediction) or len(y) == 0:
        raise ValueError(
            f"need equally long, non-empty targets and predictions ({len(y)} vs {len(prediction)})"
        )
    if not np.isfinite(prediction).all():
        raise ValueError(f"{int((~np.isfinite(prediction)).sum())} predictions are not finite")
    percentage, counted = mape(y, prediction)
    metrics = {
        "rmse": float(root_mean_squared_error(y, prediction)),
        "mae": float(mean_absolute_error(y, prediction)),
        "mape": percentage,
        "rows": len(y),
        MAPE_DROPPED: len(y) - counted,
    }
    if lower is not None and upper is not None:
        metrics["interval_coverage"] = interval_coverage(y, lower, upper)
    return metrics
