"""Population stability index (PSI) of features between a reference sample and recent windows.

Plain functions, no Dagster: the monitoring assets wire them to storage and metadata.

PSI over bins with reference proportions ``p`` and window proportions ``q`` is
``sum((q - p) * ln(q / p))``, the symmetrised Kullback-Leibler divergence. The usual reading:
below 0.1 stable, 0.1 to 0.25 worth a look, above 0.25 shifted (``monitoring.psi_warn`` and
``psi_alert``). Bins are fitted once on the reference (:meth:`DriftReference.fit`) and reused for
every window (:meth:`DriftReference.psi_table`), so windows are comparable with each other.

Binning, and why:

* Numeric: cut points at the reference's quantiles (``bins`` equal-mass bins), taken from a
  seeded random sample of ``quantile_sample`` values: the cut points only need to be roughly
  equal-mass, the reference proportions are then counted exactly on every row. Bins are
  ``[e_i, e_i+1)``, the outer ones open (``< e_0``, ``>= e_last``), so values outside the
  reference's range land in the end bins. Tied data (40% zeros, a discrete feature) repeats cut
  points: they are deduplicated and the tied value gets a bin of its own (``== v``), as do the
  sample's minimum and maximum when they are cut points, so a point mass never shares a bin with
  its neighbours and values beyond it stay apart. A feature with at most ``bins`` distinct
  values gets one bin per value.
* Categorical (strings, categories, booleans, or columns named in ``categorical``): the
  ``max_categories`` most frequent reference values get a bin each; the rest of the reference
  and every value it never saw share one ``(other)`` bin. Values are compared as strings. The
  cap keeps the small-sample bias below in check.
* Nulls (NaN, None, NA) are a bin of their own in both kinds: a feature going null is drift.
* Empty bins: proportions are floored at ``epsilon`` (1e-4) before the log, not renormalised. A
  bin empty on both sides then adds exactly 0, one empty on one side adds at most
  ``q * ln(q / epsilon)``: finite, and large, as it should be when mass appears where the
  reference had none.

Small windows: with no drift, ``n * PSI`` is roughly chi-squared with (occupied bins - 1) degrees
of freedom, so PSI averages about ``9 / n`` with 10 bins: 0.09 at n = 100, the warn level on noise
alone (39% of undrifted 100-row windows reach 0.1 in the tests), and 0.009 at n = 1000, where none
of 200 did. Windows with fewer than ``min_window_rows`` rows get status ``insufficient``: their
PSI is reported for information, never judged.

Speed: cut points come from a sample and bins are counted by one comparison pass per cut point,
so 10M rows x 50 float32 features fit in about 2.5 s and a window of that size takes 1.7 s on two
shared cores (``bench/psi.py``).

Bad input:

* a reference without rows, a requested column it lacks, or a datetime/timedelta column (they
  drift by construction): :meth:`DriftReference.fit` raises ``ValueError``/``TypeError``;
* a reference column that is all null: ``empty_reference``; with one distinct value:
  ``constant_reference``. PSI is reported, not judged: a model cannot have learned from it;
* a window without rows: ``insufficient``; a window lacking the column: ``missing_column``; a
  numeric feature arriving as something that is not numbers: ``type_mismatch``.

``psi`` is NaN in exactly those last three cases; ``status`` is always a :class:`DriftStatus`.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

EPSILON = 1e-4
DEFAULT_BINS = 10
DEFAULT_MAX_CATEGORIES = 20
QUANTILE_SAMPLE = 200_000
OTHER = "(other)"
NULL = "(null)"
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

Kind = Literal["numeric", "categorical"]


class DriftStatus(StrEnum):
    """Verdict on one feature in one window."""

    OK = "ok"
    WARN = "warn"
    ALERT = "alert"
    INSUFFICIENT = "insufficient"
    CONSTANT_REFERENCE = "constant_reference"
    EMPTY_REFERENCE = "empty_reference"
    MISSING_COLUMN = "missing_column"
    TYPE_MISMATCH = "type_mismatch"


def psi_terms(reference: ArrayLike, window: ArrayLike, epsilon: float = EPSILON) -> np.ndarray:
    """Each bin's share of the PSI, from counts or proportions over the same bins.

    Both sides are normalised to sum 1, then floored at ``epsilon`` so an empty bin stays finite.
    """
    p = np.maximum(_proportions(reference, "reference"), epsilon)
    q = np.maximum(_proportions(window, "window"), epsilon)
    if p.shape != q.shape:
        raise ValueError(f"reference has {p.size} bins but window has {q.size}")
    return (q - p) * np.log(q / p)


def psi(reference: ArrayLike, window: ArrayLike, epsilon: float = EPSILON) -> float:
    """PSI from counts or proportions over the same bins (see :func:`psi_terms`)."""
    return float(psi_terms(reference, window, epsilon).sum())


def _proportions(counts: ArrayLike, side: str) -> np.ndarray:
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 1 or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{side}: expected a 1-d array of finite non-negative counts")
    total = values.sum()
    if total <= 0:
        raise ValueError(f"{side}: no rows in any bin, PSI is undefined")
    return values / total


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
            per_value, nulls = _value_counts(values)
            bins = pd.Index(self.categories, dtype=object).get_indexer(per_value.index)
            bins[bins < 0] = len(self.categories)
            weights = per_value.to_numpy(dtype=np.float64)
            counts = np.bincount(bins, weights=weights, minlength=len(self.categories) + 1)
            return np.append(counts.astype(np.int64), nulls)
        array = _numeric_array(values)
        return None if array is None else _numeric_counts(array, self.edges)

    def breakdown(self, values: pd.Series, epsilon: float = EPSILON) -> pd.DataFrame:
        """Per bin: reference and window proportions and PSI term, to see where drift sits."""
        counts = self.window_counts(values)
        if counts is None:
            raise TypeError(f"column {self.feature!r}: window values are not numbers")
        return pd.DataFrame(
            {
                "bin": self.labels,
                "reference": _proportions(self.counts, "reference"),
                "window": _proportions(counts, f"window column {self.feature!r}"),
                "psi": psi_terms(self.counts, counts, epsilon),
            }
        )


def fit_feature(
    values: pd.Series,
    *,
    categorical: bool = False,
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    quantile_sample: int = QUANTILE_SAMPLE,
    seed: int = 0,
) -> FeatureReference:
    """Bins and reference counts of one column, named after ``values.name``.

    The kind follows the dtype (numbers are numeric; strings, categories and booleans are
    categorical) unless ``categorical`` forces it, e.g. for integer-coded categories.
    """
    name = str(values.name)
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise TypeError(
            f"column {name!r} is {dtype}: PSI needs numeric or categorical features"
            " (timestamps drift by construction); leave it out of the columns"
        )
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if categorical or not numeric:
        per_value, nulls = _value_counts(values)
        ranked = per_value.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        kept = ranked.iloc[:max_categories]
        counts = np.array([*kept.to_numpy(), ranked.iloc[max_categories:].sum(), nulls])
        categories = tuple(str(c) for c in kept.index)
        return FeatureReference(
            name, "categorical", np.empty(0), categories, counts.astype(np.int64)
        )
    array = _numeric_array(values)
    if array is None:  # unreachable: numeric dtypes always convert
        raise TypeError(f"column {name!r}: {dtype} values could not be read as numbers")
    edges = _quantile_edges(_finite_sample(array, quantile_sample, seed), bins)
    return FeatureReference(name, "numeric", edges, (), _numeric_counts(array, edges))


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
        status = _status(value, rows, ref.status, min_window_rows, psi_warn, psi_alert)
        return row | {
            "psi": value,
            "status": status.value,
            "window_null_fraction": counts[-1] / rows,
            "top_bin": ref.labels[int(np.argmax(terms))] if value > 0 else None,
        }


def _status(
    value: float,
    rows: int,
    reference: DriftStatus,
    min_window_rows: int,
    psi_warn: float,
    psi_alert: float,
) -> DriftStatus:
    if rows < min_window_rows:
        return DriftStatus.INSUFFICIENT
    if reference is not DriftStatus.OK:
        return reference
    if value >= psi_alert:
        return DriftStatus.ALERT
    return DriftStatus.WARN if value >= psi_warn else DriftStatus.OK


def _numeric_array(values: pd.Series) -> np.ndarray | None:
    """The column as a NumPy array with NaN for nulls; None if its values are not numbers.

    float32 and integer columns keep their dtype: casting 10M rows to float64 per column would
    cost as much as binning them (:func:`_comparable_edges` keeps the comparison exact).
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


def _finite_sample(values: np.ndarray, size: int, seed: int) -> np.ndarray:
    """About ``size`` finite values drawn at random with a fixed seed, or all when fewer."""
    finite = np.isfinite(values) if values.dtype.kind == "f" else None
    available = values.size if finite is None else int(np.count_nonzero(finite))
    if available <= size:
        return values if finite is None else values[finite]
    draws = np.random.default_rng(seed).integers(
        0, values.size, math.ceil(size * values.size / available)
    )
    picked = values[draws]
    return picked if finite is None else picked[np.isfinite(picked)]


def _quantile_edges(sample: np.ndarray, bins: int) -> np.ndarray:
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


def _comparable_edges(edges: np.ndarray, dtype: np.dtype) -> np.ndarray:
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


def _numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows per bin ``[e_i-1, e_i)`` and then nulls: one comparison pass per cut point.

    Counting ``x >= e`` per cut point and differencing gives the counts of
    ``np.bincount(np.searchsorted(edges, x, side="right"))`` about 9x faster (``bench/psi.py``,
    10 columns of 10M float32 rows: 0.24 s against 2.1 s): the binary search branches on every
    row, a comparison streams. NaN compares false, so nulls fall out of every ``>=`` count.
    """
    nulls = int(np.count_nonzero(np.isnan(values))) if values.dtype.kind == "f" else 0
    above = [np.count_nonzero(values >= e) for e in _comparable_edges(edges, values.dtype)]
    at_or_above = np.array([values.size - nulls, *above, 0], dtype=np.int64)
    return np.append(-np.diff(at_or_above), nulls)


def _value_counts(values: pd.Series) -> tuple[pd.Series, int]:
    """Non-null rows per distinct value (index as strings) and the null rows: one hash pass."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    counts = np.bincount(codes + 1, minlength=len(uniques) + 1)
    per_value = pd.Series(counts[1:], index=pd.Index(np.asarray(uniques).astype(str), dtype=object))
    return per_value.groupby(level=0, sort=False).sum(), int(counts[0])
