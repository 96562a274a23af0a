"""Named baselines of a regressor: the number a model's RMSE must beat, from training data only.

* ``mean``: the training split's mean target for every row (the best constant under L2);
* ``last_value``: the unit's (store's, route's) most recent target that was *known* before the
  row, i.e. whose label had arrived by then (``labels.<x>.available_at``, ``available_after``,
  else its ``maturity``, never the event time of a delayed label); rows whose unit has none yet
  get the training mean;
* ``feature:<column>``: one feature column as the prediction (e.g. the store's 7-day mean
  delivery time); missing values get the training mean.

Each baseline also has an interval, so ``interval_coverage`` compares like with like: its own
prediction plus the training split's residual quantiles (for ``mean``, the training target's own
quantiles).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.models.baselines import FEATURE_PREFIX
from configs.schema.base import parse_duration
from configs.schema.consistency import REGRESSION_BASELINES
from configs.schema.usecase import UseCaseSpec

KNOWN = (*REGRESSION_BASELINES, f"{FEATURE_PREFIX}<column>")


@dataclass(frozen=True)
class History:
    """Every labelled row a ``last_value`` baseline may look back on: the unit, the event time
    and when the label became known (all splits: a test row's predecessor may be in train)."""

    frame: pd.DataFrame
    unit: str
    time: str
    known: pd.Series  # when each row's label became known, aligned on ``frame``


def label_known_times(spec: UseCaseSpec, label: str, frame: pd.DataFrame) -> pd.Series:
    """When each row's ``label`` became known: its ``available_at`` column, the event time plus
    ``available_after``, else the event time plus its ``maturity`` (the YAML's promise that it
    is final by then) when the arrival column is not among the training set's columns.

    A delayed label with neither would be read at its event time, which is leakage; that is a
    ValueError naming the field to set.
    """
    rule = spec.labels[label]
    time = pd.to_datetime(frame[spec.events.timestamp])
    if rule.available_at is not None and rule.available_at in frame.columns:
        return pd.to_datetime(frame[rule.available_at])
    if rule.available_after is not None:
        return time + pd.Timedelta(parse_duration(rule.available_after))
    if rule.available_at is None:
        return time  # known at the event itself
    maturity = pd.Timedelta(parse_duration(rule.maturity))
    if maturity <= pd.Timedelta(0):
        raise ValueError(
            f"{spec.name}: labels.{label}: last_value needs to know when each label arrived;"
            f" the training set has no {rule.available_at!r} column and maturity is 0: set"
            f" labels.{label}.maturity to the longest delay"
        )
    return time + maturity


def mean_value(train: pd.DataFrame, label: str) -> float:
    values = train[label].to_numpy(dtype=float)
    if values.size == 0:
        raise ValueError("the mean baseline needs training rows")
    return float(values.mean())


def last_value(rows: pd.DataFrame, history: History, label: str, fallback: float) -> np.ndarray:
    """Per row, the latest target of its unit known strictly before the row's time.

    ``merge_asof`` on the arrival time with ``allow_exact_matches=False``: a label that arrives
    at the row's own instant was not known when the prediction was made (1µs before, as the
    point-in-time join reads features).
    """
    for name, frame in (("rows", rows), ("history", history.frame)):
        for column in (history.unit, history.time):
            if column not in frame.columns:
                raise ValueError(f"last_value: {column!r} is not a column of the {name}")
    left = pd.DataFrame(
        {
            "_unit": rows[history.unit].to_numpy(),
            "_at": pd.to_datetime(rows[history.time]).astype("datetime64[ns]").to_numpy(),
            "_row": np.arange(len(rows)),
        }
    ).sort_values("_at", kind="stable")
    right = pd.DataFrame(
        {
            "_unit": history.frame[history.unit].to_numpy(),
            "_at": pd.to_datetime(history.known).astype("datetime64[ns]").to_numpy(),
            "_value": history.frame[label].to_numpy(dtype=float),
        }
    ).sort_values("_at", kind="stable")
    joined = pd.merge_asof(
        left, right, on="_at", by="_unit", allow_exact_matches=False, direction="backward"
    )
    values = np.full(len(rows), fallback, dtype=float)
    found = joined["_value"].to_numpy(dtype=float)
    values[joined["_row"].to_numpy()] = np.where(np.isnan(found), fallback, found)
    return values


def feature_value(rows: pd.DataFrame, column: str, fallback: float) -> np.ndarray:
    """A feature column as the prediction; a missing value (no history) gets ``fallback``."""
    if column not in rows.columns:
        raise ValueError(f"baseline feature {column!r} is not a column of the training set")
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(values), values, fallback)


def regression_baseline(
    name: str, train: pd.DataFrame, label: str, history: History | None = None
) -> Callable[[pd.DataFrame], np.ndarray]:
    """``predict(rows)`` of the baseline ``name``, fit on ``train`` only."""
    fallback = mean_value(train, label)
    if name.startswith(FEATURE_PREFIX):
        column = name.removeprefix(FEATURE_PREFIX)
        return lambda rows: feature_value(rows, column, fallback)
    if name == "mean":
        return lambda rows: np.full(len(rows), fallback, dtype=float)
    if name == "last_value":
        if history is None:
            raise ValueError("last_value needs the labelled history (unit, time, arrival)")
        return lambda rows: last_value(rows, history, label, fallback)
    raise ValueError(f"unknown regression baseline {name!r}; known: {', '.join(KNOWN)}")


def baseline_interval(
    predict: Callable[[pd.DataFrame], np.ndarray],
    train: pd.DataFrame,
    rows: pd.DataFrame,
    label: str,
    quantiles: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's prediction on ``rows`` plus its training residuals' ``quantiles``."""
    residuals = train[label].to_numpy(dtype=float) - predict(train)
    low, high = np.quantile(residuals, quantiles)
    point = predict(rows)
    return point + low, point + high
