"""Scale benchmark of the feature stage: the one-frame path against shards, out of core.

For each ``--events`` size, the fraud world's days are generated once and written as daily
Parquet files (as ``raw_events`` stores them). Then each path runs in its own subprocess, so that
peak RSS is that run's alone:

* ``frame``: the in-memory path (the asset's before it went out of core): every day read into
  one DataFrame, each aggregate table computed by
  ``assets.features.views.compute_aggregate_table``, written as one Parquet file.
* ``shards``: the days streamed into shards of whole entities (``runtime.shards.split_parquet``),
  each shard aggregated on its own by the local engine (``compute_aggregates`` inside), each
  shard's rows written to its own Parquet file; nothing is ever concatenated. The engine's
  floor: what a stage that never holds the whole log would cost.
* ``asset``: the feature stage as a user runs it: the ``features/<view>`` assets materialized by
  Dagster over the same daily files (they are laid out as ``raw_events`` partitions of a home),
  with ``execution.shards`` set to the same shard count: finding the day files, the sharded
  aggregates, writing the table shard by shard, the shard-wise quality check and metadata
  included. Out of core like ``shards``; what it adds is Dagster and Great Expectations.

It prints wall time, CPU time, peak RSS and output rows per run (with the machine's load average
beside each, since the time figures depend on it), checks that every path wrote the same rows
(count and column sums), and the slopes between sizes: time as the log-log slope (1.0 = linear)
and memory as GiB per extra million events. ``--timeline`` adds, for the asset runs, the RSS
when each Dagster step event happened (what holds the memory, stage by stage). A run whose peak,
extrapolated from the sizes before it (``_fits``), would not fit in the memory available now is
skipped: start with two sizes before a large one (``--events 1000000 4000000 50000000``).

    python bench/scale.py --events 1000000 2000000
    python bench/scale.py --events 1000000 4000000 --shard-events 250000 --modes shards asset
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from upath import UPath

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.features.aggregates import compute_aggregates, plan_aggregates  # noqa: E402
from assets.features.availability import outcome_axes, with_arrival_times  # noqa: E402
from assets.features.views import compute_aggregate_table, feature_tables  # noqa: E402
from assets.raw.synthetic import build_world  # noqa: E402
from bench.generate import START, sized_params  # noqa: E402
from bench.peak_memory import peak_rss_gib  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402
from configs.schema.execution import ExecutionSpec  # noqa: E402
from dagster_project.loader import resources, use_case_assets  # noqa: E402
from runtime import layout  # noqa: E402
from runtime.shards import run_local, split_parquet  # noqa: E402

CREATED = pd.Timestamp("2030-01-01")
MODES = ("frame", "shards", "asset")
MEMORY_HEADROOM = 0.7  # a run may use at most this share of the memory available when it starts


def _spec():
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    return spec


def _raw_events(home: Path) -> Path:
    return home.joinpath("tables", *layout.raw_events_key("fraud"))


def generate(events: int, days: int, home: Path) -> list[Path]:
    """The fraud world's days as the ``raw_events`` partitions of a home; once per size."""
    folder = _raw_events(home)
    folder.mkdir(parents=True, exist_ok=True)
    world = build_world(sized_params("fraud", events, days), 0, START, days)
    paths = []
    for i in range(days):
        day = START + timedelta(days=i)
        paths.append(folder / f"{day.isoformat()}.parquet")
        world.events_for_day(day).to_parquet(paths[-1], index=False)
    return paths


def _sums(frame: pd.DataFrame) -> dict[str, float]:
    return {c: float(frame[c].sum()) for c in frame.columns if frame[c].dtype.kind in "if"}


def run_frame(days: list[Path], out: Path) -> dict:
    """One DataFrame in, one DataFrame per table out (the asset's path before it went out of
    core: the IO manager loading the log, the table returned whole)."""
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


def _streamed_sums(path: Path) -> dict[str, float]:
    """Column sums of a Parquet file, one row group at a time (no whole table in memory)."""
    sums: dict[str, float] = {}
    for batch in pq.ParquetFile(path).iter_batches():
        for key, value in _sums(batch.to_pandas()).items():
            sums[key] = sums.get(key, 0.0) + value
    return sums


class RssSampler:
    """This process's resident memory every ``period`` seconds, on a daemon thread."""

    def __init__(self, period: float = 0.2) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * page / 1024**3
            self.samples.append((time.time(), rss))
            self._stop.wait(period)

    def peak_between(self, start: float, end: float) -> float:
        """The highest sample in [start, end], else the last one before ``end``."""
        inside = [rss for t, rss in self.samples if start <= t <= end]
        before = [rss for t, rss in self.samples if t < start]
        return max(inside) if inside else (before[-1] if before else float("nan"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_asset(home: Path, days: list[Path], shard_events: int, sampler: RssSampler) -> dict:
    """The ``features/<view>`` assets of the fraud use case, materialized by Dagster."""
    base = _spec()
    total = pads.dataset([str(p) for p in days], format="parquet").count_rows()
    shards = max(1, math.ceil(total / shard_events))
    source = base.source.model_copy(update={"start_date": START, "days": len(days)})
    execution = ExecutionSpec(shards=shards, storage=str(home / "shards"))
    spec = base.model_copy(update={"source": source, "execution": execution}).with_path(base.path)
    tables = [t for t in feature_tables(spec) if t.kind == "aggregates"]
    keys = [dg.AssetKey(layout.feature_table_key(spec.name, t.name)) for t in tables]
    instance = dg.DagsterInstance.ephemeral()
    started = time.time()
    result = dg.materialize(
        use_case_assets(spec),
        selection=keys,
        resources=resources(UPath(home)),
        instance=instance,
    )
    if not result.success:
        raise SystemExit("the feature assets failed")
    peak = peak_rss_gib()  # before the sums below read anything
    # RSS at each step event: how much each part of the stage holds
    timeline, previous = [], started
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        kinds = ("STEP_START", "LOADED_INPUT", "STEP_OUTPUT", "HANDLED_OUTPUT", "STEP_SUCCESS")
        if event and event.step_key and event.event_type_value in kinds:
            stamp = entry.timestamp
            timeline.append(
                {
                    "step": event.step_key.rsplit("__", 1)[-1],
                    "event": event.event_type_value,
                    "at_s": round(stamp - started, 1),
                    "peak_since_previous_gib": round(sampler.peak_between(previous, stamp), 2),
                }
            )
            previous = stamp
    rows, sums = 0, {}
    for table in tables:
        path = home.joinpath("tables", *layout.feature_table_key(spec.name, table.name))
        path = path.with_suffix(".parquet")
        rows += pq.ParquetFile(path).metadata.num_rows
        sums.update({f"{table.name}.{k}": v for k, v in _streamed_sums(path).items()})
        path.unlink()
    return {"rows": rows, "sums": sums, "shards": shards, "timeline": timeline, "peak_gib": peak}


def child(mode: str, home: Path, shard_events: int) -> None:
    """One measured run: prints wall, CPU, peak RSS and rows as one JSON line."""
    days = sorted(_raw_events(home).glob("*.parquet"))
    out = Path(tempfile.mkdtemp(prefix=f"scale-{mode}-", dir=home.parent))
    sampler = RssSampler()
    started, cpu = time.perf_counter(), time.process_time()
    try:
        if mode == "frame":
            result = run_frame(days, out)
        elif mode == "shards":
            result = run_shards(days, out, shard_events)
        else:
            result = run_asset(home, days, shard_events, sampler)
    finally:
        sampler.stop()
        shutil.rmtree(out, ignore_errors=True)
    peak = result.pop("peak_gib", None) or peak_rss_gib()
    result.update(
        wall_s=time.perf_counter() - started, cpu_s=time.process_time() - cpu, peak_gib=peak
    )
    print(json.dumps(result))


def _available_gib() -> float:
    """MemAvailable of /proc/meminfo: what a new process can take without swapping others out."""
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) / 1024**2


def _load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def measure(mode: str, home: Path, shard_events: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--folder", str(home)]
    command += ["--shard-events", str(shard_events)]
    load_before = _load()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load"] = f"{load_before} -> {_load()}"
    return result


def _same(a: dict, b: dict) -> bool:
    if a["rows"] != b["rows"] or a["sums"].keys() != b["sums"].keys():
        return False
    # float sums of tens of millions of rows differ in the last bits between summation orders
    return all(math.isclose(a["sums"][k], b["sums"][k], rel_tol=1e-6) for k in a["sums"])


def _fits(mode: str, events: int, measured: dict[int, dict[str, dict]]) -> str | None:
    """Why ``mode`` is skipped at ``events`` (its peak, extrapolated from the sizes measured so
    far, exceeds the headroom of the memory available now), or None.

    With two sizes or more, along the line through the two largest (an out-of-core peak that
    barely grows is not projected to grow in proportion to the log); with one, in proportion.
    """
    earlier = sorted(n for n in measured if n < events and mode in measured[n])
    if not earlier:
        return None
    largest = earlier[-1]
    peak = measured[largest][mode]["peak_gib"]
    if len(earlier) > 1:
        below = earlier[-2]
        growth = max(0.0, (peak - measured[below][mode]["peak_gib"]) / (largest - below))
        expected = peak + growth * (events - largest)
    else:
        expected = peak * events / largest
    available = _available_gib()
    if expected <= MEMORY_HEADROOM * available:
        return None
    return f"skipped: ~{expected:.1f} GiB expected, {available:.1f} GiB available"


def _print_run(mode: str, run: dict, events: int, timeline: bool) -> None:
    extra = f"  ({run['shards']} shards)" if "shards" in run else ""
    print(
        f"  {mode:<6} wall {run['wall_s']:7.1f} s  cpu {run['cpu_s']:7.1f} s  "
        f"peak RSS {run['peak_gib']:5.2f} GiB  {run['rows']:>12,} rows out"
        f" ({run['rows'] / events:.2f} per event){extra}  load {run['load']}"
    )
    for point in run.get("timeline", []) if timeline else []:
        print(
            f"         {point['at_s']:7.1f} s  {point['step']:<22} {point['event']:<28}"
            f" peak RSS since previous event {point['peak_since_previous_gib']:5.2f} GiB"
        )


def _print_slopes(measured: dict[int, dict[str, dict]]) -> None:
    sizes = sorted(measured)
    for small, large in zip(sizes, sizes[1:], strict=False):
        for mode in MODES:
            if mode not in measured[small] or mode not in measured[large]:
                continue
            a, b = measured[small][mode], measured[large][mode]
            ratio = math.log(large / small)
            print(
                f"{mode:<6} {small / 1e6:g}M -> {large / 1e6:g}M: wall slope"
                f" {math.log(b['wall_s'] / a['wall_s']) / ratio:.2f}, cpu slope"
                f" {math.log(b['cpu_s'] / a['cpu_s']) / ratio:.2f}, memory"
                f" {(b['peak_gib'] - a['peak_gib']) / ((large - small) / 1e6):+.2f} GiB per"
                f" million events (peak ratio {b['peak_gib'] / a['peak_gib']:.2f}x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--shard-events", type=int, default=500_000)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--timeline", action="store_true", help="RSS per step event (asset)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.shard_events)
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="playbook-scale-"))
    measured: dict[int, dict[str, dict]] = {}
    try:
        for events in args.events:
            home = workdir / f"events-{events}"
            started = time.perf_counter()
            days = generate(events, args.days, home)
            rows = pads.dataset([str(p) for p in days], format="parquet").count_rows()
            print(
                f"{rows:,} fraud events in {args.days} days, generated in"
                f" {time.perf_counter() - started:.0f} s (load {_load()})",
                flush=True,
            )
            runs: dict[str, dict] = {}
            for mode in args.modes:
                skipped = _fits(mode, rows, measured)
                if skipped:
                    print(f"  {mode:<6} {skipped}", flush=True)
                    continue
                runs[mode] = measure(mode, home, args.shard_events)
                _print_run(mode, runs[mode], rows, args.timeline)
                sys.stdout.flush()
            measured[rows] = runs
            if len(runs) > 1:
                first, *others = runs.values()
                same = all(_same(first, other) for other in others)
                print(f"  same rows and column sums ({', '.join(runs)}): {same}", flush=True)
            shutil.rmtree(home, ignore_errors=True)
        _print_slopes(measured)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
