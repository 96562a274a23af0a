"""Population stability index (PSI): the formula, over bins both sides already share.

This module holds only the arithmetic, so the binning (:mod:`assets.monitoring.feature_bins`),
the statuses (:mod:`assets.monitoring.drift_status`) and the per-feature tables
(:mod:`assets.monitoring.drift_reference`) all read it from one place. Plain functions, no
Dagster: the monitoring assets wire them to storage and metadata.

PSI over bins with reference proportions ``p`` and window proportions ``q`` is
``sum((q - p) * ln(q / p))``, the symmetrised Kullback-Leibler divergence. The usual reading:
below 0.1 stable, 0.1 to 0.25 worth a look, above 0.25 shifted (``monitoring.psi_warn`` and
``psi_alert``).

Empty bins: proportions are floored at ``epsilon`` (1e-4) before the log, not renormalised. A bin
empty on both sides then adds exactly 0, one empty on one side adds at most
``q * ln(q / epsilon)``: finite, and large, as it should be when mass appears where the reference
had none.
"""

import numpy as np
from numpy.typing import ArrayLike

EPSILON = 1e-4


def psi_terms(reference: ArrayLike, window: ArrayLike, epsilon: float = EPSILON) -> np.ndarray:
    """Each bin's share of the PSI, from counts or proportions over the same bins.

    Both sides are normalised to sum 1, then floored at ``epsilon`` so an empty bin stays finite.
    """
    p = np.maximum(proportions(reference, "reference"), epsilon)
    q = np.maximum(proportions(window, "window"), epsilon)
    if p.shape != q.shape:
        raise ValueError(f"reference has {p.size} bins but window has {q.size}")
    return (q - p) * np.log(q / p)


def psi(reference: ArrayLike, window: ArrayLike, epsilon: float = EPSILON) -> float:
    """PSI from counts or proportions over the same bins (see :func:`psi_terms`)."""
    return float(psi_terms(reference, window, epsilon).sum())


def proportions(counts: ArrayLike, side: str) -> np.ndarray:
    """``counts`` as shares of their total; ``side`` names the input in error messages."""
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 1 or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{side}: expected a 1-d array of finite non-negative counts")
    total = values.sum()
    if total <= 0:
        raise ValueError(f"{side}: no rows in any bin, PSI is undefined")
    return values / total
