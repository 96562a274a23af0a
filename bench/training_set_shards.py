"""Peak memory and time of the fraud training-set build: held whole against written in chunks.

The fraud world's events (``--events`` over ``--days``) are generated once, its feature tables
(aggregates and attributes) and split plan written as the assets write them. Then the scorer's
training set is written to a file, as the asset writes it, each run in its own subprocess so
that peak RSS is that run's alone. Every run reads the events as the asset does: only the
columns its label rows use, let go once the label rows are drawn.

* ``one-pass``: ``write_training_set`` without an engine: the one-pass join, the set finished
  whole (the default path of a log under 500k events);
* ``shards-whole``: a local engine of ``--shards`` shards, the join's answer read back and the
  set finished in one chunk of every label row: the sharded build as it was before the set was
  written in chunks (the baseline);
* ``shards``: the same shards, the answer read back and the set finished and written
  ``CHUNK_ROWS`` label rows at a time (what the asset does).

It prints wall time, peak RSS (the events' read included) and a digest of each written file
read back (equal digests: the same rows, in order).

    python bench/training_set_shards.py --events 1000000 --shards 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from upath import UPath

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.features.views import (  # noqa: E402
    compute_aggregate_table,
    compute_attribute_table,
    feature_tables,
)
from assets.raw.event_log import log_columns, read_events  # noqa: E402
from assets.raw.synthetic import build_world  # noqa: E402
from assets.split.plan import plan_split  # noqa: E402
from assets.training.build import training_rows, write_training_set  # noqa: E402
from assets.training.label_rows import label_event_columns  # noqa: E402
from assets.training.sharded_join import CHUNK_ROWS  # noqa: E402
from bench.generate import START, sized_params  # noqa: E402
from bench.peak_memory import peak_rss_gib  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402
from configs.schema.execution import ExecutionSpec  # noqa: E402
from runtime.shards import LocalEngine, resolve_execution  # noqa: E402

CREATED = pd.Timestamp("2030-01-01")
MODEL = "scorer"
MODES = ("one-pass", "shards-whole", "shards")


def _spec():
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    return spec


def prepare(events: int, days: int, folder: Path) -> None:
    """Events, feature tables and split plan as Parquet files, generated once."""
    spec = _spec()
    world = build_world(sized_params("fraud", events, days), 0, START, days)
    frame = pd.concat(
        [world.events_for_day(START + timedelta(days=i)) for i in range(days)],
        ignore_index=True,
    )
    frame.to_parquet(folder / "events.parquet", index=False)
    for table in feature_tables(spec):
        if table.kind == "aggregates":
            out = compute_aggregate_table(spec, table, frame, CREATED)
        else:
            source = world.entity_table(spec.entities[table.entities[0]].table)
            out = compute_attribute_table(spec, table, source, CREATED)
        out.to_parquet(folder / f"{table.name}.parquet", index=False)
    labels = {name: label.column for name, label in spec.labels.items()}
    plan_split(frame, spec.split, spec.events.timestamp, None, labels).to_parquet(
        folder / "split_plan.parquet", index=False
    )


def child(mode: str, folder: Path, shards: int) -> None:
    """One measured build: prints wall time, peak RSS, rows and digest as one JSON line."""
    spec = _spec()
    files = [UPath(folder / "events.parquet")]
    plan = pd.read_parquet(folder / "split_plan.parquet")
    paths = {t.name: str(folder / f"{t.name}.parquet") for t in feature_tables(spec)}
    engine = None
    if mode != "one-pass":
        execution = ExecutionSpec(shards=shards, storage=str(folder / "shards"))
        engine = LocalEngine(resolve_execution(execution, folder, environ={}))
    chunk_rows = 1 << 62 if mode == "shards-whole" else CHUNK_ROWS
    target = UPath(folder / f"set-{mode}.parquet")
    started = time.perf_counter()
    # as the asset does: the events unnamed, gone once the label rows are drawn
    wanted = label_event_columns(spec, MODEL, log_columns(files))
    rows = training_rows(spec, MODEL, read_events(files, wanted), engine=engine)
    written = write_training_set(spec, MODEL, rows, plan, paths, target, chunk_rows=chunk_rows)
    wall = time.perf_counter() - started
    peak = peak_rss_gib()  # before the digest, which reads the file back whole
    digest = int(pd.util.hash_pandas_object(pd.read_parquet(target), index=True).sum())
    target.unlink()
    print(json.dumps({"rows": written.rows, "digest": digest, "wall_s": wall, "peak_gib": peak}))


def measure(mode: str, folder: Path, shards: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder)]
    command += ["--shards", str(shards)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--shards", type=int, default=8)
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
        rows = len(pd.read_parquet(folder / "events.parquet", columns=["card_id"]))
        table_rows = {
            t.name: len(pd.read_parquet(folder / f"{t.name}.parquet", columns=list(t.keys)))
            for t in feature_tables(_spec())
        }
        print(
            f"{rows:,} fraud events, feature rows {table_rows}, ready in {time.perf_counter() - started:.0f} s"
        )
        runs = {mode: measure(mode, folder, args.shards) for mode in MODES}
        base = runs["shards-whole"]
        for mode, run in runs.items():
            extra = f"  ({args.shards} shards)" if mode != "one-pass" else ""
            print(
                f"  {mode:<12} wall {run['wall_s']:6.1f} s  peak RSS {run['peak_gib']:5.2f} GiB"
                f" ({run['peak_gib'] / base['peak_gib']:.2f}x shards-whole,"
                f" time {run['wall_s'] / base['wall_s']:.2f}x)"
                f"  {run['rows']:>9,} rows{extra}"
            )
        same = all(run["digest"] == base["digest"] for run in runs.values())
        print(f"  same set (rows, order, values) in every mode: {same}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
