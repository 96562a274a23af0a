"""The data and the oracle the point-in-time join tests share.

The random data hides the cases that break PIT joins in practice, each planted on purpose:
exact ties on event time (the winner first in source order, so source order cannot rescue a
wrong tie-break), rows exactly at the TTL boundary and 1µs past it, rows exactly at the as-of
time and 1µs after it, entities with no history, null keys, duplicate label rows, and a mix of
tz-aware (in a non-UTC zone, too) and tz-naive timestamps.

It is a module of its own because several test files check the join against it (the oracle,
the key encodings, Feast's DuckDB store, the errors): :func:`make_data` builds the data,
:func:`oracle` is the definition row by row, and the small helpers compare answers cell by cell.
"""

from __future__ import annotations

import datetime
import math

import numpy as np
import pandas as pd

from assets.training.pit_join import FeatureTable

START = pd.Timestamp("2024-03-01", tz="UTC")
SPAN_US = 20 * 86_400 * 10**6  # the random history spans 20 days
US = pd.Timedelta(microseconds=1)
TTL_USER = datetime.timedelta(days=2)
TTL_PAIR = datetime.timedelta(days=1)  # Feast (ibis) rejects mixed-unit TTLs like 36h
REGIONS = ("north", "south")
N_LABELS, N_ROWS, N_ENTITIES = 2_000, 5_000, 50


def _stamp(rng: np.random.Generator, n: int, unit: int) -> pd.Series:
    """``n`` random UTC times, whole multiples of ``unit`` microseconds, within the span."""
    return pd.Series(START + pd.to_timedelta(rng.integers(0, SPAN_US // unit, n) * unit, "us"))


def _background(
    rng: np.random.Generator, keys: dict[str, np.ndarray], lag_us: int, unit: int
) -> pd.DataFrame:
    """Random feature rows with one created time each, up to ``lag_us`` after the event."""
    n = len(next(iter(keys.values())))
    event = _stamp(rng, n, unit)
    frame = pd.DataFrame(keys)
    frame["event_timestamp"] = event
    frame["created_timestamp"] = event + pd.to_timedelta(
        rng.integers(0, lag_us // unit, n) * unit, "us"
    )
    return frame


def _planted(
    anchor: pd.Timestamp, ttl: datetime.timedelta, unit: int
) -> list[tuple[pd.Timestamp, int]]:
    """(event time, created offset in units) rows around one label time ``anchor``, winner first.

    Each planted entity gets only these rows, so which one the join picks depends on the edge
    case alone. The list varies with the anchor's microsecond so different planted entities
    exercise different edges: the TTL boundary alone, the boundary and 1µs past it, as-of
    exactly, 1µs after as-of, and a tie on event time whose winner comes first.
    """
    step = unit * US  # one tick of the data: 1µs unless the data is coarser
    variant = (anchor - START) // step % 5
    boundary = anchor - ttl
    if variant == 0:
        return [(boundary, 5)]  # exactly at the TTL boundary: included
    if variant == 1:
        return [(boundary - step, 7)]  # 1µs past it: excluded, nulls
    if variant == 2:
        return [(anchor, 3), (boundary, 9)]  # exactly at as-of: included, wins
    if variant == 3:
        return [(anchor + step, 1), (boundary + step, 2)]  # 1µs after as-of: the older one wins
    return [(anchor - step, 900), (anchor - step, 100), (anchor - 2 * step, 50)]  # tie: created 900


def _features(rng: np.random.Generator, frame: pd.DataFrame, stem: str) -> pd.DataFrame:
    """Attach a float, an int and a string feature, all unique so a wrong row shows."""
    n = len(frame)
    frame = frame.reset_index(drop=True)
    frame[f"{stem}_float"] = rng.normal(size=n).round(6)
    frame[f"{stem}_int"] = np.arange(n, dtype=np.int64) + 1_000
    frame[f"{stem}_str"] = [f"{stem}-{i}" for i in range(n)]
    return frame


def make_data(
    seed: int, lag_us: int = 10**7, unit: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Labels, a user-keyed table and a (user, region)-keyed table, with planted edge cases.

    ``lag_us`` bounds created minus event time: 10 s forces the join's HUGEINT key, 0.1 s lets
    it pack a BIGINT one. With ``unit`` > 1 every feature time is a whole number of ``unit``
    microseconds (label times are not, except planted ones), and planted edges move by ``unit``.

    User ids are nullable Int64 (nulls planted on both sides); ids 0-39 have dense random
    history, 40-49 none at all, 1000+ exactly one planted edge case each.
    """
    rng = np.random.default_rng(seed)
    users = rng.integers(0, N_ENTITIES, N_LABELS)
    labels = pd.DataFrame(
        {
            "user_id": pd.array(users, dtype="Int64"),
            "region": rng.choice(REGIONS, N_LABELS),
            "event_timestamp": _stamp(rng, N_LABELS, unit) + pd.Timedelta(days=3),
        }
    )
    labels.loc[rng.choice(N_LABELS, 20, replace=False), "user_id"] = pd.NA
    planted = labels.sample(200, random_state=seed).index
    labels.loc[planted, "user_id"] = np.arange(1_000, 1_000 + len(planted))
    anchors = labels.loc[planted]  # one per planted entity, before any duplicates
    jitter = pd.to_timedelta(rng.integers(0, unit, N_LABELS), "us")
    labels["event_timestamp"] += jitter.where(~labels.index.isin(planted), pd.Timedelta(0))
    labels = pd.concat([labels, labels.sample(50, random_state=seed + 1)])  # duplicate rows
    labels["row_id"] = np.arange(len(labels), dtype=np.int64)
    labels["label"] = rng.integers(0, 2, len(labels))

    dense = rng.integers(0, 40, N_ROWS)
    user = _background(rng, {"user_id": pd.array(dense, dtype="Int64")}, lag_us, unit)
    pair = _background(
        rng,
        {"user_id": pd.array(dense, dtype="Int64"), "region": rng.choice(REGIONS, N_ROWS)},
        lag_us,
        unit,
    )
    user, pair = _with_ties(rng, user, unit), _with_ties(rng, pair, unit)
    user.loc[rng.choice(len(user), 30, replace=False), "user_id"] = pd.NA
    user = pd.concat([user, _planted_rows(anchors, TTL_USER, ["user_id"], unit)])
    pair = pd.concat([pair, _planted_rows(anchors, TTL_PAIR, ["user_id", "region"], unit)])
    user = _features(rng, user, "u")
    pair = _features(rng, pair, "p")
    # naive UTC on one table, New York time on the other: both must be read as the same instants
    user["event_timestamp"] = user["event_timestamp"].dt.tz_localize(None)
    pair["created_timestamp"] = pair["created_timestamp"].dt.tz_convert("America/New_York")
    return labels.reset_index(drop=True), user, pair


def _with_ties(rng: np.random.Generator, frame: pd.DataFrame, unit: int) -> pd.DataFrame:
    """Copy 10% of rows to the same event time with a later created time, the winner first."""
    picked = frame.sample(frac=0.1, random_state=int(rng.integers(1 << 31)))
    winners = picked.copy()
    winners["created_timestamp"] += pd.to_timedelta(
        rng.integers(1, 10**6 // unit + 2, len(picked)) * unit, "us"
    )
    rest = frame.drop(picked.index)
    # each winner sits directly before the row it beats
    pairs = pd.concat([winners, picked]).sort_index(kind="stable")
    return pd.concat([rest, pairs]).reset_index(drop=True)


def _planted_rows(
    labels: pd.DataFrame, ttl: datetime.timedelta, keys: list[str], unit: int
) -> pd.DataFrame:
    """The rows of ``_planted`` for each planted label, in the listed (winner-first) order."""
    rows = []
    for _, label in labels.iterrows():
        for event, created_us in _planted(label["event_timestamp"], ttl, unit):
            row = {k: label[k] for k in keys}
            rows.append(
                {
                    **row,
                    "event_timestamp": event,
                    "created_timestamp": event + created_us * unit * US,
                }
            )
    frame = pd.DataFrame(rows)
    frame["user_id"] = frame["user_id"].astype("Int64")
    return frame


def _to_us(values: pd.Series) -> list[int | None]:
    """UTC microseconds since the epoch; a tz-naive time is read as UTC."""
    stamps = pd.to_datetime(values, utc=True)
    return [None if pd.isna(t) else (t - pd.Timestamp(0, tz="UTC")) // US for t in stamps]


def oracle(
    labels: pd.DataFrame, table: pd.DataFrame, keys: list[str], ttl: datetime.timedelta
) -> pd.DataFrame:
    """The definition, row by row: the greatest (event, created) among rows with equal non-null
    keys and ``as_of - ttl <= event <= as_of``; nulls when there is none."""
    features = [
        c for c in table.columns if c not in (*keys, "event_timestamp", "created_timestamp")
    ]
    event, created = _to_us(table["event_timestamp"]), _to_us(table["created_timestamp"])
    history: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*(table[k] for k in keys), strict=True)):
        if not any(pd.isna(k) for k in key):
            history.setdefault(key, []).append(i)
    ttl_us = ttl // datetime.timedelta(microseconds=1)
    out = []
    for key, as_of in zip(
        zip(*(labels[k] for k in keys), strict=True), _to_us(labels["event_timestamp"]), strict=True
    ):
        best = None
        if not any(pd.isna(k) for k in key):
            for i in history.get(key, []):
                if as_of - ttl_us <= event[i] <= as_of:
                    if best is None or (event[i], created[i]) > (event[best], created[best]):
                        best = i
        out.append({f: (None if best is None else table[f].iat[best]) for f in features})
    return pd.DataFrame(out, columns=features)


def _cells(series: pd.Series) -> list[object]:
    """Values as plain Python, every kind of null as None, so dtypes cannot hide or fake a diff."""
    return [
        None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v
        for v in series.tolist()
    ]


def _assert_same(actual: pd.DataFrame, expected: pd.DataFrame, columns: list[str]) -> None:
    """Column by column, cell by cell, with the first differing row in the message."""
    for column in columns:
        got, want = _cells(actual[column]), _cells(expected[column])
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        assert not bad, (
            f"{column}: {len(bad)} rows differ, first row {bad[0]}: {got[bad[0]]!r} != {want[bad[0]]!r}"
        )


def _tables(user: pd.DataFrame | str, pair: pd.DataFrame | str) -> list[FeatureTable]:
    return [
        FeatureTable("users", user, ("user_id",), ("u_float", "u_int", "u_str"), TTL_USER),
        FeatureTable("pairs", pair, ("user_id", "region"), ("p_float", "p_int", "p_str"), TTL_PAIR),
    ]


def _expected(labels: pd.DataFrame, user: pd.DataFrame, pair: pd.DataFrame) -> pd.DataFrame:
    found_user = oracle(labels, user, ["user_id"], TTL_USER).add_prefix("users__")
    found_pair = oracle(labels, pair, ["user_id", "region"], TTL_PAIR).add_prefix("pairs__")
    return pd.concat([labels, found_user, found_pair], axis=1)


FEATURE_COLUMNS = [
    f"{t}__{s}_{k}" for t, s in (("users", "u"), ("pairs", "p")) for k in ("float", "int", "str")
]


# (seed, created lag span µs, time unit µs): HUGEINT keys, BIGINT keys, BIGINT in ms and in s
ORACLE_CASES = [(0, 10**7, 1), (1, 10**7, 1), (2, 10**5, 1), (5, 10**5, 1)]
ORACLE_CASES += [(6, 10**10, 1_000), (7, 5 * 86_400 * 10**6, 10**6)]


def _simple() -> tuple[pd.DataFrame, pd.DataFrame]:
    labels = pd.DataFrame(
        {
            "user_id": [1, 2],
            "event_timestamp": pd.to_datetime(["2024-01-02", "2024-01-03"], utc=True),
        }
    )
    table = pd.DataFrame(
        {
            "user_id": [1],
            "event_timestamp": pd.to_datetime(["2024-01-01"], utc=True),
            "created_timestamp": pd.to_datetime(["2024-01-01"], utc=True),
            "score": [0.5],
        }
    )
    return labels, table
