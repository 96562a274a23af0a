# ruff: noqa: F811  (the leakage tests' fixture comes imported)
"""Label rows streamed from event files into shards against the one-pass label rows.

The hand-made fraud events of the leakage tests (planted late labels, immature rows, several
cards) are written as several files and streamed into 3 shards: the rows must come back in the
log's order, typed as the one-pass frame; a null key, time or label must fail with the one-pass
message, naming the same first rows wherever in the files they are; and the label file must be
read back typed as the whole frame a batch at a time.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from upath import UPath

from assets.training.label_file import LabelFile
from assets.training.label_rows import LabelRowError, label_rows
from assets.training.sharded_join import Sharding
from assets.training.sharded_labels import EventFiles, ShardedLabels, sharded_label_rows
from configs.schema.execution import ExecutionSpec
from runtime.shards import LocalEngine, resolve_execution
from tests.unit.test_training_leakage import BASE, _events, fraud  # noqa: F401

MODEL = "scorer"


def _log(events: pd.DataFrame, folder: Path, files: int = 4) -> EventFiles:
    """``events`` as ``files`` Parquet files read end to end, as the asset finds the log."""
    folder.mkdir()
    paths = []
    for n, rows in enumerate(np.array_split(np.arange(len(events)), files)):
        paths.append(UPath(folder / f"day-{n}.parquet"))
        events.iloc[rows].to_parquet(paths[-1], index=False)
    end = events["event_time"].max() if len(events) else None
    return EventFiles(tuple(paths), tuple(events.columns), len(events), end)


def _streamed(spec, events: pd.DataFrame, tmp_path: Path, shards: int = 3) -> ShardedLabels:
    execution = ExecutionSpec(shards=shards, storage=str(tmp_path / "shared"))
    engine = LocalEngine(resolve_execution(execution, tmp_path, environ={}))
    log = _log(events, tmp_path / "log")
    return sharded_label_rows(spec, MODEL, log, Sharding(engine, shards, "t"), tmp_path / "work")


def test_streamed_label_rows_are_the_one_pass_rows(fraud, tmp_path) -> None:
    events = _events(BASE).sample(frac=1.0, random_state=1).reset_index(drop=True)
    expected = label_rows(fraud, MODEL, events)
    got = _streamed(fraud, events, tmp_path)
    assert got.labels.rows == len(expected.frame) > 10
    frame = pd.concat(list(got.labels.batches(7)))
    pd.testing.assert_frame_equal(frame, expected.frame, check_exact=True)
    assert got.dropped_immature == expected.dropped_immature > 2
    assert len(got.shard_results) == 3 and got.negatives == 0


def test_a_text_column_null_in_every_row_of_a_shard(fraud, tmp_path) -> None:
    """A shard whose text column holds only nulls writes it untyped: the sort still reads the
    shards together, and the rows are the one-pass rows."""
    events = _events(BASE)
    events["country"] = events["country"].where(events["card_id"] == 1, None)
    expected = label_rows(fraud, MODEL, events)
    got = _streamed(fraud, events, tmp_path)
    frame = pd.concat(list(got.labels.batches(1_000)))
    pd.testing.assert_frame_equal(frame, expected.frame, check_exact=True)
    assert frame["country"].notna().any() and frame["country"].isna().any()


def _message(run) -> str:
    with pytest.raises(LabelRowError) as raised:
        run()
    return str(raised.value)


@pytest.mark.parametrize("column", ["card_id", "event_time", "is_fraud"])
def test_a_null_fails_as_in_one_pass_naming_the_same_rows(fraud, tmp_path, column) -> None:
    """Nulls in the second and last files: the same count and the same first rows (their
    places in the whole log), not places within a file or a shard."""
    events = _events(BASE)
    if column == "card_id":
        events[column] = events[column].astype("Int64")
    if column == "is_fraud":
        events[column] = events[column].astype("float64")
    nulls = [len(events) // 3, len(events) // 3 + 1, len(events) - 1]
    events.loc[nulls, column] = None
    expected = _message(lambda: label_rows(fraud, MODEL, events))
    got = _message(lambda: _streamed(fraud, events, tmp_path))
    assert got == expected
    assert "3 label events" in got
    if column != "is_fraud":
        assert str(nulls) in got


def test_an_empty_log_gives_an_empty_label_file(fraud, tmp_path) -> None:
    events = _events(BASE).iloc[:0]
    got = _streamed(fraud, events, tmp_path)
    assert got.labels.rows == 0 and got.dropped_immature == 0
    (only,) = list(got.labels.batches(10))
    assert only.empty
    assert list(only.columns) == list(label_rows(fraud, MODEL, _events(BASE)).frame.columns)


def test_a_label_file_reads_back_typed_as_the_whole_frame(tmp_path) -> None:
    """DuckDB writes no pandas metadata: each batch takes the whole frame's dtypes, even a batch
    without the nulls that made a column nullable."""
    whole = pd.DataFrame(
        {
            "count": pd.array([1, 2, None, 4, 5], dtype="Int64"),
            "flag": pd.array([True, False, True, None, False], dtype="boolean"),
            "kind": pd.Categorical(["a", "b", "a", "c", "b"]),
            "at": pd.date_range("2025-01-01", periods=5, freq="h", tz="UTC"),
            "big": np.array([2**62 + 1, 2**62 + 3, 5, 7, 9], dtype=np.int64),
        }
    )
    source = tmp_path / "whole.parquet"
    whole.to_parquet(source, index=False)
    path = tmp_path / "labels.parquet"
    with duckdb.connect() as con:
        con.sql(
            f"COPY (SELECT * FROM read_parquet('{source}')) TO '{path}'"
            " (FORMAT parquet, ROW_GROUP_SIZE 2)"
        )
    assert pq.read_schema(path).metadata is None or b"pandas" not in pq.read_schema(path).metadata
    labels = LabelFile(path, 5, whole.dtypes)
    batches = list(labels.batches(2))
    assert [len(b) for b in batches] == [2, 2, 1]
    for batch in batches:
        pd.testing.assert_series_equal(batch.dtypes, whole.dtypes)
    pd.testing.assert_frame_equal(pd.concat(batches), whole, check_exact=True)
    (picked,) = list(labels.batches(10, ["big"]))
    assert picked["big"].tolist() == whole["big"].tolist()  # exact beyond 2**53


def test_a_label_file_short_of_rows_fails(tmp_path) -> None:
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(RuntimeError, match="read 2 rows of 3"):
        list(LabelFile(path, 3, pd.Series({"x": np.dtype("int64")})).batches(10))
