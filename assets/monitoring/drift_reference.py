"""PSI of every monitored feature between a reference sample and recent windows.

The entry point of the PSI code: :meth:`DriftReference.fit` fits each feature's bins once on the
reference (e.g. the training split, :mod:`assets.monitoring.feature_bins`) and
:meth:`DriftReference.psi_table` reuses them for every window, so windows are comparable with each
other; each row carries the PSI (:mod:`assets.monitoring.psi`) and its status
(:mod:`assets.monitoring.drift_status`). Plain functions, no Dagster: the monitoring assets wire
them to storage and metadata.

Bad input: a reference without rows, a requested column it lacks, or a datetime/timedelta column
(they drift by construction) make :meth:`DriftReference.fit` raise ``ValueError``/``TypeError``;
everything a window can get wrong is a status, never an exception.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.monitoring.drift_status import DriftStatus, drift_status
from assets.monitoring.feature_bins import (
    DEFAULT_BINS,
    DEFAULT_MAX_CATEGORIES,
    QUANTILE_SAMPLE,
    FeatureReference,
    fit_feature,
)
from assets.monitoring.psi import EPSILON, psi_terms

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


@dataclass(frozen=True, eq=False)
class DriftReference:
    """Bins and reference counts of every monitored feature: fit once, compare many windows."""

    features: dict[str, FeatureReference]
    rows: int
    epsilon: float = EPSILON

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        columns: Sequence[str] | None = None,
        *,
        categorical: Iterable[str] = (),
        bins: int = DEFAULT_BINS,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        epsilon: float = EPSILON,
        quantile_sample: int = QUANTILE_SAMPLE,
        seed: int = 0,
    ) -> "DriftReference":
        """Fit bins on ``reference`` (e.g. the training split) for ``columns`` (default: all)."""
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
        if len(reference) == 0:
            raise ValueError("reference has no rows: PSI needs a sample to fit bins on")
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
        features = {
            name: fit_feature(
                reference[name].rename(name),
                categorical=name in forced,
                bins=bins,
                max_categories=max_categories,
                quantile_sample=quantile_sample,
                seed=seed,
            )
            for name in names
        }
        return cls(features=features, rows=len(reference), epsilon=epsilon)

    def psi_table(
        self,
        window: pd.DataFrame,
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
        if min_window_rows < 1:
            raise ValueError(f"min_window_rows: expected at least 1, got {min_window_rows}")
        if not 0 < psi_warn <= psi_alert:
            raise ValueError(f"expected 0 < psi_warn <= psi_alert, got {psi_warn} and {psi_alert}")
        rows = [
            self._row(ref, window, min_window_rows, psi_warn, psi_alert)
            for ref in self.features.values()
        ]
        return pd.DataFrame.from_records(rows, columns=list(COLUMNS))

    def _row(
        self,
        ref: FeatureReference,
        window: pd.DataFrame,
        min_window_rows: int,
        psi_warn: float,
        psi_alert: float,
    ) -> dict[str, object]:
        rows = len(window)
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
        if ref.feature not in window.columns:
            return row | {"status": DriftStatus.MISSING_COLUMN.value}
        if rows == 0:
            return row | {"status": DriftStatus.INSUFFICIENT.value}
        counts = ref.window_counts(window[ref.feature])
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
