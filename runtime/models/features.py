"""The LightGBM feature matrix, shared by training and serving.

Features reach LightGBM through ``prepare_features`` only, so training and serving see exactly
the same matrix: numbers as float, strings as a ``category`` whose levels are fixed from the
training split (a level first seen later is missing, never a new code that would collide with
a trained one), and last-N id lists dropped (LightGBM cannot split on a list).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from runtime import layout
from runtime.layout import FEATURE_SEPARATOR

SPLIT = "split"
TRAIN = "train"
Categories = dict[str, list[str]]

# ``AggregateSpec.feature_names`` names last-N id lists ``<column>_last<n>_<window>``: recognised
# by name too, so a list column that happens to be all-null is still dropped, not made a category.
_LIST_NAME = re.compile(r"_last\d+_[^_]+$")


def _is_list_column(name: str, series: pd.Series) -> bool:
    """Last-N id lists (arrays in the parquet): recognised by their values or their name."""
    if _LIST_NAME.search(name) and series.dtype == object:
        return True
    if series.dtype != object:
        return False
    values = series.dropna()
    return len(values) > 0 and isinstance(values.iloc[0], list | tuple | np.ndarray)


def _is_string_column(series: pd.Series) -> bool:
    return (
        series.dtype == object
        or isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(series.dtype)
    )


def _training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows category levels are learned from: the train split when the frame carries one."""
    if SPLIT in frame.columns:
        return frame[frame[SPLIT].astype(str) == TRAIN]
    return frame


def fit_levels(frames: Iterable[pd.DataFrame], columns: list[str]) -> Categories:
    """The sorted text levels of each of ``columns`` over the rows of ``frames``: a frame's,
    or a split's read a chunk at a time (the levels of the whole are the union of the chunks')."""
    seen: dict[str, set[str]] = {col: set() for col in columns}
    for frame in frames:
        for col in columns:
            seen[col].update(frame[col].dropna().astype(str).unique().tolist())
    return {col: sorted(seen[col]) for col in columns}


def matrix_columns(frame: pd.DataFrame, feature_columns: list[str]) -> tuple[list[str], list[str]]:
    """The features the matrix keeps (list columns dropped) and which of them are text, as
    ``frame``'s dtypes and values say."""
    used = [col for col in feature_columns if not _is_list_column(col, frame[col])]
    return used, [col for col in used if _is_string_column(frame[col])]


def _as_category(series: pd.Series, levels: list[str]) -> pd.Series:
    text = series.astype(object).where(series.notna(), None)
    text = text.map(lambda value: None if value is None else str(value))
    return pd.Series(pd.Categorical(text, categories=levels), index=series.index, name=series.name)


def _as_float(name: str, series: pd.Series) -> pd.Series:
    return pd.Series(_float_values(name, series), index=series.index, name=name)


def _float_values(name: str, series: pd.Series) -> np.ndarray:
    """A numeric feature as float64 (missing as NaN); a timestamp, text or infinity is refused."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise ValueError(f"feature {name!r} is a timestamp; convert it to seconds first")
    try:
        values = series.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise ValueError(f"feature {name!r} is not numeric ({series.dtype}): {err}") from err
    infinite = int(np.isinf(values).sum())
    if infinite:
        raise ValueError(f"feature {name!r} has {infinite} infinite values")
    return values


def prepare_features(
    frame: pd.DataFrame, feature_columns: list[str], categories: Categories | None = None
) -> tuple[pd.DataFrame, Categories]:
    """The model matrix of ``frame``: floats and fixed-level categories, list columns dropped.

    With ``categories=None`` the string columns' levels are learned from the train split (all rows
    when there is no ``split`` column) and returned; pass them back for every later frame so codes
    never shift between training and serving. Missing values stay NaN, which LightGBM routes
    natively; an infinite value is an error because it is almost always a division bug upstream.
    """
    missing = [col for col in feature_columns if col not in frame.columns]
    if missing:
        raise ValueError(f"features missing from the frame: {', '.join(missing)}")
    if categories is None:
        used, text = matrix_columns(frame, feature_columns)
        categories = fit_levels([_training_rows(frame)], text)
    else:
        used = [c for c in feature_columns if c in categories or not _is_list_column(c, frame[c])]
    columns = {
        col: _as_category(frame[col], categories[col])
        if col in categories
        else _as_float(col, frame[col])
        for col in used
    }
    return pd.DataFrame(columns, index=frame.index), categories


LAST_EVENT_AT = FEATURE_SEPARATOR + layout.LAST_EVENT_AT  # <view>__last_event_at_<w>
SECONDS_SINCE = FEATURE_SEPARATOR + layout.SECONDS_SINCE_LAST  # <view>__seconds_since_last_<w>


def seconds_since_last(frame: pd.DataFrame, as_of: pd.Series | pd.Timestamp) -> pd.DataFrame:
    """Replace every ``<table>__last_event_at_<w>`` timestamp with seconds before ``as_of``.

    A ``time_since_last`` aggregate is stored as the moment of the last event, since only the
    reader knows "now": the training set's row time, or the request's time when serving. Both
    go through here, so the model sees the same quantity in both places.
    """
    stamps = [c for c in frame.columns if LAST_EVENT_AT in c]
    if not stamps:
        return frame
    renamed = {}
    for column in stamps:
        name = column.replace(LAST_EVENT_AT, SECONDS_SINCE, 1)
        moments = pd.to_datetime(frame[column], utc=True).dt.tz_localize(None)
        reference = pd.to_datetime(as_of, utc=True)
        reference = (
            reference.dt.tz_localize(None)
            if isinstance(reference, pd.Series)
            else reference.tz_localize(None)
        )
        renamed[name] = (reference - moments.astype("datetime64[us]")).dt.total_seconds()
    return frame.drop(columns=stamps).assign(**renamed)


def seconds_since_last_row(row: dict[str, Any], as_of: pd.Timestamp) -> dict[str, Any]:
    """:func:`seconds_since_last` for one row held as a dict (a single-row request)."""
    out = {}
    reference = pd.Timestamp(as_of)
    reference = reference.tz_convert(None) if reference.tzinfo else reference
    for column, value in row.items():
        if LAST_EVENT_AT not in column:
            out[column] = value
            continue
        name = column.replace(LAST_EVENT_AT, SECONDS_SINCE, 1)
        if value is None or value != value:
            out[name] = np.nan
        else:
            moment = pd.Timestamp(value)
            moment = moment.tz_convert(None) if moment.tzinfo else moment
            out[name] = (reference - moment).total_seconds()
    return out


def feature_array(
    frame: pd.DataFrame | Mapping[str, Any], feature_columns: list[str], categories: Categories
) -> np.ndarray:
    """The model matrix as one float64 array: what LightGBM (and Triton's FIL) reads natively.

    Equal to ``prepare_features`` as LightGBM sees it -- a category is its code in the fixed
    training levels (the code ``pandas`` gives it), missing or unseen is NaN -- but built column
    by column without an intermediate frame, which is most of the cost of scoring one row.
    """
    columns = [frame[column] for column in feature_columns]
    first = columns[0] if columns else []
    rows = len(first) if isinstance(first, pd.Series) else len(_listed(first))
    out = np.empty((rows, len(feature_columns)), dtype=np.float64)
    nan, na = np.nan, pd.NA
    numeric: list[int] = []  # the columns of plain values, converted together below
    for j, (column, values) in enumerate(zip(feature_columns, columns, strict=True)):
        if column in categories:
            codes = {level: float(i) for i, level in enumerate(categories[column])}
            # _missing and str() inlined: this runs once per candidate and categorical feature
            out[:, j] = [
                nan
                if v is None or v is na or v != v
                else codes.get(v if type(v) is str else str(v), nan)
                for v in _listed(values)
            ]
        elif isinstance(values, pd.Series):
            out[:, j] = _float_values(column, values)
        else:
            numeric.append(j)
    if numeric:
        names = [feature_columns[j] for j in numeric]
        out[:, numeric] = _number_block(names, [_listed(columns[j]) for j in numeric]).T
    return out


def _number_block(names: list[str], columns: list[list[Any]]) -> np.ndarray:
    """:func:`_numbers` of every column at once, one row per column: a request scores one row,
    and a numpy conversion and check per feature cost more than the row's values.

    Anything the one conversion refuses is converted column by column again, so the error names
    the column, as :func:`_numbers` does.
    """
    try:
        block = np.array(
            [[np.nan if _missing(v) else v for v in values] for values in columns],
            dtype=np.float64,
        )
    except (TypeError, ValueError):
        block = None
    if block is None or block.shape != (len(columns), len(columns[0])) or np.isinf(block).any():
        return np.array([_numbers(n, v) for n, v in zip(names, columns, strict=True)])
    return block


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value != value


def _listed(values: Any) -> list[Any]:
    """A column as a list: a Series, an array, a list, or one scalar (a one-row mapping)."""
    if hasattr(values, "tolist"):
        listed = values.tolist()
        return listed if isinstance(listed, list) else [listed]
    return list(values) if isinstance(values, list | tuple) else [values]


def _numbers(name: str, values: list[Any]) -> np.ndarray:
    """Floats with None as NaN; the same errors as ``_as_float`` for text and infinities."""
    try:
        array = np.array([np.nan if _missing(v) else v for v in values], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"feature {name!r} is not numeric: {err}") from err
    if np.isinf(array).any():
        raise ValueError(f"feature {name!r} has {int(np.isinf(array).sum())} infinite values")
    return array
