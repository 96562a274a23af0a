"""PSI bins fitted on a reference that passes by in chunks: exactly the whole frame's bins.

A drift reference is a training period: at tens of millions of events its watched columns do not
belong in memory at once. :func:`fit_features` reads the reference as chunks (a frame, or one
event file at a time; :class:`runtime.table_chunks.Chunks`) and gives the bins and counts that fitting the chunks
concatenated would give, in at most three passes with one chunk in memory:

1. **Tally.** Rows; per categorical column the rows per value and the nulls (exact, summed);
   per numeric column its finite values counted, and kept while they number at most
   ``quantile_sample`` (then the sample is every finite value and pass 2 is skipped).
2. **Sample** (numeric columns with more finite values than that). The positions are drawn
   over the whole column (:func:`assets.monitoring.binning.sample_positions`: the seed and the
   row count fix them), then each chunk gives the values at the positions that fall in it.
3. **Count.** Rows per bin of each numeric column, summed over the chunks (the counts compare
   values with cut points, so they add up exactly).

A column is typed as ``pandas.concat`` would type the chunks (an int64 chunk beside a float64
one is float64): a chunk of another dtype is cast to it and, if it was tallied in its own dtype,
tallied again, so a forced-categorical number reads "1.0" in every chunk as in the whole frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from assets.monitoring.binning import (
    numeric_array,
    numeric_counts,
    quantile_edges,
    sample_positions,
    value_counts,
)
from assets.monitoring.feature_bins import (
    DEFAULT_BINS,
    DEFAULT_MAX_CATEGORIES,
    QUANTILE_SAMPLE,
    FeatureReference,
)
from runtime.table_chunks import Chunks


@dataclass(frozen=True)
class BinSettings:
    """How bins are fitted (see :mod:`assets.monitoring.feature_bins`)."""

    bins: int = DEFAULT_BINS
    max_categories: int = DEFAULT_MAX_CATEGORIES
    quantile_sample: int = QUANTILE_SAMPLE
    seed: int = 0


@dataclass
class _Tally:
    """Pass 1 for one column: what its chunks hold, in the kind its dtype gives."""

    name: str
    forced: bool
    dtypes: list[pd.Series] = field(default_factory=list)  # each chunk's column, no rows
    per_value: pd.Series | None = None
    nulls: int = 0
    finite: int = 0
    kept: list[np.ndarray] | None = field(default_factory=list)  # None once past the sample

    def dtype(self) -> object:
        # as frames: a frame's concat types int64 beside bool int64, a series' concat object
        frames = [head.to_frame() for head in self.dtypes]
        return pd.concat(frames, ignore_index=True).dtypes.iloc[0]

    def categorical(self, dtype: object) -> bool:
        _check_dtype(self.name, dtype)
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        return self.forced or not numeric

    def add(self, values: pd.Series, dtype: object, sample: int) -> None:
        if self.categorical(dtype):
            counts, nulls = value_counts(values)
            merged = counts if self.per_value is None else self.per_value.add(counts, fill_value=0)
            self.per_value, self.nulls = merged, self.nulls + nulls
            return
        array = numeric_array(values)
        finite = array if array.dtype.kind != "f" else array[np.isfinite(array)]
        self.finite += finite.size
        if self.kept is not None and self.finite <= sample:
            self.kept.append(finite)
        else:
            self.kept = None


def fit_features(
    chunks: Chunks,
    names: Sequence[str],
    categorical: Iterable[str] = (),
    settings: BinSettings = BinSettings(),
) -> tuple[dict[str, FeatureReference], int]:
    """Bins and reference counts of ``names`` over every chunk, and the reference's rows.

    ``categorical`` forces columns to categorical bins (integer-coded categories); a datetime
    or timedelta column raises ``TypeError``, as it would whole.
    """
    forced = set(categorical)
    tallies = {name: _Tally(name, name in forced) for name in names}
    rows = _tally(chunks, tallies, settings.quantile_sample)
    dtypes = {name: tally.dtype() for name, tally in tallies.items() if tally.dtypes}
    mixed = {
        name: tally
        for name, tally in tallies.items()
        if any(head.dtype != dtypes.get(name) for head in tally.dtypes)
    }
    if mixed:  # tallied again, each chunk cast to the whole reference's dtype
        fresh = {name: _Tally(name, name in forced) for name in mixed}
        _tally(chunks, fresh, settings.quantile_sample, dtypes)
        tallies.update(fresh)
    features: dict[str, FeatureReference] = {}
    numeric: dict[str, np.ndarray] = {}
    for name, tally in tallies.items():
        if name not in dtypes:  # no chunk at all: nothing to fit
            continue
        if tally.categorical(dtypes[name]):
            features[name] = _categorical(tally, settings.max_categories)
        else:
            numeric[name] = _edges(chunks, tally, rows, dtypes[name], settings)
    features.update(_numeric(chunks, numeric, dtypes))
    return {name: features[name] for name in names if name in features}, rows


def _tally(
    chunks: Chunks,
    tallies: dict[str, _Tally],
    sample: int,
    dtypes: dict[str, object] | None = None,
) -> int:
    rows = 0
    for chunk in chunks(list(tallies)):
        rows += len(chunk)
        for name, tally in tallies.items():
            values = _cast(chunk[name], dtypes)
            tally.dtypes.append(values.iloc[:0])
            tally.add(values, values.dtype, sample)
    return rows


def _cast(values: pd.Series, dtypes: dict[str, object] | None) -> pd.Series:
    if dtypes is None or values.dtype == dtypes[str(values.name)]:
        return values
    return values.astype(dtypes[str(values.name)])


def _check_dtype(name: str, dtype: object) -> None:
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise TypeError(
            f"column {name!r} is {dtype}: PSI needs numeric or categorical features"
            " (timestamps drift by construction); leave it out of the columns"
        )


def _categorical(tally: _Tally, max_categories: int) -> FeatureReference:
    """The most frequent values a bin each (ties by value), the rest ``(other)``, then nulls."""
    empty = pd.Series(dtype="int64", index=pd.Index([], dtype=object))
    per_value = (tally.per_value if tally.per_value is not None else empty).astype("int64")
    ranked = per_value.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    kept = ranked.iloc[:max_categories]
    counts = np.array([*kept.to_numpy(), ranked.iloc[max_categories:].sum(), tally.nulls])
    categories = tuple(str(c) for c in kept.index)
    return FeatureReference(
        tally.name, "categorical", np.empty(0), categories, counts.astype(np.int64)
    )


def _edges(
    chunks: Chunks, tally: _Tally, rows: int, dtype: object, settings: BinSettings
) -> np.ndarray:
    """The cut points from the sample of the whole column (pass 2 when it is not every finite
    value, which pass 1 kept)."""
    draws = sample_positions(rows, tally.finite, settings.quantile_sample, settings.seed)
    if draws is None:  # no more finite values than the sample: pass 1 kept them all
        sample = np.concatenate(tally.kept) if tally.kept else np.empty(0)
        return quantile_edges(sample, settings.bins)
    positions, inverse = np.unique(draws, return_inverse=True)
    picked: np.ndarray | None = None
    offset = 0
    for chunk in chunks([tally.name]):
        array = numeric_array(_cast(chunk[tally.name], {tally.name: dtype}))
        if picked is None:
            picked = np.empty(positions.size, dtype=array.dtype)
        low, high = np.searchsorted(positions, [offset, offset + array.size])
        picked[low:high] = array[positions[low:high] - offset]
        offset += array.size
    if offset != rows or picked is None:
        raise RuntimeError(
            f"column {tally.name!r}: the reference gave {offset} rows, {rows} before:"
            " it changed while the bins were fitted"
        )
    values = picked[inverse]
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    return quantile_edges(values, settings.bins)


def _numeric(
    chunks: Chunks, edges: dict[str, np.ndarray], dtypes: dict[str, object]
) -> dict[str, FeatureReference]:
    """Pass 3: rows per bin of every numeric column, summed over the chunks."""
    if not edges:
        return {}
    counts = {name: np.zeros(cuts.size + 2, dtype=np.int64) for name, cuts in edges.items()}
    for chunk in chunks(list(edges)):
        for name, cuts in edges.items():
            counts[name] += numeric_counts(numeric_array(_cast(chunk[name], dtypes)), cuts)
    return {
        name: FeatureReference(name, "numeric", edges[name], (), counts[name]) for name in edges
    }


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
    features, _ = fit_features(
        Chunks.of(values.to_frame(name)),
        [name],
        [name] if categorical else [],
        BinSettings(bins, max_categories, quantile_sample, seed),
    )
    return features[name]
