"""Scalar shifts of a window against its reference: label rate and volume (rows per day).

PSI compares distributions; these compare one number each, with enough context (counts, a z
statistic for rates) to tell a change from noise.
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Shift:
    """A scalar of the window beside the reference's: label rate, rows per day."""

    metric: str
    reference: float
    window: float
    absolute_change: float
    relative_change: float | None  # None when the reference is 0: no finite ratio
    reference_n: int
    window_n: int
    z: float | None = None  # two-proportion z statistic, for rates


def _change(metric: str, ref: float, win: float, ref_n: int, win_n: int, z: float | None) -> Shift:
    relative = (win - ref) / ref if ref != 0 else None
    return Shift(metric, ref, win, win - ref, relative, ref_n, win_n, z)


def label_counts(labels: pd.Series, metric: str, side: str) -> tuple[float, int]:
    """(positives, known labels) of a binary label, nulls (labels not final yet) left out: a
    rate's parts, summed over the chunks of a period read in pieces."""
    known = labels.dropna().to_numpy()
    if not np.isin(known, (0, 1)).all():
        raise ValueError(f"{metric}: the {side} labels must be 0/1 or booleans")
    return float(known.astype(np.float64).sum()), int(known.size)


def rate_shift(metric: str, reference: tuple[float, int], window: tuple[float, int]) -> Shift:
    """A binary label's rate in the window beside the reference's, from their
    :func:`label_counts`. ``z`` is the pooled two-proportion z statistic, so a change can be
    told from noise: |z| > 3 is rarely chance."""
    for side, (_, known) in (("reference", reference), ("window", window)):
        if known == 0:
            raise ValueError(f"{metric}: the {side} has no non-null labels, no rate to compare")
    (ref_sum, ref_n), (win_sum, win_n) = reference, window
    ref, win = ref_sum / ref_n, win_sum / win_n
    pooled = (ref_sum + win_sum) / (ref_n + win_n)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / ref_n + 1 / win_n))
    return _change(metric, ref, win, ref_n, win_n, (win - ref) / spread if spread > 0 else 0.0)


def label_rate_shift(reference: pd.Series, window: pd.Series, metric: str = "label_rate") -> Shift:
    """Mean of a binary label (0/1 or bool) in the window beside the reference's (see
    :func:`rate_shift`)."""
    return rate_shift(
        metric,
        label_counts(reference, metric, "reference"),
        label_counts(window, metric, "window"),
    )


def volume_shift(
    reference_rows: int, reference_days: float, window_rows: int, window_days: float
) -> Shift:
    """Rows per day in the window beside the reference's (e.g. a broken upstream halves it)."""
    if reference_days <= 0 or window_days <= 0:
        raise ValueError(f"days must be > 0, got {reference_days} and {window_days}")
    if reference_rows < 0 or window_rows < 0:
        raise ValueError(f"rows must be >= 0, got {reference_rows} and {window_rows}")
    return _change(
        "rows_per_day",
        reference_rows / reference_days,
        window_rows / window_days,
        reference_rows,
        window_rows,
        None,
    )
