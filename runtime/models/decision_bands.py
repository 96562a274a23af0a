"""Approve / review / decline bands over a calibrated probability, as served.

The thresholds are chosen from validation data by ``assets.models.decision_bands``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class DecisionBands:
    """Approve below one threshold, decline at or above another, review in between."""

    approve_below: float
    decline_at_or_above: float
    summary: dict[str, Any]

    def apply_bands(self, p: np.ndarray | pd.Series) -> np.ndarray:
        """``"approve"`` / ``"review"`` / ``"decline"`` for each probability."""
        p = np.asarray(p, dtype=float)
        out = np.full(p.shape, "review", dtype=object)
        out[p < self.approve_below] = "approve"
        out[p >= self.decline_at_or_above] = "decline"
        return out
