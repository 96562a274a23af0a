"""Point-in-time join: the key encodings its ``ASOF`` join packs (event, created) times into.

The join packs a row's event and created times into one sortable key: a HUGEINT when their
span needs it, a BIGINT otherwise, counted in the data's coarsest time unit. These tests check
that the oracle cases drive each encoding, and that a table with one created time for all rows
keys on the event time alone and still equals the oracle.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from assets.training.pit_join import _side, point_in_time_join
from tests.unit.pit_join_cases import (
    ORACLE_CASES,
    _assert_same,
    _expected,
    _tables,
    _to_us,
    make_data,
)


@pytest.mark.parametrize(("seed", "lag_us", "unit"), ORACLE_CASES)
def test_both_key_widths_are_exercised(seed: int, lag_us: int, unit: int) -> None:
    """The oracle cases must drive the join down each key encoding: HUGEINT for the 10 s lags at
    microseconds, BIGINT otherwise, counted in the data's coarsest unit where there is one."""
    labels, user, _ = make_data(seed, lag_us, unit)
    con = duckdb.connect()
    con.register("t", user)
    table = _tables(user, user)[0]
    types = {c: str(t) for c, t in zip(user.columns, con.sql("SELECT * FROM t").types, strict=True)}
    as_of = pd.Series(_to_us(labels["event_timestamp"]))
    side = _side(con, table, '"t"', types, (int(as_of.min()), int(as_of.max())))
    assert ("HUGEINT" in side.feature_sql) == (lag_us == 10**7)
    assert (f"// {unit})" in side.feature_sql) == (unit > 1)


def test_one_created_time_for_all_rows_keys_on_event_time_alone() -> None:
    """A table written at once (one created time, as the feature assets write) breaks no tie: the
    key is the event time alone, a BIGINT, and answers still equal the oracle's."""
    labels, user, pair = make_data(0, 10**7, 1)  # a lag span that would need HUGEINT
    written = pd.Timestamp("2031-01-01", tz="UTC")
    user = user.assign(created_timestamp=written)
    pair = pair.assign(created_timestamp=written)
    result = point_in_time_join(labels, _tables(user, pair), prefix_features=True)
    # ties on event time are now arbitrary: compare only labels whose winner is unique
    expected = _expected(labels, user, pair)
    con = duckdb.connect()
    con.register("t", user)
    types = {c: str(t) for c, t in zip(user.columns, con.sql("SELECT * FROM t").types, strict=True)}
    as_of = pd.Series(_to_us(labels["event_timestamp"]))
    side = _side(con, _tables(user, user)[0], '"t"', types, (int(as_of.min()), int(as_of.max())))
    assert "HUGEINT" not in side.feature_sql
    unique = ~user.duplicated(["user_id", "event_timestamp"], keep=False)
    decided = labels["user_id"].isin(user.loc[unique, "user_id"]) & ~labels["user_id"].isin(
        user.loc[~unique, "user_id"]
    )
    assert decided.sum() > 100
    columns = ["users__u_float", "users__u_int", "users__u_str"]
    _assert_same(result[decided], expected[decided], ["row_id", *columns])
