"""Scale benchmark of the feature stage: today's one-frame path against shards, out of core.

For each ``--events`` size, the fraud world's days are generated once and written as daily
Parquet files (as ``raw_events`` stores them). Then each path runs in its own subprocess, so that
peak RSS is that run's alone:

* ``frame``: today's asset path: every day read into one DataFrame, each aggregate table
  computed by ``assets.features.views.compute_aggregate_table``, written as one Parquet file.
* ``shards``: the days streamed into shards of whole entities (``runtime.shards.split_parquet``),
  each shard aggregated on its own by the local engine (``compute_aggregates`` inside), each
  shard's rows written to its own Parquet file; nothing is ever concatenated.

It prints wall time, CPU time, peak RSS and output rows per run, checks that both paths wrote
the same rows (count and column sums), and the slopes between sizes: time as the log-log slope
(1.0 = linear) and memory as GiB per extra million events.

    python bench/scale.py --events 1000000 2000000
    python bench/scale.py --events 1000000 4000000 --shard-events 250000
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.features.aggregates import compute_aggregates, plan_aggregates  # noqa: E402
from assets.features.availability import outcome_axes, with_arrival_times  # noqa: E402
from assets.features.views import compute_aggregate_table, feature_tables  # noqa: E402
from assets.raw.synthetic import build_world  # noqa: E402
from bench.generate import START, sized_params  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402
from runtime.shards import run_local, split_parquet  # noqa: E402

CREATED = pd.Timestamp("2030-01-01")


def _spec():
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    return spec


def generate(events: int, days: int, folder: Path) -> list[Path]:
    """The fraud world's days as daily Parquet files; generated once per size."""
    folder.mkdir(parents=True, exist_ok=True)
    world = build_world(sized_params("fraud", events, days), 0, START, days)
    paths = []
    for i in range(days):
        paths.append(folder / f"day-{i:03d}.parquet")
        world.events_for_day(START + timedelta(days=i)).to_parquet(paths[-1], index=False)
    return paths


def _sums(frame: pd.DataFrame) -> dict[str, float]:
    return {c: float(frame[c].sum()) for c in frame.columns if frame[c].dtype.kind in "if"}


def run_frame(days: list[Path], out: Path) -> dict:
    """Today: one DataFrame in, one DataFrame per table out (as the asset and IO manager do)."""
    spec = _spec()
    events = pd.concat([pd.read_parquet(p) for p in days], ignore_index=True)
    rows, sums = 0, {}
    for table in feature_tables(spec):
        if table.kind == "aggregates":
            frame = compute_aggregate_table(spec, table, events, CREATED)
            frame.to_parquet(out / f"{table.name}.parquet", index=False)
            rows += len(frame)
            sums.update({f"{table.name}.{k}": v for k, v in _sums(frame).items()})
            del frame
    return {"rows": rows, "sums": sums}


def aggregate_day_shard(source: str, target: str, *, spec, plans, keys, ratios, until) -> int:
    """One shard of raw events: arrival times added (row-wise), aggregated, written."""
    events = with_arrival_times(spec, pd.read_parquet(source))
    table = compute_aggregates(events, keys, plans, CREATED, ratios, until)
    table.to_parquet(target, index=False)
    return len(table)


def run_shards(days: list[Path], out: Path, shard_events: int) -> dict:
    """Out of core: stream days into shards, aggregate shard by shard, never concatenate."""
    spec = _spec()
    timestamp = spec.events.timestamp
    dataset = pads.dataset([str(p) for p in days], format="parquet")
    total = dataset.count_rows()
    until = pd.Timestamp(dataset.to_table(columns=[timestamp]).column(0).to_pandas().max())
    shards = max(1, math.ceil(total / shard_events))
    rows, sums = 0, {}
    for table in feature_tables(spec):
        if table.kind != "aggregates":
            continue
        view = spec.features[table.view]
        function = partial(
            aggregate_day_shard,
            spec=spec,
            plans=tuple(plan_aggregates(view, outcome_axes(spec), timestamp)),
            keys=table.keys,
            ratios=tuple((r.name, r.numerator, r.denominator) for r in view.ratios),
            until=until,
        )
        folder = out / table.name
        results = run_local(function, split_parquet(days, table.keys, shards, folder))
        rows += sum(r.rows for r in results)
        table_sums: dict[str, float] = {}
        for result in results:  # one shard's output in memory at a time
            for key, value in _sums(pd.read_parquet(result.output)).items():
                table_sums[key] = table_sums.get(key, 0.0) + value
        sums.update({f"{table.name}.{k}": v for k, v in table_sums.items()})
    return {"rows": rows, "sums": sums, "shards": shards}


def child(mode: str, folder: Path, shard_events: int) -> None:
    """One measured run: prints wall, CPU, peak RSS and rows as one JSON line."""
    days = sorted(folder.glob("day-*.parquet"))
    out = Path(tempfile.mkdtemp(prefix=f"scale-{mode}-", dir=folder.parent))
    started, cpu = time.perf_counter(), time.process_time()
    try:
        result = run_frame(days, out) if mode == "frame" else run_shards(days, out, shard_events)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(
        wall_s=time.perf_counter() - started,
        cpu_s=time.process_time() - cpu,
        peak_gib=usage.ru_maxrss / 1024**2,
    )
    print(json.dumps(result))


def measure(mode: str, folder: Path, shard_events: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder)]
    command += ["--shard-events", str(shard_events)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same(a: dict, b: dict) -> bool:
    if a["rows"] != b["rows"] or a["sums"].keys() != b["sums"].keys():
        return False
    return all(math.isclose(a["sums"][k], b["sums"][k], rel_tol=1e-9) for k in a["sums"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--shard-events", type=int, default=500_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=["frame", "shards"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.shard_events)
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="playbook-scale-"))
    measured: dict[int, dict[str, dict]] = {}
    try:
        for events in args.events:
            folder = workdir / f"events-{events}"
            started = time.perf_counter()
            days = generate(events, args.days, folder)
            rows = pads.dataset([str(p) for p in days], format="parquet").count_rows()
            print(
                f"{rows:,} fraud events in {args.days} days, generated in {time.perf_counter() - started:.0f} s"
            )
            runs = {mode: measure(mode, folder, args.shard_events) for mode in ("frame", "shards")}
            measured[rows] = runs
            for mode, run in runs.items():
                extra = f"  ({run['shards']} shards)" if "shards" in run else ""
                print(
                    f"  {mode:<6} wall {run['wall_s']:7.1f} s  cpu {run['cpu_s']:7.1f} s  "
                    f"peak RSS {run['peak_gib']:5.2f} GiB  {run['rows']:>12,} rows out{extra}"
                )
            print(f"  same rows and column sums: {_same(runs['frame'], runs['shards'])}")
            shutil.rmtree(folder, ignore_errors=True)
        sizes = sorted(measured)
        for small, large in zip(sizes, sizes[1:], strict=False):
            for mode in ("frame", "shards"):
                a, b = measured[small][mode], measured[large][mode]
                ratio = math.log(large / small)
                print(
                    f"{mode:<6} {small / 1e6:g}M -> {large / 1e6:g}M: wall slope"
                    f" {math.log(b['wall_s'] / a['wall_s']) / ratio:.2f}, cpu slope"
                    f" {math.log(b['cpu_s'] / a['cpu_s']) / ratio:.2f}, memory"
                    f" {(b['peak_gib'] - a['peak_gib']) / ((large - small) / 1e6):+.2f} GiB per"
                    f" million events (peak ratio {b['peak_gib'] / a['peak_gib']:.2f}x)"
                )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
