"""Throughput benchmark of the synthetic generators.

Sizes each world's params so that ``--days`` daily partitions hold about ``--events`` rows in
total (entity counts grow with the daily volume so the worlds stay realistic), then generates
the days one by one, as the raw assets do, and prints events, seconds and events per second.

    python bench/generate.py --use-case all            # 10M events per use case
    python bench/generate.py --use-case feed --quick   # about 1M events
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date, timedelta
from pathlib import Path

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.raw.synthetic import build_world  # noqa: E402
from configs.schema.source import (  # noqa: E402
    FeedGeneratorParams,
    FraudGeneratorParams,
    ModerationGeneratorParams,
    PricingGeneratorParams,
    SearchGeneratorParams,
)

USE_CASES = ("feed", "fraud", "search", "pricing", "moderation")
START = date(2024, 1, 1)


def sized_params(
    use_case: str, events: int, days: int
) -> (
    FeedGeneratorParams
    | FraudGeneratorParams
    | SearchGeneratorParams
    | PricingGeneratorParams
    | ModerationGeneratorParams
):
    """Params whose ``days`` partitions add up to about ``events`` rows."""
    per_day = max(events // days, 1)
    if use_case == "feed":
        requests = max(per_day // 10, 1)
        return FeedGeneratorParams(
            requests_per_day=requests,
            slate_size=10,
            n_users=max(2000, requests // 5),
            n_items=max(1000, requests // 10),
        )
    if use_case == "fraud":
        return FraudGeneratorParams(
            transactions_per_day=per_day,
            n_cards=max(5000, per_day // 2),
            n_merchants=max(400, per_day // 250),
        )
    if use_case == "search":
        requests = max(per_day // 10, 1)
        return SearchGeneratorParams(
            requests_per_day=requests,
            results_per_request=10,
            n_queries=max(2000, requests // 5),
            n_documents=max(5000, requests // 2),
        )
    if use_case == "pricing":  # about 50 orders a store a day, as the shipped world
        return PricingGeneratorParams(
            orders_per_day=per_day, n_stores=min(max(60, per_day // 50), 10_000)
        )
    if use_case == "moderation":
        return ModerationGeneratorParams(posts_per_day=per_day, n_authors=max(2000, per_day // 2))
    raise ValueError(f"unknown use case {use_case!r}; expected one of {USE_CASES}")


def run(use_case: str, events: int, days: int, seed: int) -> None:
    """Build one world, generate every day and print the throughput."""
    params = sized_params(use_case, events, days)
    started = time.perf_counter()
    world = build_world(params, seed, START, days)
    built = time.perf_counter()
    rows = sum(len(world.events_for_day(START + timedelta(days=i))) for i in range(days))
    finished = time.perf_counter()
    generate_s = finished - built
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{use_case:>6}: {rows:>12,} events in {generate_s:7.2f} s "
        f"({rows / generate_s:>12,.0f} events/s; build {built - started:.2f} s; "
        f"peak RSS {peak_mib:,.0f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--use-case", choices=(*USE_CASES, "all"), default="all")
    parser.add_argument("--events", type=int, default=10_000_000, help="total events per use case")
    parser.add_argument("--quick", action="store_true", help="about 1M events (overrides --events)")
    parser.add_argument("--days", type=int, default=10, help="daily partitions to generate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    events = 1_000_000 if args.quick else args.events
    for use_case in USE_CASES if args.use_case == "all" else (args.use_case,):
        run(use_case, events, args.days, args.seed)


if __name__ == "__main__":
    main()
