"""Request-time features, computed: the one implementation that training, serving and Feast call.

A request feature (``features.<view>.request`` in the YAML, parsed by
:mod:`configs.schema.request_expressions`) is a named transform of the event row and of the
features joined to it. It is computed here and nowhere else:

* the training set applies :func:`add_request_features` to its rows after the point-in-time
  join, the event row's own fields (``amount``, ``event_time``) beside the joined features;
* ``/score`` applies :func:`add_to_rows` to the rows it builds from the request and the online
  store, the request's fields in place of the event row's (its time defaulting to the request's);
* the generated Feast repo's on-demand feature view ``<view>_request`` runs
  :func:`compute_request_features` through :func:`feast_udf` (and Feast rebuilds it from
  :func:`feast_udf_source`, which calls the same function), with a ``RequestSource`` for the
  event row's fields.

So a transaction's ``log1p(amount)`` is the same number in its training row, in its served row
and in ``get_online_features``: training/serving skew is zero by construction, and the tests
check it. Every transform works on whole columns (numpy under a pandas frame) and maps a missing
input to a missing output (NaN), never to an error or an infinity: LightGBM routes NaN, and an
infinity is refused by the feature matrix.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from types import FunctionType
from typing import Any, TypeAlias, cast

import numpy as np
import pandas as pd

from configs.schema.request_checks import RequestFeature
from configs.schema.request_expressions import RequestExpression, parse_expression

NIGHT_ENDS = 6  # is_night: from 00:00 up to (not including) this hour
WEEKEND = (5, 6)  # day_of_week of Saturday and Sunday (Monday is 0)


NS_PER_HOUR = 3_600_000_000_000
NS_PER_DAY = 24 * NS_PER_HOUR
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday is 0)
_NAT = np.iinfo(np.int64).min

# A column as the transforms take it: a Series, a numpy array or a list, one value per row.
ColumnValues: TypeAlias = pd.Series | np.ndarray | Sequence[Any]


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or value != value


class _Inputs:
    """The input columns as the transforms read them, each converted once per call.

    Built on numpy rather than pandas accessors: ``/score`` computes a batch of a few rows per
    request, where pandas' per-call overhead would cost more than the store read.
    """

    def __init__(self, columns: Mapping[str, ColumnValues]) -> None:
        self.columns = columns
        self._arrays: dict[str, np.ndarray] = {}
        self._numbers: dict[str, np.ndarray] = {}
        self._times: dict[tuple[str, str | None], np.ndarray] = {}
        self._derived: dict[tuple[str, str | None, Callable], np.ndarray] = {}

    def array(self, column: str) -> np.ndarray:
        if column not in self._arrays:
            if column not in self.columns:
                raise KeyError(
                    f"request features need column {column!r}, which the rows do not have"
                    f" (they have: {', '.join(map(str, self.columns))})"
                )
            values = self.columns[column]
            if isinstance(values, pd.Series):
                values = values.array  # extension arrays (Int64, tz-aware times) kept as such
            elif not isinstance(values, np.ndarray):
                values = np.asarray(list(values), dtype=object)  # a list: serving's rows
            self._arrays[column] = values
        return self._arrays[column]

    def numbers(self, column: str) -> np.ndarray:
        """Float64 values, NaN where missing; a column that is not numbers is an error."""
        if column not in self._numbers:
            self._numbers[column] = _as_numbers(column, self.array(column))
        return self._numbers[column]

    def times(self, column: str, zone: str | None) -> np.ndarray:
        """Nanoseconds since the epoch of the wall clock in ``zone`` (UTC when None), NaT as
        int64's minimum; a time without a zone is taken as UTC."""
        key = (column, zone)
        if key not in self._times:
            utc = self._times.get((column, None))
            if utc is None:
                utc = self._times[(column, None)] = _as_utc_ns(column, self.array(column))
            if zone is not None:
                moments = pd.DatetimeIndex(utc.view("datetime64[ns]"), tz="UTC")
                local = moments.tz_convert(zone).tz_localize(None).asi8
                self._times[key] = np.where(utc == _NAT, _NAT, local)
        return self._times[key]

    def derived(
        self, column: str, zone: str | None, part: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """``part`` (the hour, the weekday) of :meth:`times`, computed once per call: the hour
        serves ``hour_of_day`` and ``is_night``, the weekday ``day_of_week`` and
        ``is_weekend``; ``/score`` computes them for a few rows, where each numpy call's own
        cost is most of the work."""
        key = (column, zone, part)
        if key not in self._derived:
            self._derived[key] = part(self.times(column, zone))
        return self._derived[key]


def _as_numbers(column: str, values: Any) -> np.ndarray:
    dtype = getattr(values, "dtype", None)
    if dtype is not None and pd.api.types.is_datetime64_any_dtype(dtype):
        raise ValueError(f"column {column!r} is times, not numbers")
    try:
        if dtype is not None and not pd.api.types.is_object_dtype(dtype):
            return np.asarray(pd.array(values).to_numpy(dtype=np.float64, na_value=np.nan))
        out = np.array([np.nan if _missing(v) else v for v in values], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {column!r} is not numbers: {error}") from None
    if any(isinstance(v, str) for v in values):  # numpy would have parsed "12" as 12.0
        raise ValueError(f"column {column!r} is not numbers: it holds text")
    return out


def _as_utc_ns(column: str, values: Any) -> np.ndarray:
    dtype = getattr(values, "dtype", None)
    try:
        if dtype is not None and pd.api.types.is_datetime64_any_dtype(dtype):
            index = pd.DatetimeIndex(values)
            index = index.tz_convert("UTC") if index.tz is not None else index
            return index.tz_localize(None).as_unit("ns").asi8
        stamps = [None if _missing(v) else pd.Timestamp(v) for v in values]
        return np.array(
            [
                _NAT
                if t is None
                else (t.tz_convert("UTC") if t.tzinfo is not None else t).as_unit("ns").value
                for t in stamps
            ],
            dtype=np.int64,
        )
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"column {column!r} is not times: {error}") from None


def _is_numbers(values: Any) -> bool:
    """Numbers (or booleans), or an object column whose values all are (serving's rows)."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None and not pd.api.types.is_object_dtype(dtype):
        return pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)
    present = [v for v in values if not _missing(v)]
    return bool(present) and all(isinstance(v, int | float | np.number | np.bool_) for v in present)


def _hour(ns: np.ndarray) -> np.ndarray:
    return np.where(ns == _NAT, np.nan, (ns // NS_PER_HOUR) % 24)


def _weekday(ns: np.ndarray) -> np.ndarray:
    return np.where(ns == _NAT, np.nan, (ns // NS_PER_DAY + EPOCH_WEEKDAY) % 7)


def _flag(values: np.ndarray, condition: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), np.nan, condition.astype(np.float64))


def _log1p(x: np.ndarray) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    defined = x > -1  # False for NaN too
    out[defined] = np.log1p(x[defined])
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = a / b
    out[~np.isfinite(out)] = np.nan  # b == 0, a null, or an overflow
    return out


def _nulls(values: Any) -> np.ndarray:
    return np.fromiter((_missing(v) for v in values), dtype=bool, count=len(values))


def _differs(inputs: _Inputs, a: str, b: str) -> np.ndarray:
    left, right = inputs.array(a), inputs.array(b)
    if _is_numbers(left) and _is_numbers(right):
        x, y = inputs.numbers(a), inputs.numbers(b)
        return np.where(np.isnan(x) | np.isnan(y), np.nan, (x != y).astype(np.float64))
    missing = _nulls(left) | _nulls(right)
    unequal = np.fromiter(
        (str(x) != str(y) for x, y in zip(left, right, strict=True)), dtype=bool, count=len(left)
    )
    return np.where(missing, np.nan, unequal.astype(np.float64))


def _passthrough(inputs: _Inputs, column: str) -> np.ndarray:
    values = inputs.array(column)
    dtype = getattr(values, "dtype", None)
    if dtype is not None and pd.api.types.is_datetime64_any_dtype(dtype):
        raise ValueError(f"column {column!r} is times: use hour_of_day, day_of_week, ...")
    if _is_numbers(values):
        return inputs.numbers(column)
    missing = _nulls(values)
    if missing.all():
        return np.full(len(values), np.nan)  # no value at all: missing, whatever its kind
    return np.array([None if m else v for v, m in zip(values, missing, strict=True)], object)


def _evaluate(expression: RequestExpression, inputs: _Inputs) -> np.ndarray:
    name, columns, zone = expression.transform, expression.columns, expression.zone
    if name is None:
        return _passthrough(inputs, columns[0])
    if name == "log1p":
        return _log1p(inputs.numbers(columns[0]))
    if name == "ratio":
        return _ratio(inputs.numbers(columns[0]), inputs.numbers(columns[1]))
    if name == "differs":
        return _differs(inputs, columns[0], columns[1])
    if name == "hour_of_day":
        return inputs.derived(columns[0], zone, _hour)
    if name == "day_of_week":
        return inputs.derived(columns[0], zone, _weekday)
    if name == "is_weekend":
        day = inputs.derived(columns[0], zone, _weekday)
        return _flag(day, np.logical_or.reduce([day == d for d in WEEKEND]))
    if name == "is_night":
        hour = inputs.derived(columns[0], zone, _hour)
        return _flag(hour, hour < NIGHT_ENDS)
    raise ValueError(f"unknown transform {name!r}")  # parse_expression allows no other


def compute_request_columns(
    columns: Mapping[str, ColumnValues], expressions: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Each ``name: expression`` over ``columns`` (name -> one value per row): one array per
    name, float64 with NaN where an input is missing, objects with None for a passthrough of a
    string column. The transforms' one implementation; the frame API below wraps it."""
    reader = _Inputs(columns)
    out: dict[str, np.ndarray] = {}
    for name, text in expressions.items():
        try:
            out[name] = _evaluate(parse_expression(text), reader)
        except (KeyError, ValueError) as error:
            message = error.args[0] if error.args else str(error)
            raise ValueError(f"request feature {name!r} ({text}): {message}") from None
    return out


def compute_request_features(inputs: pd.DataFrame, expressions: Mapping[str, str]) -> pd.DataFrame:
    """Each ``name: expression`` over the rows of ``inputs``: a frame with one column per name,
    in order, on ``inputs``' index.

    ``inputs`` holds the columns the expressions name (events columns and joined features);
    other columns are ignored. Numbers come back as float64 with NaN where an input is missing;
    a passthrough of a string column as objects with None.
    """
    names = {c for text in expressions.values() for c in parse_expression(text).columns}
    columns = {c: inputs[c] for c in inputs.columns if c in names}
    computed = compute_request_columns(columns, expressions) if len(inputs) else {}
    if not len(inputs):
        computed = {name: np.empty(0, dtype=np.float64) for name in expressions}
    return pd.DataFrame(computed, index=inputs.index)


def _by_table(features: Sequence[RequestFeature]) -> dict[str, list[RequestFeature]]:
    tables: dict[str, list[RequestFeature]] = {}
    for feature in features:
        tables.setdefault(feature.table, []).append(feature)
    return tables


def add_request_features(frame: pd.DataFrame, features: Sequence[RequestFeature]) -> pd.DataFrame:
    """``frame`` with a ``<view>_request__<name>`` column per feature, computed from its columns:
    what the training set does after the point-in-time join."""
    if not features:
        return frame
    columns: dict[str, pd.Series] = {}
    for group in _by_table(features).values():
        computed = compute_request_features(frame, {f.name: f.expression.text for f in group})
        columns.update({f.column: computed[f.name] for f in group})
    return frame.assign(**columns)


def add_to_rows(rows: list[dict[str, Any]], features: Sequence[RequestFeature]) -> None:
    """Set each feature's column in each of ``rows`` (dicts holding the inputs): what ``/score``
    does with the rows it builds from requests and the online store, one frame for the batch."""
    if not features or not rows:
        return
    inputs = list(dict.fromkeys(c for f in features for c in f.expression.columns))
    columns = {c: [row.get(c) for row in rows] for c in inputs}
    for group in _by_table(features).values():
        computed = compute_request_columns(columns, {f.name: f.expression.text for f in group})
        for feature in group:
            for row, value in zip(rows, computed[feature.name].tolist(), strict=True):
                row[feature.column] = value


def _identifier(name: str) -> str:
    text = re.sub(r"\W", "_", name)
    return f"_{text}" if not text or text[0].isdigit() or keyword.iskeyword(text) else text


def feast_udf_source(name: str, expressions: Mapping[str, str]) -> str:
    """The Python source of the on-demand view ``name``'s function: self-contained (Feast 0.67
    rebuilds a view's function from this text before its pickled body, in a namespace holding
    only pandas and numpy), calling :func:`compute_request_features` with the expressions."""
    listed = "".join(
        f"            {json.dumps(key)}: {json.dumps(value)},\n"
        for key, value in expressions.items()
    )
    return (
        f"def {_identifier(name)}(inputs):\n"
        f'    """Request-time features of the on-demand view {name!r}: Playbook\'s\n'
        "    runtime.request_features, the function its training sets and /score compute them\n"
        '    with."""\n'
        "    from runtime.request_features import compute_request_features\n"
        "\n"
        "    return compute_request_features(\n"
        "        inputs,\n"
        "        {\n"
        f"{listed}"
        "        },\n"
        "    )\n"
    )


def feast_udf(name: str, expressions: Mapping[str, str]) -> FunctionType:
    """The function of the on-demand view ``name``: its ``expressions`` over Feast's input frame
    (the request's fields and the source views' features). It carries ``expressions`` and its
    ``source`` (:func:`feast_udf_source`), which the repo's definitions file is written from."""
    fixed = dict(expressions)
    for text in fixed.values():
        parse_expression(text)  # a bad expression fails here, not at the first request

    def udf(inputs: pd.DataFrame) -> pd.DataFrame:
        return compute_request_features(inputs, fixed)

    function = cast(FunctionType, udf)  # Feast's OnDemandFeatureView takes a FunctionType
    function.__name__ = function.__qualname__ = _identifier(name)
    function.expressions = fixed  # type: ignore[attr-defined]
    function.source = feast_udf_source(name, fixed)  # type: ignore[attr-defined]
    return function
