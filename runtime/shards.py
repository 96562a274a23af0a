"""Run one function per shard of an event log, one shard at a time here or as Ray tasks.

Why shards: a windowed aggregate (and every per-entity stage) only ever looks at one entity's
rows, so cutting the log into groups of whole entities by a stable hash of the entity key gives
pieces that are computed on their own and whose union is the unsharded result row for row. Each
shard's input and output are Parquet files under the execution's storage, so a shard can run in
this process (peak memory ~ one shard: out-of-core) or on any node of a Ray cluster that sees the
same folder, and a retried shard simply rewrites its own file.

The hash is pandas' ``hash_pandas_object`` on the key values: fixed hash key, independent of the
process, the Python hash seed and the row order. The values are first put in one representation
per value (:func:`stable_keys`): an integer key read from Parquet is ``float64`` in a batch
that holds a null and ``int64`` in one that does not, and the same key must land in the same
shard whichever batch (or whole frame) it comes from. Nothing here imports Dagster, and nothing here
imports Ray: the Ray engine (``runtime.ray_engine``) is imported only when a run asks for it.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from configs.schema.execution import EVENTS_PER_SHARD, ExecutionSpec

RAY_ADDRESS_ENV = "RAY_ADDRESS"
SHARDS_FOLDER = "shards"  # under the home, when execution.storage is not set

# A shard function reads one input Parquet file and writes one output Parquet file; it returns
# the rows written. It must be a module-level function (or a partial of one) so Ray can ship it.
ShardFunction = Callable[[str, str], int]


class ExecutionError(RuntimeError):
    """A setting of the ``execution`` section (or ``RAY_ADDRESS``) that cannot work, raised before
    any shard runs; the message names the setting and its value."""


@dataclass(frozen=True)
class Execution:
    """The ``execution`` section resolved against the environment and the home."""

    engine: Literal["local", "ray"]
    address: str | None
    address_setting: str  # "execution.address" or "RAY_ADDRESS": what to name in an error
    shards: int | None  # None: chosen from the data size (and the cluster's CPUs)
    storage: Path


def resolve_execution(
    spec: ExecutionSpec, home: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> Execution:
    """Engine, address, shard count and storage from the YAML, ``RAY_ADDRESS`` and the home.

    An explicit ``execution.address`` wins over ``RAY_ADDRESS`` (as ``ray.init(address=...)``
    does); ``RAY_ADDRESS`` alone turns Ray on unless the YAML pins ``engine: local``.
    """
    environ = os.environ if environ is None else environ
    from_env = environ.get(RAY_ADDRESS_ENV) or None
    engine = spec.engine or ("ray" if (spec.address or from_env) else "local")
    address, setting = spec.address, "execution.address"
    if address is None and from_env is not None:
        address, setting = from_env, RAY_ADDRESS_ENV
    if engine == "ray" and address is None:
        raise ExecutionError(
            "execution.engine is 'ray' but no cluster is named: set execution.address or"
            f" {RAY_ADDRESS_ENV} (host:port of the head, 'ray://host:port' or 'auto')"
        )
    storage = Path(spec.storage.removeprefix("file://")) if spec.storage else None
    if storage is None and "://" in str(home):
        if engine == "ray":
            raise ExecutionError(
                f"execution.storage: the home {str(home)!r} is not a folder Ray workers can"
                " share; set execution.storage to a folder every node mounts"
            )
        storage = Path(tempfile.gettempdir()) / "playbook-shards"  # only this process reads it
    return Execution(
        engine=engine,
        address=address if engine == "ray" else None,
        address_setting=setting,
        shards=None if spec.shards == "auto" else int(spec.shards),
        storage=(storage or Path(home) / SHARDS_FOLDER).expanduser().absolute(),
    )


def shard_count(execution: Execution, rows: int, cluster_cpus: int = 1) -> int:
    """How many shards: the fixed count, else one per ``EVENTS_PER_SHARD`` rows and, on Ray,
    at least one per CPU so that every node has work."""
    if execution.shards is not None:
        return execution.shards
    by_size = max(1, math.ceil(rows / EVENTS_PER_SHARD))
    return max(by_size, cluster_cpus) if execution.engine == "ray" else by_size


def _stable_column(column: pd.Series) -> pd.Series:
    """One representation per key value: whole numbers as nullable ``Int64`` (whether they came
    as ``int64``, ``Int64`` or ``float64`` with NaN for nulls), other numbers as ``float64``,
    strings and categories as Python objects; other types as they are."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return column.astype("boolean")
    if pd.api.types.is_numeric_dtype(dtype):
        if not pd.api.types.is_integer_dtype(dtype):
            values = column.dropna().to_numpy(dtype="float64")
            if not np.isfinite(values).all() or (values != np.floor(values)).any():
                return column.astype("float64")
        try:
            return column.astype("Int64")
        except (OverflowError, TypeError, ValueError):  # beyond int64 (e.g. huge uint64)
            return column
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return column.astype(object)
    return column


def stable_keys(keys: pd.DataFrame) -> pd.DataFrame:
    """``keys`` with every column in the representation :func:`shard_codes` hashes."""
    return pd.DataFrame({name: _stable_column(keys[name]) for name in keys.columns})


def nullable_integers(arrow_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    """Arrow integers as pandas' nullable ``Int64`` (never through ``float64``, which rounds
    integers beyond 2**53)."""
    return pd.Int64Dtype() if pa.types.is_signed_integer(arrow_type) else None


def shard_codes(keys: pd.DataFrame, shards: int) -> np.ndarray:
    """The shard of every row: a stable hash of its key values, modulo the shard count.

    The hash depends on the values only (:func:`stable_keys`), not on the dtype the frame or
    batch happens to give them."""
    hashed = pd.util.hash_pandas_object(stable_keys(keys), index=False).to_numpy()
    return (hashed % np.uint64(shards)).astype(np.int64)


def _input_path(folder: Path, shard: int) -> Path:
    return folder / f"input-{shard:05d}.parquet"


def output_path(folder: Path, shard: int) -> Path:
    return folder / f"output-{shard:05d}.parquet"


def split_frame(frame: pd.DataFrame, keys: Sequence[str], shards: int, folder: Path) -> list[Path]:
    """Write each non-empty shard of ``frame`` to its own Parquet file; the files, by shard."""
    codes = shard_codes(frame[list(keys)], shards)
    order = np.argsort(codes, kind="stable")  # rows keep their order inside a shard
    bounds = np.searchsorted(codes[order], np.arange(shards + 1))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(shards):
        rows = order[bounds[shard] : bounds[shard + 1]]
        if len(rows):
            path = _input_path(folder, shard)
            frame.iloc[rows].to_parquet(path, index=False)
            paths.append(path)
    return paths


# Sees every batch a split reads, with the log position of its first row (checks, counts).
BatchObserver = Callable[[pa.RecordBatch, int], None]


def split_parquet(
    sources: Sequence[Path | str],
    keys: Sequence[str],
    shards: int,
    folder: Path,
    batch_rows: int = 1 << 18,
    *,
    columns: Sequence[str] | None = None,
    numbered: str | None = None,
    observe: BatchObserver | None = None,
) -> list[Path]:
    """Stream Parquet files into per-shard Parquet files, one batch in memory at a time.

    ``columns`` picks the columns carried (all by default); ``numbered`` adds a column of that
    name holding each row's position in the sources read end to end (files in order, rows in
    file order), so a stage can put its outputs back in the log's order; ``observe`` sees
    every batch and its first row's position, for what must be counted over the whole log.
    Sources without a single row give one input file of no rows (shard 0), with the columns.

    The scanner reads one file and one batch ahead, not its defaults (4 files, 16 batches): it
    decodes whole row groups, and a day of a large log is one or two row groups, so the default
    held several days at once. Splitting 50M fraud events (28 files of 1.8M rows) into 100
    shards peaked at 2.39 GiB with the defaults and 1.05 GiB so, in the same time (85 and 87 s).
    """
    dataset = pads.dataset([str(s) for s in sources], format="parquet")
    schema = dataset.schema
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
    if numbered is not None:
        schema = schema.append(pa.field(numbered, pa.int64()))
    folder.mkdir(parents=True, exist_ok=True)
    writers: dict[int, pq.ParquetWriter] = {}
    batches = dataset.to_batches(
        columns=None if columns is None else list(columns),
        batch_size=batch_rows,
        fragment_readahead=1,
        batch_readahead=1,
    )
    start = 0
    try:
        for batch in batches:
            if observe is not None:
                observe(batch, start)
            if numbered is not None:
                positions = pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
                batch = batch.append_column(numbered, positions)
            start += batch.num_rows
            key_frame = batch.select(list(keys)).to_pandas(types_mapper=nullable_integers)
            codes = shard_codes(key_frame, shards)
            for shard in np.unique(codes):
                part = batch.filter(pa.array(codes == shard))
                if shard not in writers:
                    writers[shard] = pq.ParquetWriter(_input_path(folder, int(shard)), schema)
                writers[shard].write_batch(part)
    finally:
        for writer in writers.values():
            writer.close()
    if not writers:  # no rows at all: one empty shard, so the stage still yields its columns
        pq.write_table(schema.empty_table(), _input_path(folder, 0))
        return [_input_path(folder, 0)]
    return [_input_path(folder, shard) for shard in sorted(writers)]


@dataclass(frozen=True)
class ShardResult:
    """What one shard did, and where: the node id is Ray's (``local`` in this process)."""

    shard: int
    output: str
    rows: int
    seconds: float
    node: str
    pid: int


def shard_index(path: str | Path) -> int:
    """The shard number in an input or output file name."""
    return int(Path(path).stem.rsplit("-", 1)[1])


def run_shard(function: ShardFunction, source: str, node: str = "local") -> ShardResult:
    """Run ``function`` on one shard's input, writing its output beside it atomically (a retried
    or killed attempt never leaves a half-written file under the final name)."""
    started = time.perf_counter()
    shard = shard_index(source)
    target = output_path(Path(source).parent, shard)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    rows = function(source, str(staging))
    staging.rename(target)
    return ShardResult(shard, str(target), rows, time.perf_counter() - started, node, os.getpid())


def run_local(function: ShardFunction, inputs: Sequence[Path]) -> list[ShardResult]:
    """Every shard in this process, one at a time: peak memory is one shard's."""
    return [run_shard(function, str(path)) for path in inputs]


@contextmanager
def shard_workspace(execution: Execution, label: str) -> Iterator[Path]:
    """A fresh folder under the storage for one stage's shards, removed when the stage is done
    (its outputs have been read by then) or has failed."""
    folder = execution.storage / label / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_outputs(results: Sequence[ShardResult]) -> pd.DataFrame:
    """The shards' outputs as one frame, in shard order."""
    frames = [pd.read_parquet(r.output) for r in sorted(results, key=lambda r: r.shard)]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


class ShardEngine(Protocol):
    """What runs a stage's shards: this process (:class:`LocalEngine`) or a Ray cluster."""

    execution: Execution
    cpus: int  # CPUs that run shards at once: 1 here, the cluster's count on Ray

    def run(self, function: ShardFunction, inputs: Sequence[Path]) -> list[ShardResult]: ...


@dataclass
class LocalEngine:
    """Runs shards in this process, one after the other."""

    execution: Execution
    cpus: int = 1

    def run(self, function: ShardFunction, inputs: Sequence[Path]) -> list[ShardResult]:
        return run_local(function, inputs)


@contextmanager
def open_engine(execution: Execution, modules: Sequence[str] = ()) -> Iterator[ShardEngine]:
    """The engine of ``execution``, ready to run shards: for Ray, connected and checked (the
    address answers, every node imports ``modules`` and sees the storage) before any work."""
    if execution.engine == "local":
        yield LocalEngine(execution)
        return
    host = (execution.address or "").split("://", 1)[-1].rpartition(":")[0]
    if host in ("127.0.0.1", "localhost", "::1") and "ray" not in sys.modules:
        # Ray reads this once, at import: unset, a driver rewrites 127.0.0.1 to the machine's
        # own address and never finds a cluster that listens on loopback only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from runtime.ray_engine import ray_engine  # only a Ray run imports Ray

    with ray_engine(execution, modules) as engine:
        yield engine
