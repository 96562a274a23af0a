"""Peak memory and time of the fraud training-set build: label rows held whole against streamed.

The fraud world's events (``--events`` over ``--days``) are generated once and written as one
Parquet file per day, as ``raw_events`` writes them; its feature tables (aggregates and
attributes) and split plan are written as the assets write them. Then the scorer's training set
is written to a file, as the asset writes it, each run in its own subprocess so that peak RSS is
that run's alone.

* ``one-pass``: no engine: the log's label columns read whole, the label rows, the join and the
  set in one pass (the default path of a log under 500k events);
* ``labels-whole``: the label columns read whole and the label rows drawn from them in memory,
  then the join in ``--shards`` local shards and the set written ``CHUNK_ROWS`` label rows at a
  time: the sharded build as it was before the label rows were streamed (the baseline);
* ``shards``: the same shards from the start: the day files streamed into shards a batch at a
  time, the label rows computed per shard and sorted into label order on disk, then the same
  join and chunks (what the asset does).

It prints wall time, peak RSS (the events' read included) and a digest of each written file
read back (equal digests: the same rows, in order).

    python bench/training_set_shards.py --events 1000000 --shards 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.features.table_files import shard_tables, shards_schema  # noqa: E402
from assets.features.views import (  # noqa: E402
    aggregate_table_files,
    compute_attribute_table,
    feature_tables,
)
from assets.raw.event_log import log_columns, log_size_and_end, read_events  # noqa: E402
from assets.raw.synthetic import build_world  # noqa: E402
from assets.split.plan import plan_split  # noqa: E402
from assets.training.build import training_rows, write_training_set  # noqa: E402
from assets.training.label_rows import label_event_columns  # noqa: E402
from assets.training.sharded_join import plan_sharding  # noqa: E402
from assets.training.sharded_labels import EventFiles  # noqa: E402
from bench.generate import START, sized_params  # noqa: E402
from bench.peak_memory import measure_child, peak_rss_gib, run_line  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402
from configs.schema.execution import ExecutionSpec  # noqa: E402
from runtime.shards import LocalEngine, resolve_execution  # noqa: E402

CREATED = pd.Timestamp("2030-01-01")
MODEL = "scorer"
MODES = ("one-pass", "labels-whole", "shards")


def _spec(use_case: str = "fraud"):
    (spec,) = load_specs([CONFIG_DIR / f"{use_case}.yaml"])
    return spec


def prepare(events: int, days: int, folder: Path, use_case: str = "fraud") -> None:
    """Events as day files, feature tables and split plan as Parquet files, generated once
    (the fraud world, or another shipped use case's generator: ``bench/model_stage_memory.py``
    prepares search's too).

    The aggregate tables are computed as their asset computes them, from the day files in
    shards (``aggregate_files_sharded``: the one-pass table's rows, in shard order), so that
    a log too large for the one-pass aggregates can be prepared too."""
    spec = _spec(use_case)
    world = build_world(sized_params(use_case, events, days), 0, START, days)
    frame = pd.concat(
        [world.events_for_day(START + timedelta(days=i)) for i in range(days)],
        ignore_index=True,
    )
    time = spec.events.timestamp
    for day, rows in frame.groupby(frame[time].dt.floor("D"), sort=True):
        rows.to_parquet(folder / f"events-{day:%Y-%m-%d}.parquet", index=False)
    labels = {name: label.column for name, label in spec.labels.items()}
    plan_split(frame, spec.split, time, None, labels).to_parquet(
        folder / "split_plan.parquet", index=False
    )
    size, until = len(frame), frame[time].max()
    del frame
    files = sorted(folder.glob("events-*.parquet"))
    execution = resolve_execution(ExecutionSpec(storage=str(folder / "prepare")), folder, {})
    engine = LocalEngine(execution)
    for name in spec.entity_tables():  # the raw entity tables (a retriever's catalog)
        world.entity_table(name).to_parquet(folder / f"raw_{name}.parquet", index=False)
    for table in feature_tables(spec):
        target = folder / f"{table.name}.parquet"
        if table.kind != "aggregates":
            source = world.entity_table(spec.entities[table.entities[0]].table)
            compute_attribute_table(spec, table, source, CREATED).to_parquet(target, index=False)
            continue
        with aggregate_table_files(
            spec, table, files, CREATED, engine, f"bench/{table.name}", rows=size, until=until
        ) as results:
            outputs = [r.output for r in results]
            schema = shards_schema(outputs)
            with pq.ParquetWriter(target, schema) as writer:
                for shard in shard_tables(outputs, schema):
                    writer.write_table(shard)


def child(mode: str, folder: Path, shards: int) -> None:
    """One measured build: prints wall time, peak RSS, rows and digest as one JSON line."""
    spec = _spec()
    files = [UPath(p) for p in sorted(folder.glob("events-*.parquet"))]
    plan = pd.read_parquet(folder / "split_plan.parquet")
    paths = {t.name: str(folder / f"{t.name}.parquet") for t in feature_tables(spec)}
    execution = ExecutionSpec(shards=shards, storage=str(folder / "shards"))
    engine = LocalEngine(resolve_execution(execution, folder, environ={}))
    target = UPath(folder / f"set-{mode}.parquet")
    started = time.perf_counter()
    if mode == "shards":  # as the asset does
        rows, end = log_size_and_end(files, spec.events.timestamp)
        events = EventFiles(tuple(files), tuple(log_columns(files)), rows, end)
        with training_rows(spec, MODEL, events, engine=engine) as labels:
            written = write_training_set(spec, MODEL, labels, plan, paths, target)
    else:
        # the events unnamed, gone once the label rows are drawn
        wanted = label_event_columns(spec, MODEL, log_columns(files))
        with training_rows(spec, MODEL, read_events(files, wanted)) as labels:
            if mode == "labels-whole":  # the join and the set as the sharded build does
                size = sum(pq.read_metadata(str(f)).num_rows for f in files)
                labels = replace(labels, sharding=plan_sharding(engine, size, "bench"))
            written = write_training_set(spec, MODEL, labels, plan, paths, target)
    wall = time.perf_counter() - started
    peak = peak_rss_gib()  # before the digest, which reads the file back whole
    digest = int(pd.util.hash_pandas_object(pd.read_parquet(target), index=True).sum())
    target.unlink()
    print(json.dumps({"rows": written.rows, "digest": digest, "wall_s": wall, "peak_gib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="what to run (labels-whole, the baseline, always runs): one-pass needs ~1.5 GiB"
        " a million events",
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.shards)
        return
    folder = Path(tempfile.mkdtemp(prefix="playbook-training-shards-"))
    try:
        started = time.perf_counter()
        prepare(args.events, args.days, folder)
        rows = sum(pq.read_metadata(f).num_rows for f in folder.glob("events-*.parquet"))
        table_rows = {
            t.name: len(pd.read_parquet(folder / f"{t.name}.parquet", columns=list(t.keys)))
            for t in feature_tables(_spec())
        }
        print(
            f"{rows:,} fraud events, feature rows {table_rows}, ready in {time.perf_counter() - started:.0f} s"
        )
        modes = [m for m in MODES if m in args.modes or m == "labels-whole"]
        runs = {
            mode: measure_child(__file__, mode, folder, "--shards", str(args.shards))
            for mode in modes
        }
        base = runs["labels-whole"]
        for mode, run in runs.items():
            extra = f"  ({args.shards} shards)" if mode != "one-pass" else ""
            line = run_line(mode, run, base, "labels-whole", width=12)
            print(f"{line}  {run['rows']:>9,} rows{extra}")
        same = all(run["digest"] == base["digest"] for run in runs.values())
        print(f"  same set (rows, order, values) in every mode: {same}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
