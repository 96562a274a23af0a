"""Drift of batch predictions: one window's scores against the window before, by PSI.

The same PSI as the drift report (bins fixed on the reference at its quantiles, nulls a bin of
their own: :mod:`assets.monitoring.feature_bins`) and the same reading of it
(:func:`assets.monitoring.drift_status.drift_status`: ``monitoring.psi_warn`` / ``psi_alert``, no
verdict under ``min_window_rows``), so a prediction shift reads like a feature shift. The
reference is the previous window, not the test split: a batch run scores the same entities each
window, so consecutive windows should agree unless the entities' features or the model moved,
which is what this check is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from assets.monitoring.drift_status import DriftStatus, drift_status
from assets.monitoring.reference_fit import fit_feature
from configs.schema.operations import MonitoringSpec


@dataclass(frozen=True)
class PredictionDrift:
    """The verdict on one window's predictions; ``passed`` unless the PSI reaches the alert."""

    status: DriftStatus | None
    psi: float
    rows: int
    reference_rows: int
    breakdown: pd.DataFrame | None

    @property
    def passed(self) -> bool:
        return self.status is not DriftStatus.ALERT

    @property
    def summary(self) -> str:
        if self.status is None:
            return "no earlier window to compare with: the first window scored"
        return f"PSI {self.psi:.4f} over {self.rows} predictions: {self.status.value}"

    def metadata(self) -> dict[str, object]:
        out: dict[str, object] = {
            "status": self.status.value if self.status else "no reference",
            "rows": self.rows,
            "reference_rows": self.reference_rows,
        }
        if self.status is not None:
            out["psi"] = self.psi
        if self.breakdown is not None:
            out["bins"] = dg.MetadataValue.md(self.breakdown.to_markdown(index=False))
        return out


def prediction_drift(
    reference: pd.Series | None, window: pd.Series, monitoring: MonitoringSpec
) -> PredictionDrift:
    """PSI of ``window``'s predictions against ``reference``'s (None: nothing to compare)."""
    if reference is None or len(reference) == 0:
        return PredictionDrift(None, float("nan"), len(window), 0, None)
    if len(window) == 0:
        return PredictionDrift(DriftStatus.INSUFFICIENT, float("nan"), 0, len(reference), None)
    bins = fit_feature(reference.rename("prediction").astype(np.float64))
    breakdown = bins.breakdown(window.rename("prediction").astype(np.float64))
    value = float(breakdown["psi"].sum())
    status = drift_status(
        value,
        len(window),
        bins.status,
        monitoring.min_window_rows,
        monitoring.psi_warn,
        monitoring.psi_alert,
    )
    return PredictionDrift(status, value, len(window), len(reference), breakdown)
