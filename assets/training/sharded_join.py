"""The point-in-time join in shards of whole entities, one at a time here or as Ray tasks.

Why it is exact: a label row can only ever match feature rows with its own key values, so when
the label rows and a feature table are cut by the same hash of the same key columns, each
shard's labels meet every feature row they could match, and no other. Each shard runs the very
join of :mod:`assets.training.pit_join` on its piece (DuckDB inside the task), so ties, TTLs and
rows without history are decided exactly as in one pass.

The partitioning: a training set joins several views, often on different entities (fraud: the
card's views on ``card_id``, the merchant's on ``merchant_id``), and one hash cannot put a card's
and a merchant's rows together. So the join runs **group by group**: tables are grouped by the
key columns they share (a table joins the first group whose shard keys are among its own keys,
e.g. a ``(user_id, region)`` table joins the ``user_id`` group, else it starts a group keyed by
all its keys), and for each group the label rows' few join columns (row number, as-of time, the
group's keys) and the group's tables are cut by the hash of the group's shard keys. Each shard
writes its rows' features and row numbers as it goes; then DuckDB sorts each group's files by
row number into one file (out of core: it spills past ``duckdb_files.SORT_MEMORY``), and the
answer is read back a chunk of label rows at a time, the groups' columns laid side by side in
the tables' order: the one-pass answer, column for column, chunk after chunk. The alternative,
cutting labels by one key and giving each shard the other views' rows for the keys it holds,
copies a popular merchant's whole history into every shard; group by group reads every feature
row exactly once.

What is in memory: while splitting, one batch of the label rows (a training set's label rows
wait on disk in label order, :class:`~assets.training.label_file.LabelFile`; a caller may also
pass a frame it holds anyway) and one batch of a feature table (DuckDB streams it from its
Parquet file, the same reader the one-pass join uses, so paths, globs and frames all work), and
then one chunk of the labels and their answer; each task holds one shard's labels and feature
rows. Neither the label rows nor their features are held whole.
Nothing here imports Dagster or Ray.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from assets.training.duckdb_files import literal, quote, sorting_connection
from assets.training.label_file import LabelFile
from assets.training.pit_join import (
    ROW,
    FeatureTable,
    check_names,
    check_table,
    point_in_time_join,
    write_join_rows,
)
from runtime.shards import (
    ShardEngine,
    ShardResult,
    shard_codes,
    shard_count,
    shard_index,
    shard_workspace,
    split_frame,
    split_parquet,
)

# What the shard tasks of a training set import on a worker: checked on every node first.
SHARD_MODULES = (
    "assets.training.sharded_join",
    "assets.training.label_rows",
    "assets.training.negatives",
)
TABLE_BATCH_ROWS = 1 << 18  # feature rows held at once while a table is cut into shards
CHUNK_ROWS = 1 << 18  # label rows whose features are held at once when the answer is read back
ANSWER_ROW_GROUP = 1 << 16  # a chunk reads a few row groups of a sorted answer, not all


@dataclass(frozen=True)
class Sharding:
    """How a training-set build is cut: the engine, the shard count, the workspace's name."""

    engine: ShardEngine
    shards: int
    label: str  # folder under the execution's storage, e.g. "fraud/training_sets/scorer"


def plan_sharding(engine: ShardEngine | None, rows: int, label: str) -> Sharding | None:
    """The sharding of a stage over ``rows`` events, or None for today's one-pass path: no
    engine, or a single shard on the local engine (as the feature aggregates decide)."""
    if engine is None:
        return None
    shards = shard_count(engine.execution, rows, engine.cpus)
    if shards == 1 and engine.execution.engine == "local":
        return None
    return Sharding(engine, shards, label)


@dataclass(frozen=True)
class JoinGroup:
    """Tables joined in one sharded pass: all of them hold ``shard_keys`` among their keys."""

    shard_keys: tuple[str, ...]
    tables: tuple[int, ...]  # positions in the caller's table list

    def keys(self, tables: Sequence[FeatureTable]) -> list[str]:
        """Every key column of the group's tables: what its label pieces carry."""
        return list(dict.fromkeys(k for i in self.tables for k in tables[i].keys))


def join_groups(tables: Sequence[FeatureTable]) -> list[JoinGroup]:
    """Group tables by shared key columns, in table order (see the module's docstring)."""
    groups: list[JoinGroup] = []
    for i, table in enumerate(tables):
        for n, group in enumerate(groups):
            if set(group.shard_keys) <= set(table.keys):
                groups[n] = replace(group, tables=(*group.tables, i))
                break
        else:
            groups.append(JoinGroup(tuple(table.keys), (i,)))
    return groups


def _table_file(folder: Path, shard: int) -> Path:
    return folder / f"rows-{shard:05d}.parquet"


def split_table(
    table: FeatureTable,
    shard_keys: Sequence[str],
    key_dtypes: Mapping[str, object],
    shards: int,
    folder: Path,
) -> None:
    """Cut a feature table into one Parquet file per shard (every shard gets one, maybe empty).

    DuckDB reads the table as the join would and streams it in batches. Rows with a null shard
    key are left out: a null key never matches. The keys are hashed as the label rows' dtypes
    (``key_dtypes``), so a key stored as int32 in the table and int64 in the labels, which the
    join matches by value, lands in the same shard.
    """
    columns = [table.event_timestamp, table.created_timestamp, *table.keys, *table.features]
    select = ", ".join(quote(c) for c in dict.fromkeys(c for c in columns if c))
    not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in shard_keys)
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        if isinstance(table.frame, str):
            source = f"read_parquet({literal(table.frame)})"
        else:
            con.register("feature_rows", table.frame)
            source = "feature_rows"
        check_table(con, source, table)
        query = f"SELECT {select} FROM {source} WHERE {not_null}"
        reader = con.sql(query).to_arrow_reader(TABLE_BATCH_ROWS)
        schema = reader.schema
        for batch in reader:
            keys = batch.select(list(shard_keys)).to_pandas()
            try:
                keys = keys.astype(dict(key_dtypes))
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"feature table {table.name!r}: key(s) {list(shard_keys)} cannot be read as"
                    f" the label rows' types {dict(key_dtypes)} ({error})"
                ) from None
            codes = shard_codes(keys, shards)
            for shard in np.unique(codes):
                if shard not in writers:
                    writers[shard] = pq.ParquetWriter(_table_file(folder, int(shard)), schema)
                writers[shard].write_batch(batch.filter(pa.array(codes == shard)))
    finally:
        for writer in writers.values():
            writer.close()
        con.close()
    for shard in set(range(shards)) - set(writers):
        pq.write_table(schema.empty_table(), _table_file(folder, shard))


def join_shard(
    source: str,
    target: str,
    *,
    tables: tuple[FeatureTable, ...],
    folders: tuple[str, ...],
    as_of: str,
    prefix_features: bool,
) -> int:
    """One shard: its label pieces from ``source``, its rows of every table of the group from
    the table folders, the join's answer (row numbers and features) to ``target``.

    Module-level, its settings bound by ``functools.partial``, so Ray ships it by reference to
    a worker that has the project installed.
    """
    labels = pd.read_parquet(source)
    rows = labels.pop(ROW).to_numpy()
    shard = shard_index(source)
    local = [
        replace(table, frame=str(_table_file(Path(folder), shard)))
        for table, folder in zip(tables, folders, strict=True)
    ]
    return write_join_rows(labels, rows, local, target, as_of, prefix_features)


def _group_answer(
    labels: pd.DataFrame | LabelFile,
    tables: Sequence[FeatureTable],
    group: JoinGroup,
    number: int,
    sharding: Sharding,
    folder: Path,
    as_of: str,
    prefix_features: bool,
) -> tuple[Path, set[str], list[ShardResult]]:
    """One group's answer for every label row (``ROW`` and its features) as one Parquet file in
    label order, sorted by DuckDB out of core; its columns with a null anywhere; and the
    group's shard runs."""
    home = folder / f"group-{number}"
    keys = group.keys(tables)
    dtypes = {k: labels.dtypes[k] for k in group.shard_keys}
    folders = []
    for i in group.tables:
        table_folder = home / f"table-{i}"
        split_table(tables[i], group.shard_keys, dtypes, sharding.shards, table_folder)
        folders.append(str(table_folder))
    inputs = _split_labels(labels, [as_of, *keys], list(group.shard_keys), sharding.shards, home)
    function = partial(
        join_shard,
        tables=tuple(tables[i] for i in group.tables),
        folders=tuple(folders),
        as_of=as_of,
        prefix_features=prefix_features,
    )
    results = sharding.engine.run(function, inputs)
    files = ", ".join(literal(r.output) for r in sorted(results, key=lambda r: r.shard))
    answer = home / "answer.parquet"
    with sorting_connection(home / "spill") as con:
        con.sql(
            f"COPY (SELECT * FROM read_parquet([{files}]) ORDER BY {ROW}) TO {literal(answer)}"
            f" (FORMAT parquet, ROW_GROUP_SIZE {ANSWER_ROW_GROUP})"
        )
        nullable = _nullable_columns(con, answer)
    return answer, nullable, results


def _split_labels(
    labels: pd.DataFrame | LabelFile,
    columns: list[str],
    shard_keys: list[str],
    shards: int,
    folder: Path,
) -> list[Path]:
    """The label rows' join columns (``ROW``, their place, first) cut into shards: from the
    frame, or streamed from the label file a batch at a time."""
    wanted = list(dict.fromkeys(columns))
    if isinstance(labels, LabelFile):
        return split_parquet(
            [labels.path],
            shard_keys,
            shards,
            folder,
            TABLE_BATCH_ROWS,
            columns=wanted,
            numbered=ROW,
        )
    pieces = pd.DataFrame(
        {ROW: np.arange(len(labels), dtype=np.int64), **{c: labels[c].array for c in wanted}},
        copy=False,
    )
    return split_frame(pieces, shard_keys, shards, folder)


def _nullable_columns(con: duckdb.DuckDBPyConnection, answer: Path) -> set[str]:
    """The answer's columns that hold a null anywhere (one streaming count)."""
    columns = [c for c in pq.read_schema(answer).names if c != ROW]
    if not columns:
        return set()
    counts = ", ".join(f"count(*) - count({quote(c)})" for c in columns)
    (found,) = con.execute(f"SELECT {counts} FROM read_parquet({literal(answer)})").fetchall()
    return {c for c, nulls in zip(columns, found, strict=True) if nulls}


def _as_whole_column(column: pd.Series) -> pd.Series:
    """A chunk's column typed as DuckDB types it when the whole answer has a null in it:
    integers and booleans as pandas' nullable types (a chunk without nulls came as numpy's)."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.BooleanDtype):
        return column.astype("boolean")
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return column.astype(dtype.name.replace("u", "U").replace("i", "I", 1))
    return column


def _label_chunks(labels: pd.DataFrame | LabelFile, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The label rows in label order, ``chunk_rows`` or fewer at a time (one empty chunk when
    there are none)."""
    if isinstance(labels, LabelFile):
        yield from labels.batches(chunk_rows)
        return
    for start in range(0, max(len(labels), 1), chunk_rows):
        yield labels.iloc[start : start + chunk_rows]


def _chunks(
    labels: pd.DataFrame | LabelFile,
    tables: Sequence[FeatureTable],
    answers: Sequence[tuple[JoinGroup, Path, set[str]]],
    prefix_features: bool,
    chunk_rows: int,
    label: str,
) -> Iterator[pd.DataFrame]:
    """The labels and their features, ``chunk_rows`` label rows at a time, in label order.

    Each group's answer is sorted by ``ROW``, so a chunk's rows are a few row groups that
    DuckDB finds by their statistics. Every chunk must hold exactly its label rows' numbers:
    each label row answered once, none lost.
    """
    start = 0
    with duckdb.connect() as con:
        for piece in _label_chunks(labels, chunk_rows):
            end = start + len(piece)
            parts: dict[int, pd.DataFrame] = {}
            for group, answer, nullable in answers:
                found = con.sql(
                    f"SELECT * FROM read_parquet({literal(answer)})"
                    f" WHERE {ROW} >= {start} AND {ROW} < {end} ORDER BY {ROW}"
                ).df()
                rows = found.pop(ROW).to_numpy()
                if not np.array_equal(rows, np.arange(start, end)):
                    raise RuntimeError(
                        f"sharded join {label}: the shards answered {len(rows)} of label rows"
                        f" {start}-{end - 1}; every label row must come back once"
                    )
                for column in nullable & set(found.columns):
                    found[column] = _as_whole_column(found[column])
                found.index = piece.index
                for i in group.tables:
                    parts[i] = found[tables[i].output_names(prefix_features)]
            start = end
            yield pd.concat([piece, *(parts[i] for i in range(len(tables)))], axis=1)


@contextmanager
def sharded_join_chunks(
    labels: pd.DataFrame | LabelFile,
    tables: Sequence[FeatureTable],
    sharding: Sharding,
    as_of: str = "event_timestamp",
    prefix_features: bool = False,
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[Iterator[pd.DataFrame], list[ShardResult]]]:
    """:func:`~assets.training.pit_join.point_in_time_join` in shards run by ``sharding``'s
    engine, handed back ``chunk_rows`` label rows at a time: the chunks, laid end to end, are
    the one-pass frame (rows, order, index, columns, dtypes: a column the whole answer holds a
    null in is typed so in every chunk); also every shard's run.

    ``labels`` is a frame, or the label rows on disk (:class:`LabelFile`), then read a batch at
    a time, never whole. The shards run, and each group's answer is sorted, on entry; no more
    than a chunk of features is then held at once. Names and columns are checked first, with
    the one-pass join's messages. The files live in a workspace under the execution's storage,
    removed when the block ends or fails.
    """
    check_names(labels, tables, as_of, prefix_features)
    if labels.empty or not tables:
        if isinstance(labels, LabelFile):  # nothing to join: the label rows as they are
            yield _label_chunks(labels, chunk_rows), []
        else:
            yield iter([point_in_time_join(labels, tables, as_of, prefix_features)]), []
        return
    results: list[ShardResult] = []
    answers = []
    with shard_workspace(sharding.engine.execution, f"{sharding.label}/join") as folder:
        for number, group in enumerate(join_groups(tables)):
            answer, nullable, ran = _group_answer(
                labels, tables, group, number, sharding, folder, as_of, prefix_features
            )
            results += ran
            answers.append((group, answer, nullable))
        yield (
            _chunks(labels, tables, answers, prefix_features, chunk_rows, sharding.label),
            results,
        )
