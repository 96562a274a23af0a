"""Point-in-time join: the key encodings its ``ASOF`` join packs (event, created) times into.

The join packs a row's event and created times into one sortable key: a HUGEINT when their
span needs it, a BIGINT otherwise, counted in the data's coarsest time unit; first a guessed,
guarded BIGINT that needs no scan of the table. These tests check that the oracle cases drive
each encoding, that a table with one created time for all rows keys on the event time alone and
still equals the oracle, and that a row the guess did not foresee fails it rather than the join.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from assets.training.pit_join import ROW, FeatureTable, point_in_time_join, write_join_rows
from assets.training.pit_keys import GUARD, SAMPLE_ROWS, table_side
from tests.unit.pit_join_cases import (
    ORACLE_CASES,
    START,
    TTL_USER,
    US,
    _assert_same,
    _cells,
    _expected,
    _tables,
    _to_us,
    make_data,
    oracle,
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
    window = (int(as_of.min()), int(as_of.max()))
    side = table_side(con, table, '"t"', types, window, guess=False)
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
    window = (int(as_of.min()), int(as_of.max()))
    side = table_side(con, _tables(user, user)[0], '"t"', types, window, guess=False)
    assert "HUGEINT" not in side.feature_sql
    unique = ~user.duplicated(["user_id", "event_timestamp"], keep=False)
    decided = labels["user_id"].isin(user.loc[unique, "user_id"]) & ~labels["user_id"].isin(
        user.loc[~unique, "user_id"]
    )
    assert decided.sum() > 100
    columns = ["users__u_float", "users__u_int", "users__u_str"]
    _assert_same(result[decided], expected[decided], ["row_id", *columns])


@pytest.mark.parametrize(("lag_us", "guessed"), [(10**5, True), (10**7, False)])
def test_keys_are_guessed_where_the_span_leaves_room(lag_us: int, guessed: bool) -> None:
    """Sub-second lags over weeks of microsecond events get a guessed, guarded key (no
    statistics scan) that holds for every row; 10 s lags leave no room for one, and the key comes
    from the statistics."""
    labels, user, _ = make_data(2, lag_us, 1)
    con = duckdb.connect()
    con.register("t", user)
    types = {c: str(t) for c, t in zip(user.columns, con.sql("SELECT * FROM t").types, strict=True)}
    as_of = pd.Series(_to_us(labels["event_timestamp"]))
    window = (int(as_of.min()), int(as_of.max()))
    side = table_side(con, _tables(user, user)[0], '"t"', types, window)
    assert (GUARD in side.feature_sql) == guessed
    # every row passes the guard: DuckDB raises only for a row outside the guess (not, say, by
    # folding the constant error() call while planning, which would redo every join)
    assert con.sql(f"SELECT count(*) FROM ({side.feature_sql})").fetchall()[0][0] > 0


def _backfilled() -> tuple[pd.DataFrame, FeatureTable]:
    """Labels, and a table whose sampled first rows all lag 1 ms, with a backfill after them: a
    tie at the last event time, won by a row created a year after its event."""
    n = SAMPLE_ROWS + 5_000
    event = START + pd.to_timedelta(np.arange(n), unit="s")
    table = pd.DataFrame(
        {
            "user_id": np.arange(n) % 100,
            "event_timestamp": event,
            "created_timestamp": event + pd.Timedelta(milliseconds=1),
            "value": np.arange(n),
        }
    )
    tie = pd.Timestamp(table["event_timestamp"].iat[-1])
    backfill = pd.DataFrame(
        {
            "user_id": [7, 7],
            "event_timestamp": [tie, tie],
            "created_timestamp": [tie + pd.Timedelta(seconds=1), tie + pd.Timedelta(days=365)],
            "value": [-1, -2],
        }
    )
    table = pd.concat([table, backfill], ignore_index=True)
    rng = np.random.default_rng(0)
    as_of = START + pd.to_timedelta(rng.integers(0, n, 300), unit="s")
    labels = pd.DataFrame(
        {
            "user_id": np.concatenate([rng.integers(0, 100, 300), [7, 7]]),
            "event_timestamp": pd.Series(as_of).tolist() + [tie, tie + US],
        }
    )
    labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    return labels, FeatureTable("t", table, ("user_id",), ("value",), TTL_USER)


def test_a_lag_the_sample_missed_fails_the_guess_and_the_join_stays_exact() -> None:
    """The guessed key is checked on every row: a backfilled row (created a year after its event)
    after the sampled rows fails the guess, and the join redone with keys from the statistics
    still lets it win its tie. Unguarded, its key would read as a far-future event: the label at
    exactly its event time would get the tie's loser instead."""
    labels, view = _backfilled()
    table = view.frame
    assert isinstance(table, pd.DataFrame)
    con = duckdb.connect()
    con.register("t", table)
    types = {
        c: str(t) for c, t in zip(table.columns, con.sql("SELECT * FROM t").types, strict=True)
    }
    stamps = pd.Series(_to_us(labels["event_timestamp"]))
    window = (int(stamps.min()), int(stamps.max()))
    assert GUARD in table_side(con, view, '"t"', types, window).feature_sql  # the sample missed it

    result = point_in_time_join(labels, [view])
    assert _cells(result["value"].tail(2)) == [-2, -2]
    _assert_same(result, oracle(labels, table, ["user_id"], TTL_USER), ["value"])


def test_a_failed_guess_rewrites_a_shards_file(tmp_path: Path) -> None:
    """A shard's answer is written by DuckDB as the join runs: after a failed guess the file is
    written again, whole, with the one-pass answer."""
    labels, view = _backfilled()
    target = tmp_path / "rows.parquet"
    rows = np.arange(len(labels)) + 1_000
    assert write_join_rows(labels, rows, [view], str(target), "event_timestamp", False) == len(rows)
    written = pd.read_parquet(target).sort_values(ROW)
    assert written[ROW].tolist() == rows.tolist()
    assert _cells(written["value"].tail(2)) == [-2, -2]
    assert _cells(written["value"]) == _cells(point_in_time_join(labels, [view])["value"])
