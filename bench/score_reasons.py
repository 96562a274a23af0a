"""What ``serving.reasons`` saves: the fraud handler with reasons for every answer, then only for
flagged ones, alternating in one process on the same request bodies.

The handler is the served one (``serving.service.build_handler`` of the fraud bundle, request log
on), called one request at a time; the two policies alternate in blocks of 1,000 requests after
100 warm-up ones, six blocks each, so a load change on the shared machine touches both. It
prints p50/p99/mean per request, the ratio flagged/always, how many of the bodies were flagged
(answered with reasons under ``flagged``), and the load average.

    python bench/score_reasons.py --home /tmp/bench-serving
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving_world import request_bodies, use_case_home  # noqa: E402
from serving.service import REQUEST_LOG_ENV, build_handler  # noqa: E402

POLICIES = ("always", "flagged")


def _block(handler, bodies: list[dict], n: int) -> np.ndarray:
    times = []
    for i in range(n):
        started = time.perf_counter()
        handler.handle_many([bodies[i % len(bodies)]])
        times.append(time.perf_counter() - started)
    return np.array(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/bench-serving"))
    parser.add_argument("--blocks", type=int, default=6)
    args = parser.parse_args()
    home = use_case_home(args.home, "fraud", None)
    bodies = request_bodies(home, "fraud")
    with tempfile.TemporaryDirectory() as logs:
        os.environ[REQUEST_LOG_ENV] = str(Path(logs) / "requests.sqlite")
        handler = build_handler(home / "serving" / "fraud" / "bundle")
        times: dict[str, list[np.ndarray]] = {p: [] for p in POLICIES}
        for _ in range(args.blocks):
            for policy in POLICIES:
                handler.reasons = policy
                _block(handler, bodies, 100)
                times[policy].append(_block(handler, bodies, 1000))
        handler.reasons = "flagged"
        flagged = sum(bool(handler.handle_many([b])[0]["top_features"]) for b in bodies)
    means = {}
    for policy in POLICIES:
        ms = np.concatenate(times[policy])
        means[policy] = ms.mean()
        print(
            f"{policy:8} p50 {np.percentile(ms, 50):.3f} ms  p99 {np.percentile(ms, 99):.3f} ms"
            f"  mean {ms.mean():.3f} ms  ({len(ms)} requests)"
        )
    print(f"flagged/always mean: {means['flagged'] / means['always']:.2f}x")
    print(f"bodies with reasons under flagged: {flagged} of {len(bodies)}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
