"""One feature's PSI bins: fitted once on the reference, then used to count every window.

Bins are fixed on the reference so that windows are comparable with each other; this module
decides which bins a feature gets and what they are called, and leaves the fast counting to
:mod:`assets.monitoring.binning` and the formula to :mod:`assets.monitoring.psi`.

Binning, and why:

* Numeric: ``bins`` equal-mass bins at the reference's quantiles, point masses isolated (see
  :mod:`assets.monitoring.binning`).
* Categorical (strings, categories, booleans, or columns named in ``categorical``): the
  ``max_categories`` most frequent reference values get a bin each; the rest of the reference
  and every value it never saw share one ``(other)`` bin. Values are compared as strings. The
  cap keeps the small-sample bias (:mod:`assets.monitoring.drift_status`) in check.
* Nulls (NaN, None, NA) are a bin of their own in both kinds: a feature going null is drift.

The bins are fitted by :mod:`assets.monitoring.reference_fit`, from a column or from a reference
read in chunks. A datetime or timedelta column drifts by construction: the fit raises
``TypeError``.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from assets.monitoring.binning import numeric_array, numeric_counts, value_counts
from assets.monitoring.drift_status import DriftStatus
from assets.monitoring.psi import EPSILON, proportions, psi_terms

DEFAULT_BINS = 10
DEFAULT_MAX_CATEGORIES = 20
QUANTILE_SAMPLE = 200_000
OTHER = "(other)"
NULL = "(null)"

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True, eq=False)
class FeatureReference:
    """One feature's bins, fitted on the reference, and the reference's rows in each.

    ``counts`` has one entry per bin: for numeric features ``len(edges) + 1`` value bins, for
    categorical ones ``len(categories)`` plus ``(other)``; the null bin is always last.
    """

    feature: str
    kind: Kind
    edges: np.ndarray
    categories: tuple[str, ...]
    counts: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    @property
    def status(self) -> DriftStatus:
        """``empty_reference`` (all null), ``constant_reference`` (one value bin used) or ok."""
        values = self.counts[:-1]
        if values.sum() == 0:
            return DriftStatus.EMPTY_REFERENCE
        if np.count_nonzero(values) == 1:
            return DriftStatus.CONSTANT_REFERENCE
        return DriftStatus.OK

    @property
    def labels(self) -> list[str]:
        """Readable bin names, in the order of ``counts``."""
        if self.kind == "categorical":
            return [*self.categories, OTHER, NULL]
        if self.edges.size == 0:
            return ["(any value)", NULL]
        edges = self.edges
        # a cut point just above the previous one marks a point mass: "== v", then "(v, ..."
        after = [
            i > 0 and edges[i] == np.nextafter(edges[i - 1], np.inf) for i in range(edges.size)
        ]
        labels = [f"< {edges[0]:.6g}"]
        for i in range(edges.size - 1):
            if after[i + 1]:
                labels.append(f"== {edges[i]:.6g}")
            else:
                low = f"({edges[i - 1]:.6g}" if after[i] else f"[{edges[i]:.6g}"
                labels.append(f"{low}, {edges[i + 1]:.6g})")
        top = f"> {edges[-2]:.6g}" if after[-1] else f">= {edges[-1]:.6g}"
        return [*labels, top, NULL]

    def window_counts(self, values: pd.Series) -> np.ndarray | None:
        """Rows of ``values`` per bin; None when a numeric feature arrives as non-numbers."""
        if self.kind == "categorical":
            per_value, nulls = value_counts(values)
            bins = pd.Index(self.categories, dtype=object).get_indexer(per_value.index)
            bins[bins < 0] = len(self.categories)
            weights = per_value.to_numpy(dtype=np.float64)
            counts = np.bincount(bins, weights=weights, minlength=len(self.categories) + 1)
            return np.append(counts.astype(np.int64), nulls)
        array = numeric_array(values)
        return None if array is None else numeric_counts(array, self.edges)

    def breakdown(self, values: pd.Series, epsilon: float = EPSILON) -> pd.DataFrame:
        """Per bin: reference and window proportions and PSI term, to see where drift sits."""
        counts = self.window_counts(values)
        if counts is None:
            raise TypeError(f"column {self.feature!r}: window values are not numbers")
        return self.breakdown_counts(counts, epsilon)

    def breakdown_counts(self, counts: np.ndarray, epsilon: float = EPSILON) -> pd.DataFrame:
        """:meth:`breakdown` from the window's rows per bin (a window counted in chunks)."""
        return pd.DataFrame(
            {
                "bin": self.labels,
                "reference": proportions(self.counts, "reference"),
                "window": proportions(counts, f"window column {self.feature!r}"),
                "psi": psi_terms(self.counts, counts, epsilon),
            }
        )
