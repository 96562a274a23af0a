"""What running the feature stage's shards on Ray costs against one process, and what it would buy.

The fraud world's days (``--events``, written once as ``raw_events`` day files, as
``bench/scale.py`` writes them) go through the out-of-core aggregate path the feature asset takes
(:func:`assets.features.aggregates.aggregate_files_sharded`) twice per aggregate table, with the
same shard count: once on the local engine (shards one after another in this process) and once
on a real 2-node Ray cluster on 127.0.0.1 (``tests.ray_cluster.loopback_cluster``: a head and a
worker node, 1 CPU each, started and stopped here). Both runs' outputs are checked to be the same
rows (count and column sums).

On this 2-core machine two nodes cannot be faster than one process: the driver, both nodes'
raylets and the generator share the cores. So the report separates what is Ray's from what is
the work:

* ``task s`` -- the seconds shards spent inside the shard function (timed by the task itself),
  summed, per engine; their ratio is the slowdown of a shard on Ray (two busy nodes on two
  cores, page cache shared);
* ``per-task overhead`` -- Ray's wall time times its CPUs, less the task seconds, per task: what
  scheduling, shipping the function, starting workers and collecting results cost per shard;
* ``projected`` -- the stage's time on N nodes from the local run's own figures: its serial part
  (splitting the log into shards, which stays on the driver) plus the local task seconds spread
  over N nodes plus the measured overhead for each node's share of the tasks. It assumes shards
  of even size and storage that keeps up; it is a projection, not a measurement.

    python bench/ray_overhead.py --events 4000000
    python bench/ray_overhead.py --events 200000 --shard-events 25000   # a quick look
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.features.views import aggregate_table_files, feature_tables  # noqa: E402
from bench.scale import CREATED, _same, _spec, _sums, generate  # noqa: E402
from configs.schema.execution import ExecutionSpec  # noqa: E402
from runtime.shards import ShardResult, open_engine, resolve_execution  # noqa: E402
from tests.ray_cluster import loopback_cluster  # noqa: E402

SHARD_MODULES = ("assets.features.aggregates", "assets.features.availability")
NODES = (1, 2, 4, 8, 16, 32)


@dataclass
class Run:
    """One engine's pass over every aggregate table."""

    wall_s: float
    results: list[ShardResult]
    rows: int
    sums: dict[str, float]

    @property
    def task_s(self) -> float:
        return sum(r.seconds for r in self.results)


def run_engine(home: Path, days: list[Path], shards: int, address: str | None) -> Run:
    """Every aggregate table of the fraud use case through one engine; outputs summed."""
    spec = _spec()
    timestamp = spec.events.timestamp
    dataset = pads.dataset([str(p) for p in days], format="parquet")
    total = dataset.count_rows()
    until = pd.Timestamp(dataset.to_table(columns=[timestamp]).column(0).to_pandas().max())
    settings = ExecutionSpec(
        engine="ray" if address else "local",
        address=address,
        shards=shards,
        storage=str(home / "shards"),
    )
    execution = resolve_execution(settings, home)
    results: list[ShardResult] = []
    rows, sums = 0, {}
    started = time.perf_counter()
    with open_engine(execution, SHARD_MODULES) as engine:
        for table in feature_tables(spec):
            if table.kind != "aggregates":
                continue
            with aggregate_table_files(
                spec, table, days, CREATED, engine, f"bench/{table.name}", rows=total, until=until
            ) as done:
                results.extend(done)
                for result in done:  # one shard's output in memory at a time
                    rows += result.rows
                    for key, value in _sums(pd.read_parquet(result.output)).items():
                        name = f"{table.name}.{key}"
                        sums[name] = sums.get(name, 0.0) + value
    return Run(time.perf_counter() - started, results, rows, sums)


def report(events: int, local: Run, ray: Run, cpus: int, split_s: float) -> str:
    tasks = len(ray.results)
    overhead = (ray.wall_s * cpus - ray.task_s) / tasks
    nodes = sorted({r.node for r in ray.results})
    per_node = [sum(1 for r in ray.results if r.node == n) for n in nodes]
    lines = [
        f"== {events:,} events, {tasks} shard tasks, load {os.getloadavg()[0]:.1f} ==",
        "| engine | wall s | task s (sum) | tasks | nodes (tasks each) |",
        "|---|---|---|---|---|",
        f"| local | {local.wall_s:.1f} | {local.task_s:.1f} | {len(local.results)} | 1 |",
        f"| ray, 2 nodes x 1 CPU | {ray.wall_s:.1f} | {ray.task_s:.1f} | {tasks}"
        f" | {len(nodes)} ({'+'.join(map(str, per_node))}) |",
        "",
        f"ray / local wall: {ray.wall_s / local.wall_s:.2f}x;"
        f" a shard on Ray takes {ray.task_s / local.task_s:.2f}x its local time",
        f"per-task overhead on Ray: {overhead:.2f} s"
        f" ((wall x {cpus} CPUs - task s) / {tasks} tasks)",
        f"same rows and sums: {_same(vars(local), vars(ray))}",
        "",
        f"projected stage time on N nodes (serial part {split_s:.1f} s, local task s spread,"
        " the overhead per task each node runs):",
    ]
    for n in NODES:
        projected = split_s + local.task_s / n + overhead * math.ceil(tasks / n)
        lines.append(f"  N={n:>2}: {projected:7.1f} s  speed-up {local.wall_s / projected:5.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--shard-events", type=int, default=250_000)
    parser.add_argument("--folder", type=Path, default=None, help="reuse generated days here")
    args = parser.parse_args()
    home = args.folder or Path(tempfile.mkdtemp(prefix="playbook-ray-overhead-"))
    days = sorted(home.joinpath("tables", "fraud", "raw_events").glob("*.parquet"))
    if not days:
        print(f"generating {args.events:,} events into {home} ...", flush=True)
        days = generate(args.events, args.days, home)
    shards = max(1, math.ceil(args.events / args.shard_events))
    local = run_engine(home, days, shards, None)
    print(f"local: {local.wall_s:.1f} s", flush=True)
    with loopback_cluster() as cluster:
        ray = run_engine(home, days, shards, cluster.address)
    print(f"ray: {ray.wall_s:.1f} s", flush=True)
    # the serial part: the local wall less the time inside shard tasks (splitting, reading back)
    split_s = max(0.0, local.wall_s - local.task_s)
    print(report(args.events, local, ray, 2, split_s))


if __name__ == "__main__":
    main()
