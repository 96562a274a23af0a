"""PSI of every monitored feature between a reference sample and recent windows.

The entry point of the PSI code: :meth:`DriftReference.fit` fits each feature's bins once on the
reference (e.g. the training split, :mod:`assets.monitoring.feature_bins`) and
:meth:`DriftReference.psi_table` reuses them for every window, so windows are comparable with each
other; each row carries the PSI (:mod:`assets.monitoring.psi`) and its status
(:mod:`assets.monitoring.drift_status`). Plain functions, no Dagster: the monitoring assets wire
them to storage and metadata.

Either side may be a frame or chunks read one at a time (:class:`runtime.table_chunks.
Chunks`, e.g. a training period of the event log a file at a time): the bins, counts and PSI are
the same as for the chunks concatenated, so a reference of any size fits in one chunk's memory.

Bad input: a reference without rows, a requested column it lacks, or a datetime/timedelta column
(they drift by construction) make :meth:`DriftReference.fit` raise ``ValueError``/``TypeError``;
everything a window can get wrong is a status, never an exception.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from assets.monitoring.drift_status import DriftStatus, drift_status
from assets.monitoring.feature_bins import (
    DEFAULT_BINS,
    DEFAULT_MAX_CATEGORIES,
    QUANTILE_SAMPLE,
    FeatureReference,
)
from assets.monitoring.psi import EPSILON, psi_terms
from assets.monitoring.reference_fit import BinSettings, fit_features
from runtime.table_chunks import Chunks

COLUMNS = (
    "feature",
    "kind",
    "psi",
    "status",
    "reference_rows",
    "window_rows",
    "bins",
    "reference_null_fraction",
    "window_null_fraction",
    "top_bin",
)


class EmptyReference(ValueError):
    """The reference has no rows: no bins to fit."""


@dataclass(frozen=True)
class WindowCounts:
    """A window's rows and, per feature it has, rows per reference bin (None: the values are
    not numbers where the reference's are); what a PSI table and a breakdown are made of."""

    rows: int
    counts: dict[str, np.ndarray | None] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class DriftReference:
    """Bins and reference counts of every monitored feature: fit once, compare many windows."""

    features: dict[str, FeatureReference]
    rows: int
    epsilon: float = EPSILON

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame | Chunks,
        columns: Sequence[str] | None = None,
        *,
        categorical: Iterable[str] = (),
        bins: int = DEFAULT_BINS,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        epsilon: float = EPSILON,
        quantile_sample: int = QUANTILE_SAMPLE,
        seed: int = 0,
    ) -> "DriftReference":
        """Fit bins on ``reference`` (e.g. the training split) for ``columns`` (default: all of a
        frame's; chunks must name theirs)."""
        if bins < 2:
            raise ValueError(f"bins: expected at least 2, got {bins}")
        if max_categories < 1:
            raise ValueError(f"max_categories: expected at least 1, got {max_categories}")
        if not 0 < epsilon < 1:
            raise ValueError(f"epsilon: expected a proportion in (0, 1), got {epsilon}")
        if quantile_sample < bins:
            raise ValueError(
                f"quantile_sample: expected at least bins ({bins}), got {quantile_sample}"
            )
        if isinstance(reference, pd.DataFrame) and reference.empty:
            raise EmptyReference("reference has no rows: PSI needs a sample to fit bins on")
        reference = Chunks.of(reference)
        names = list(reference.columns) if columns is None else list(columns)
        missing = [c for c in names if c not in reference.columns]
        if missing:
            raise ValueError(
                f"columns {missing} are not in the reference {list(reference.columns)}"
            )
        forced = set(categorical)
        if forced - set(names):
            raise ValueError(
                f"categorical: {sorted(forced - set(names))} are not among the columns"
            )
        settings = BinSettings(bins, max_categories, quantile_sample, seed)
        features, rows = fit_features(reference, names, forced, settings)
        if rows == 0:
            raise EmptyReference("reference has no rows: PSI needs a sample to fit bins on")
        return cls(features=features, rows=rows, epsilon=epsilon)

    def count(self, window: pd.DataFrame | Chunks) -> WindowCounts:
        """Rows per bin of every feature the window has, summed chunk by chunk."""
        window = Chunks.of(window)
        names = [f for f in self.features if f in window.columns]
        rows, counts = 0, dict.fromkeys(names, 0)
        for chunk in window(names):
            rows += len(chunk)
            for name in names:
                found = self.features[name].window_counts(chunk[name])
                before = counts[name]
                counts[name] = None if found is None or before is None else before + found
        return WindowCounts(rows, counts)

    def psi_table(
        self,
        window: pd.DataFrame | Chunks | WindowCounts,
        *,
        min_window_rows: int = 1000,
        psi_warn: float = 0.1,
        psi_alert: float = 0.25,
    ) -> pd.DataFrame:
        """One row per feature: PSI of ``window`` against the reference, and its status.

        Columns: ``feature, kind, psi, status, reference_rows, window_rows, bins,
        reference_null_fraction, window_null_fraction, top_bin`` (the bin adding most PSI).
        Thresholds are the ``monitoring`` section's; ``psi >= psi_warn`` warns.
        """
        counted = window if isinstance(window, WindowCounts) else self.count(window)
        if min_window_rows < 1:
            raise ValueError(f"min_window_rows: expected at least 1, got {min_window_rows}")
        if not 0 < psi_warn <= psi_alert:
            raise ValueError(f"expected 0 < psi_warn <= psi_alert, got {psi_warn} and {psi_alert}")
        rows = [
            self._row(ref, counted, min_window_rows, psi_warn, psi_alert)
            for ref in self.features.values()
        ]
        return pd.DataFrame.from_records(rows, columns=list(COLUMNS))

    def _row(
        self,
        ref: FeatureReference,
        window: WindowCounts,
        min_window_rows: int,
        psi_warn: float,
        psi_alert: float,
    ) -> dict[str, object]:
        rows = window.rows
        row: dict[str, object] = {
            "feature": ref.feature,
            "kind": ref.kind,
            "psi": math.nan,
            "reference_rows": ref.rows,
            "window_rows": rows,
            "bins": int(ref.counts.size),
            "reference_null_fraction": ref.counts[-1] / ref.rows,
            "window_null_fraction": math.nan,
            "top_bin": None,
        }
        if ref.feature not in window.counts:
            return row | {"status": DriftStatus.MISSING_COLUMN.value}
        if rows == 0:
            return row | {"status": DriftStatus.INSUFFICIENT.value}
        counts = window.counts[ref.feature]
        if counts is None:
            return row | {"status": DriftStatus.TYPE_MISMATCH.value}
        terms = psi_terms(ref.counts, counts, self.epsilon)
        value = float(terms.sum())
        status = drift_status(value, rows, ref.status, min_window_rows, psi_warn, psi_alert)
        return row | {
            "psi": value,
            "status": status.value,
            "window_null_fraction": counts[-1] / rows,
            "top_bin": ref.labels[int(np.argmax(terms))] if value > 0 else None,
        }
