"""Feature-computation benchmark: every feature table of a shipped use case over N events.

Generates ``--events`` rows with the use case's synthetic world (sized as ``bench/generate.py``
does), then computes each windowed-aggregate table with the same function the feature assets
call, printing rows in, rows out, seconds and events per second per table.

    python bench/features.py --use-case fraud                 # 10M events
    python bench/features.py --use-case feed --events 1000000
    python bench/features.py --events 1000000 --hop exact auto  # hopped windows against exact

With several ``--hop`` values every table is computed once per value (a view's ``hop``: exact
windows, Chronon's sawtooth ``auto``, or a duration), one after the other in this process, and
each line after the first gives its rows and seconds as a ratio of the first value's.
``--every-change-point`` puts a baseline first: the first hop's table with every change point
kept, the rows that repeat the row before them included (what the tables held before those were
left out), so the ratios then say what leaving them out saves and costs.

    python bench/features.py --events 1000000 --every-change-point --hop exact auto
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.features.views import compute_aggregate_table, feature_tables  # noqa: E402
from assets.raw.synthetic import build_world  # noqa: E402
from bench.generate import START, USE_CASES, sized_params  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--use-case", choices=USE_CASES, default="fraud")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hop",
        nargs="+",
        default=None,
        help="views' hop: exact, auto or a duration (default: the YAML's)",
    )
    parser.add_argument(
        "--every-change-point",
        action="store_true",
        help="first, as the baseline, each table with the rows that repeat the row before kept",
    )
    args = parser.parse_args()
    (spec,) = load_specs([CONFIG_DIR / f"{args.use_case}.yaml"])
    started = time.perf_counter()
    world = build_world(
        sized_params(args.use_case, args.events, args.days), args.seed, START, args.days
    )
    events = pd.concat(
        [world.events_for_day(START + timedelta(days=i)) for i in range(args.days)],
        ignore_index=True,
    )
    print(
        f"{args.use_case}: generated {len(events):,} events in {time.perf_counter() - started:.1f} s"
    )
    created = pd.Timestamp.now().floor("us")
    total = 0.0
    for table in feature_tables(spec):
        if table.kind != "aggregates":
            continue
        hops = args.hop or [spec.features[table.view].hop]
        runs = [(hops[0], True)] if args.every_change_point else []
        runs += [(hop, False) for hop in hops]
        first: tuple[int, float] | None = None
        for hop, every in runs:
            view = spec.features[table.view].model_copy(update={"hop": hop})
            hopped = spec.model_copy(update={"features": {**spec.features, table.view: view}})
            started = time.perf_counter()
            frame = compute_aggregate_table(
                hopped, table, events, created, every_change_point=every
            )
            seconds = time.perf_counter() - started
            total += seconds
            versus = (
                f"  ({len(frame) / first[0]:.2f}x rows, {seconds / first[1]:.2f}x time)"
                if first
                else ""
            )
            first = first or (len(frame), seconds)
            label = f"hop {hop}" + (", every change point" if every else "")
            print(
                f"  {table.name:<24} {label:<30} {len(table.features):>3} features"
                f"  {len(frame):>12,} rows out ({len(frame) / len(events):.2f} per event)"
                f"  {seconds:7.1f} s  {len(events) / seconds:>12,.0f} events/s{versus}"
            )
            del frame
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"all aggregate tables: {total:.1f} s; peak RSS {peak:.1f} GiB")


if __name__ == "__main__":
    main()
