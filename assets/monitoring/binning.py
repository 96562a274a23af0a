"""Cut points and rows per bin for PSI: the array work, kept apart from what a bin means.

:mod:`assets.monitoring.feature_bins` decides which bins a feature gets; the functions here find
the numeric cut points and count rows into bins fast enough for 10M-row tables, and that speed
work (dtype-preserving comparisons, sampled quantiles, one hash pass for categories) is its own
job with its own benchmark (``bench/psi.py``).

* Cut points sit at the reference's quantiles, taken from a seeded random sample of
  ``quantile_sample`` values: they only need to be roughly equal-mass, the reference proportions
  are then counted exactly on every row. Bins are ``[e_i, e_i+1)``, the outer ones open
  (``< e_0``, ``>= e_last``), so values outside the reference's range land in the end bins. Tied
  data (40% zeros, a discrete feature) repeats cut points: they are deduplicated and the tied
  value gets a bin of its own (``== v``), as do the sample's minimum and maximum when they are
  cut points, so a point mass never shares a bin with its neighbours and values beyond it stay
  apart. A feature with at most ``bins`` distinct values gets one bin per value.
* Speed: bins are counted by one comparison pass per cut point, so 10M rows x 50 float32
  features fit in about 2.5 s and a window of that size takes 1.7 s on two shared cores
  (``bench/psi.py``).
"""

import math

import numpy as np
import pandas as pd


def numeric_array(values: pd.Series) -> np.ndarray | None:
    """The column as a NumPy array with NaN for nulls; None if its values are not numbers.

    float32 and integer columns keep their dtype: casting 10M rows to float64 per column would
    cost as much as binning them (:func:`comparable_edges` keeps the comparison exact).
    """
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return None
    if not pd.api.types.is_numeric_dtype(dtype):
        try:
            values = pd.to_numeric(values)
        except (ValueError, TypeError):
            return None
        dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
        array = values.to_numpy()
        if dtype == np.float16:
            return array.astype(np.float32)
        # a column of a row-major 2-D block is strided: one copy beats ~10 strided passes
        return np.ascontiguousarray(array)
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def sample_positions(rows: int, finite: int, size: int, seed: int) -> np.ndarray | None:
    """Row positions to draw about ``size`` finite values from a column of ``rows`` rows with
    ``finite`` finite values (with a fixed seed; the draws that hit a non-finite value are then
    dropped), or None when there are at most ``size``: the sample is every finite value."""
    if finite <= size:
        return None
    return np.random.default_rng(seed).integers(0, rows, math.ceil(size * rows / finite))


def quantile_edges(sample: np.ndarray, bins: int) -> np.ndarray:
    """Cut points of ``bins`` equal-mass bins, with point masses isolated (see module doc).

    The cut points are order statistics, ``sorted[k * n // bins]``: exactly ``k * n // bins``
    sample values fall below the k-th one when there are no ties, matching ``[low, high)`` bins.
    """
    if sample.size == 0:
        return np.empty(0)
    ordered = np.sort(sample.astype(np.float64))
    distinct = ordered[np.r_[True, ordered[1:] != ordered[:-1]]]
    if distinct.size <= bins:
        cuts, points = distinct, distinct[-1:]
    else:
        cuts = ordered[np.arange(1, bins) * ordered.size // bins]
        repeated = cuts[1:][cuts[1:] == cuts[:-1]]
        extremes = cuts[(cuts == ordered[0]) | (cuts == ordered[-1])]
        points = np.concatenate([repeated, extremes])
    return np.unique(np.concatenate([cuts, np.nextafter(points, np.inf)]))


def comparable_edges(edges: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cut points in the column's own dtype, rounded up so ``x >= edge`` keeps its answer.

    For float32 or integer ``x`` and a float64 edge ``e``, ``x >= e`` holds exactly when ``x`` is
    at least the smallest float32 (or integer) that is ``>= e``; comparing in the column's dtype
    saves NumPy casting every row.
    """
    if dtype.kind == "f" and dtype.itemsize < 8:
        with np.errstate(over="ignore"):
            rounded = edges.astype(dtype)
        low = rounded.astype(np.float64) < edges
        rounded[low] = np.nextafter(rounded[low], dtype.type(np.inf))
        return rounded
    if dtype.kind in "iu" and edges.size:
        info = np.iinfo(dtype)
        ceiled = np.ceil(edges)
        if info.min <= ceiled.min() and ceiled.max() <= info.max:
            return ceiled.astype(dtype)
    return edges


def numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows per bin ``[e_i-1, e_i)`` and then nulls: one comparison pass per cut point.

    Counting ``x >= e`` per cut point and differencing gives the counts of
    ``np.bincount(np.searchsorted(edges, x, side="right"))`` about 9x faster (``bench/psi.py``,
    10 columns of 10M float32 rows: 0.24 s against 2.1 s): the binary search branches on every
    row, a comparison streams. NaN compares false, so nulls fall out of every ``>=`` count.
    """
    nulls = int(np.count_nonzero(np.isnan(values))) if values.dtype.kind == "f" else 0
    above = [np.count_nonzero(values >= e) for e in comparable_edges(edges, values.dtype)]
    at_or_above = np.array([values.size - nulls, *above, 0], dtype=np.int64)
    return np.append(-np.diff(at_or_above), nulls)


def value_counts(values: pd.Series) -> tuple[pd.Series, int]:
    """Non-null rows per distinct value (index as strings) and the null rows: one hash pass."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    counts = np.bincount(codes + 1, minlength=len(uniques) + 1)
    per_value = pd.Series(counts[1:], index=pd.Index(np.asarray(uniques).astype(str), dtype=object))
    return per_value.groupby(level=0, sort=False).sum(), int(counts[0])
