"""Drift of a use case's data: which columns are watched, and PSI tables over them.

Two views, both through :class:`assets.monitoring.drift_reference.DriftReference` (bins fixed on
the reference, the YAML's ``monitoring`` thresholds and minimum window):

* **Event drift** -- the raw log's own columns, new days against earlier ones. Cheap (no model,
  no features), so the drift sensor runs it on every new raw partition. Watched: numeric and
  categorical events columns that describe the event; ids, keys, group and unique columns,
  timestamps, labels and label-arrival times are not distributions a model sees.
* **Model drift** -- every feature of a model and its score, the newest rows the model learned
  from (its validation split) against the most recent rows of its training set (test split).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.features.availability import known_at
from assets.monitoring.drift_reference import DriftReference, EmptyReference, WindowCounts
from assets.monitoring.shifts import Shift, label_counts, rate_shift, volume_shift
from configs.schema.request_checks import request_features
from configs.schema.request_expressions import TRANSFORMS
from configs.schema.usecase import UseCaseSpec
from runtime.table_chunks import Chunks

SCORE = "score"
ALERT = "alert"


@dataclass
class Drift:
    """A PSI table with what produced it, so a report can break any feature down by bin."""

    table: pd.DataFrame
    reference: DriftReference | None
    window: WindowCounts

    def breakdown(self, feature: str) -> pd.DataFrame:
        """Reference and window share and PSI term per bin of ``feature``."""
        counts = self.window.counts[feature]
        if counts is None:
            raise TypeError(f"column {feature!r}: window values are not numbers")
        return self.reference.features[feature].breakdown_counts(counts)


def calendar_columns(spec: UseCaseSpec) -> set[str]:
    """Request-time features read off the clock (hour, weekday, weekend, night).

    The drift window is a slice of time, so their distribution in it differs from the
    reference's by construction (a 3-day window holds 3 weekdays): a PSI alert on them says
    when the window was cut, not that the world changed. They are left out of model drift.
    """
    return {
        feature.column
        for feature in request_features(spec)
        if feature.expression.transform and TRANSFORMS[feature.expression.transform].zone
    }


def watched_event_columns(spec: UseCaseSpec) -> tuple[list[str], list[str]]:
    """(numeric, categorical) events columns whose distribution drift is watched."""
    keys = {entity.key for entity in spec.entities.values()}
    skip = keys | {spec.events.timestamp, spec.events.group}
    for label in spec.labels.values():
        # a label, its arrival time and the columns that reveal it are outcomes, not inputs
        skip |= {label.column, label.available_at, *label.outcomes}
    numeric, categorical = [], []
    for name, column in spec.events.columns.items():
        if name in skip or column.unique or name.endswith("_id") or column.dtype == "timestamp":
            continue
        (categorical if column.dtype in ("string", "bool") else numeric).append(name)
    return numeric, categorical


def _thresholds(spec: UseCaseSpec) -> dict[str, float | int]:
    monitoring = spec.monitoring
    return {
        "min_window_rows": monitoring.min_window_rows,
        "psi_warn": monitoring.psi_warn,
        "psi_alert": monitoring.psi_alert,
    }


def event_drift(
    spec: UseCaseSpec, reference: pd.DataFrame | Chunks, window: pd.DataFrame | Chunks
) -> Drift:
    """PSI of every watched events column, ``window`` against ``reference`` (either a frame
    or chunks: the training period of a log read a file at a time)."""
    numeric, categorical = watched_event_columns(spec)
    reference = Chunks.of(reference)
    columns = [c for c in numeric + categorical if c in reference.columns]
    empty = Drift(
        pd.DataFrame(columns=["source", "feature", "psi", "status"]), None, WindowCounts(0)
    )
    if not columns:
        return empty
    try:
        fitted = DriftReference.fit(
            reference, columns, categorical=[c for c in categorical if c in columns]
        )
    except EmptyReference:
        return empty
    counts = fitted.count(window)
    table = fitted.psi_table(counts, **_thresholds(spec))
    return Drift(table.assign(source="events"), fitted, counts)


def score_columns(values: np.ndarray) -> dict[str, np.ndarray]:
    """The model's score as drift columns: ``score``, or ``score_<k>`` per class of a model that
    gives a probability matrix (a multiclass classifier), each class's probability its own PSI."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return {SCORE: values}
    return {f"{SCORE}_{k}": values[:, k] for k in range(values.shape[1])}


def model_drift(
    spec: UseCaseSpec,
    model: str,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    features: list[str],
    score: Callable[[pd.DataFrame], np.ndarray] | None,
) -> Drift:
    """PSI of a model's features and (with ``score``) of its score, window vs reference."""
    calendar = calendar_columns(spec)
    columns = [
        c
        for c in features
        if c in reference.columns and _scalar(reference[c]) and c not in calendar
    ]
    scored = score is not None and len(reference) and len(window)
    if scored:
        reference_scores = score_columns(score(reference))
        window_scores = score_columns(score(window))
        reference, window = reference.assign(**reference_scores), window.assign(**window_scores)
        columns += list(reference_scores)
    reference, window = reference[columns], window[columns]
    categorical = [c for c in columns if not pd.api.types.is_numeric_dtype(reference[c])]
    fitted = DriftReference.fit(reference, columns, categorical=categorical)
    counts = fitted.count(window)
    table = fitted.psi_table(counts, **_thresholds(spec)).assign(source=f"model:{model}")
    return Drift(table, fitted, counts)


def shifts(
    spec: UseCaseSpec, reference: pd.DataFrame | Chunks, window: pd.DataFrame | Chunks
) -> pd.DataFrame:
    """Rows per day and each binary label's rate, window beside reference (either side a frame
    or chunks, summed a chunk at a time).

    A delayed label counts only where it had arrived by the end of the data (its
    ``available_at`` or ``available_after``), so a window of fresh events is not read as "no
    fraud". A label with no known value on one side is left out rather than reported as a change.
    """
    timestamp = str(spec.events.timestamp)
    sides = (Chunks.of(reference), Chunks.of(window))
    (ref_rows, ref_days, ref_end), (win_rows, win_days, win_end) = (
        _period(side, timestamp) for side in sides
    )
    found: list[Shift] = [volume_shift(ref_rows, ref_days, win_rows, win_days)]
    end = pd.Series([ref_end, win_end]).max()
    for name, label in spec.labels.items():
        if label.kind != "binary" or label.column not in sides[0].columns:
            continue
        metric = f"label_rate:{name}"
        read = [label.column, timestamp, *([label.available_at] if label.available_at else [])]
        try:
            counts = [
                _known_labels(spec, name, side(dict.fromkeys(read)), end, metric, role)
                for side, role in zip(sides, ("reference", "window"), strict=True)
            ]
            found.append(rate_shift(metric, *counts))
        except ValueError:
            continue
    return pd.DataFrame([vars(shift) for shift in found])


def _period(side: Chunks, timestamp: str) -> tuple[int, float, pd.Timestamp]:
    """Rows, calendar days spanned (at least one) and the latest time of a side."""
    rows, days, latest = 0, set(), pd.NaT
    for frame in side([timestamp]):
        rows += len(frame)
        times = frame[timestamp]
        days.update(times.dt.floor("D").dropna().unique())
        latest = pd.Series([latest, times.max()]).max()
    return rows, max(1.0, float(len(days))), latest


def _known_labels(
    spec: UseCaseSpec,
    name: str,
    frames: Iterable[pd.DataFrame],
    end: pd.Timestamp,
    metric: str,
    side: str,
) -> tuple[float, int]:
    """(positives, labels known by ``end``) of label ``name`` over one side's frames."""
    positives, known = 0.0, 0
    for frame in frames:
        values = frame[spec.labels[name].column].astype("Float64")
        arrived = known_at(spec, name, frame)
        if arrived is not None:
            values = values.where(arrived <= end)
        chunk_positives, chunk_known = label_counts(values, metric, side)
        positives, known = positives + chunk_positives, known + chunk_known
    return positives, known


def _scalar(series: pd.Series) -> bool:
    """Not a list column (last-N ids): PSI needs one value per row."""
    values = series.dropna()
    return not (len(values) and isinstance(values.iloc[0], list | tuple | np.ndarray))
