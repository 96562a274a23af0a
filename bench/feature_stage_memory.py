"""Where the feature stage's memory goes: RSS by phase of one ``features/<view>`` asset run.

``bench/scale.py`` shows the stage's peak RSS growing with the event log while the shard engine's
own peak does not. This finds what holds the rest: the fraud world's days are laid out as the
``raw_events`` partitions of a home (as ``bench/scale.py`` does), then one aggregate table is
materialized by Dagster in this process while a thread samples RSS, and every phase of the asset
is wrapped to record the RSS when it starts, its peak, and the RSS when it ends:

* ``load_input``: the IO manager reading every daily partition into one DataFrame;
* ``with_arrival_times``: the events with the outcome axes added (a copy);
* ``split_frame`` / ``engine.run``: the shards written, then aggregated one at a time;
* ``read_outputs``: every shard's rows concatenated into one frame;
* ``sort``: that frame put back in (keys, time) order (what is left of the sharded call);
* ``quality_check_result`` / ``_metadata``: the Great Expectations suite and the asset metadata
  on the whole table;
* ``dump_to_path``: the IO manager writing the returned frame as Parquet.

It also prints the in-memory size of the events frame and of the feature table.

    python bench/feature_stage_memory.py --events 1000000 2000000
"""

from __future__ import annotations

import argparse
import functools
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import assets.features.aggregates as aggregates  # noqa: E402
import assets.features.feature_table_assets as feature_table_assets  # noqa: E402
import runtime.shards as shards  # noqa: E402
from assets.features.views import feature_tables  # noqa: E402
from bench.generate import START  # noqa: E402
from bench.scale import RssSampler, _spec, generate  # noqa: E402
from configs.schema.execution import ExecutionSpec  # noqa: E402
from dagster_project.loader import resources, use_case_assets  # noqa: E402
from resources.parquet_io import PartitionedParquetIOManager  # noqa: E402
from runtime import layout  # noqa: E402

GIB = 1024**3


class Phases:
    """Start and end time of every wrapped call, and the sizes of the frames they returned."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []
        self.sizes: dict[str, float] = {}

    def wrap(self, owner: object, name: str, label: str, size_of_result: bool = False) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.time()
            try:
                result = original(*args, **kwargs)
            finally:
                self.calls.append((label, started, time.time()))
            if size_of_result:
                frame = result[0] if isinstance(result, tuple) else result
                if isinstance(frame, pd.DataFrame):
                    size = frame.memory_usage(deep=True).sum() / GIB
                    self.sizes[label] = max(self.sizes.get(label, 0.0), size)
            return result

        setattr(owner, name, wrapper)


def instrument(phases: Phases) -> None:
    """Wrap each phase where the asset looks it up (module globals, class attributes)."""
    phases.wrap(PartitionedParquetIOManager, "load_input", "load_input", size_of_result=True)
    phases.wrap(feature_table_assets, "with_arrival_times", "with_arrival_times")
    phases.wrap(feature_table_assets, "compute_aggregates_sharded", "sharded call (all)")
    phases.wrap(aggregates, "split_frame", "split_frame")
    phases.wrap(shards.LocalEngine, "run", "engine.run")
    phases.wrap(aggregates, "read_outputs", "read_outputs", size_of_result=True)
    phases.wrap(feature_table_assets, "quality_check_result", "quality_check_result")
    phases.wrap(feature_table_assets, "_metadata", "_metadata")
    phases.wrap(PartitionedParquetIOManager, "dump_to_path", "dump_to_path")


def measure(home: Path, shard_events: int) -> None:
    """One size, in a process of its own that did nothing else (the generation ran in the
    parent): the phases of one aggregate table's materialization."""
    paths = sorted(home.joinpath("tables", *layout.raw_events_key("fraud")).glob("*.parquet"))
    rows, days = sum(pq.ParquetFile(p).metadata.num_rows for p in paths), len(paths)
    base = _spec()
    source = base.source.model_copy(update={"start_date": START, "days": days})
    execution = ExecutionSpec(
        shards=max(1, math.ceil(rows / shard_events)), storage=str(home / "shards")
    )
    spec = base.model_copy(update={"source": source, "execution": execution}).with_path(base.path)
    table = next(t for t in feature_tables(spec) if t.kind == "aggregates")
    phases = Phases()
    instrument(phases)
    sampler = RssSampler(period=0.1)
    started = time.time()
    try:
        result = dg.materialize(
            use_case_assets(spec),
            selection=[dg.AssetKey(layout.feature_table_key(spec.name, table.name))],
            resources=resources(UPath(home)),
            instance=dg.DagsterInstance.ephemeral(),
        )
    finally:
        sampler.stop()
    assert result.success
    peak = sampler.peak_between(started, time.time())
    print(
        f"{rows:,} events, features/{table.name}, {execution.shards} shards: peak RSS"
        f" {peak:.2f} GiB; events frame {phases.sizes['load_input']:.2f} GiB in memory,"
        f" feature table {phases.sizes['read_outputs']:.2f} GiB"
    )
    print(f"  {'phase':<22} {'start s':>8} {'s':>7} {'RSS at start':>13} {'peak':>6} {'at end':>7}")
    for label, begin, end in sorted(phases.calls, key=lambda call: call[1]):
        before = sampler.peak_between(begin, begin)
        after = sampler.peak_between(end, end)
        print(
            f"  {label:<22} {begin - started:8.1f} {end - begin:7.1f} {before:13.2f}"
            f" {sampler.peak_between(begin, end):6.2f} {after:7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--shard-events", type=int, default=500_000)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)  # a measuring child
    args = parser.parse_args()
    if args.home:
        measure(args.home, args.shard_events)
        return
    workdir = Path(tempfile.mkdtemp(prefix="playbook-stage-memory-"))
    try:
        for events in args.events:
            home = workdir / f"events-{events}"
            generate(events, args.days, home)
            command = [sys.executable, __file__, "--home", str(home)]
            subprocess.run([*command, "--shard-events", str(args.shard_events)], check=True)
            shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
