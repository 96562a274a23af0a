"""Batch serving's scoring rows and prediction tables, without Dagster or Feast.

A batch run scores every entity known before a window closes, with its features as of that
moment, and stores one row per entity and window. The table is what the Feast view
``<use case>_predictions`` reads: the join key, ``event_timestamp`` (when the window closed: the
moment the prediction stands for), ``created_timestamp`` (when it was computed, so a window scored
again wins Feast's tie on the event time), the model's outputs (``prediction``; ``lower`` and
``upper`` for a regressor with an interval; ``label`` for multiclass) and ``model_version``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
PREDICTION = "prediction"
LOWER, UPPER = "lower", "upper"  # a regressor's prediction interval
LABEL = "label"  # a multiclass model's top class (``prediction`` is its probability)
MODEL_VERSION = "model_version"
WINDOW = "window"
# features are read as of just before the window closes: what was known inside it
BEFORE_CLOSE = pd.Timedelta(microseconds=1)


def scoring_rows(
    first_seen: pd.DataFrame, key: str, closes: Sequence[pd.Timestamp], windows: Sequence[str]
) -> pd.DataFrame:
    """One row per (window, entity seen before the window closed): ``key``, ``as_of`` (just
    before the close) and the window's name, in window order.

    ``first_seen`` has ``key`` and ``first_seen`` (its earliest stored feature row): an entity
    that appears later is not scored in earlier windows, as it did not exist yet.
    """
    seen = pd.to_datetime(first_seen["first_seen"], utc=True)
    frames = []
    for close, window in zip(closes, windows, strict=True):
        as_of = pd.Timestamp(close).tz_convert("UTC") - BEFORE_CLOSE
        keys = first_seen.loc[(seen <= as_of).to_numpy(), key].sort_values(kind="stable")
        frames.append(
            pd.DataFrame({key: keys.to_numpy(), "as_of": as_of.tz_localize(None), WINDOW: window})
        )
    return pd.concat(frames, ignore_index=True)


def output_columns(problem: str, interval: bool) -> tuple[tuple[str, str], ...]:
    """The stored outputs, ``(name, dtype)``, besides the model version: ``prediction`` always
    (P(positive), the regression value, the top class's probability), ``lower`` and ``upper``
    for a regressor with a prediction interval, ``label`` (the top class) for multiclass."""
    columns = [(PREDICTION, "float")]
    if problem == "regression" and interval:
        columns += [(LOWER, "float"), (UPPER, "float")]
    if problem == "multiclass_classification":
        columns.append((LABEL, "string"))
    return tuple(columns)


def scores(model: Any, frame: pd.DataFrame, columns: Sequence[str] = (PREDICTION,)) -> dict:
    """The model's outputs per row, by name (:func:`output_columns`): float64 arrays, and
    strings for ``label``.

    Raises ``ValueError`` naming what is missing or what came back, so a model that needs an
    event's fields, or answers an unexpected shape, fails the run with the reason.
    """
    missing = [c for c in getattr(model, "feature_columns", []) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the model reads columns a batch run does not have: {', '.join(missing)}"
            " (batch scoring has only stored features of the entity)"
        )
    if len(frame) == 0:  # a window before any entity existed
        return {c: np.empty(0, dtype=object if c == LABEL else np.float64) for c in columns}
    values = np.asarray(model.predict(frame))
    out: dict[str, np.ndarray] = {}
    if LABEL in columns and values.ndim == 2 and len(values) == len(frame):
        top = values.argmax(axis=1)
        out[LABEL] = np.asarray(model.classes, dtype=object)[top]
        values = values[np.arange(len(values)), top]
    if values.ndim != 1 or len(values) != len(frame):
        raise ValueError(
            f"batch scoring stores one number per entity; the model answered shape {values.shape}"
            f" for {len(frame)} rows"
        )
    out[PREDICTION] = values.astype(np.float64)
    if LOWER in columns:
        lower, upper = model.predict_interval(frame)
        out[LOWER], out[UPPER] = np.asarray(lower, float), np.asarray(upper, float)
    return out


def prediction_table(
    rows: pd.DataFrame,
    key: str,
    outputs: dict[str, np.ndarray],
    closes: dict[str, pd.Timestamp],
    version: str,
    created: pd.Timestamp,
) -> pd.DataFrame:
    """The predictions of ``rows`` (from :func:`scoring_rows`) as the Feast view stores them."""
    rows = rows.reset_index(drop=True)
    ends = {w: pd.Timestamp(t).tz_convert("UTC") for w, t in closes.items()}
    return pd.DataFrame(
        {
            key: rows[key],
            EVENT_TIMESTAMP: pd.to_datetime(rows[WINDOW].map(ends), utc=True),
            CREATED_TIMESTAMP: pd.Timestamp(created).tz_convert("UTC"),
            **outputs,
            MODEL_VERSION: np.int64(int(version)),
            WINDOW: rows[WINDOW],
        }
    )
