"""Peak memory and time of the drift report's event drift: the training period read whole
against read one day file at a time.

The fraud world's events (``--events`` over ``--days``) are generated a day at a time and
written as one Parquet file per day, as ``raw_events`` writes them; the split plan is counted
from the files as its asset counts it. Then the event drift of the drift report (PSI of every
watched column and the volume and label-rate shifts, the recent window against the training
period) is computed in each mode, each in its own subprocess so that peak RSS is that run's
alone:

* ``whole``: the training period's drift columns read whole into one frame, then fitted and
  counted (the drift report before; the baseline);
* ``chunks``: the period handed on as chunks, one day file's rows at a time, read again by
  each pass of the fit and the shifts (what the asset does).

It prints wall time, peak RSS and a digest of the PSI table and the shifts (equal digests: the
same report).

    python bench/drift_reference.py --events 4000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.monitoring.drift import event_drift, shifts  # noqa: E402
from assets.monitoring.drift_events import drift_periods  # noqa: E402
from assets.raw.event_log import log_size_and_end, read_events  # noqa: E402
from assets.raw.synthetic import build_world  # noqa: E402
from assets.split.split_plan_assets import mature_split_plan  # noqa: E402
from bench.generate import START, sized_params  # noqa: E402
from bench.peak_memory import measure_child, peak_rss_gib, run_line  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402

MODES = ("whole", "chunks")


def _spec():
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    return spec


def _files(folder: Path) -> list[UPath]:
    return [UPath(p) for p in sorted(folder.glob("events-*.parquet"))]


def prepare(events: int, days: int, folder: Path) -> None:
    """Day files generated a day at a time, and the split plan counted from them."""
    spec = _spec()
    world = build_world(sized_params("fraud", events, days), 0, START, days)
    for i in range(days):
        day = START + timedelta(days=i)
        world.events_for_day(day).to_parquet(folder / f"events-{day:%Y-%m-%d}.parquet", index=False)
    files = _files(folder)
    _, end = log_size_and_end(files, spec.events.timestamp)
    plan = mature_split_plan(spec, files, end)
    plan.to_parquet(folder / "split_plan.parquet", index=False)


def child(mode: str, folder: Path) -> None:
    """One measured report: prints wall time, peak RSS, rows and digest as one JSON line."""
    spec = _spec()
    files = _files(folder)
    plan = pd.read_parquet(folder / "split_plan.parquet")
    started = time.perf_counter()
    reference, window = drift_periods(spec, files, plan)
    if mode == "whole":  # the period's rows of every file, in one frame
        train = plan[plan["split"] == "train"].iloc[0]
        reference = read_events(
            files,
            reference.columns,
            str(spec.events.timestamp),
            start=pd.Timestamp(train["window_start"]),
            end=pd.Timestamp(train["window_end"]),
        )
    table = event_drift(spec, reference, window).table
    changes = shifts(spec, reference, window)
    wall = time.perf_counter() - started
    digest = int(pd.util.hash_pandas_object(table.astype(str)).sum())
    digest ^= int(pd.util.hash_pandas_object(changes.astype(str)).sum())
    rows = int(table["reference_rows"].iloc[0])
    print(json.dumps({"rows": rows, "digest": digest, "wall_s": wall, "peak_gib": peak_rss_gib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder)
        return
    folder = Path(tempfile.mkdtemp(prefix="playbook-drift-reference-"))
    try:
        started = time.perf_counter()
        prepare(args.events, args.days, folder)
        rows = sum(pq.read_metadata(f).num_rows for f in folder.glob("events-*.parquet"))
        print(
            f"{rows:,} fraud events in {args.days} day files, ready in"
            f" {time.perf_counter() - started:.0f} s"
        )
        runs = {mode: measure_child(__file__, mode, folder) for mode in MODES if mode in args.modes}
        base = runs.get("whole")
        for mode, run in runs.items():
            line = run_line(mode, run, base, "whole")
            print(f"{line}  {run['rows']:>10,} reference rows")
        same = len({run["digest"] for run in runs.values()}) == 1
        print(f"  same PSI table and shifts in every mode: {same}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
