"""What ``serving.reasons`` saves: the fraud handler with reasons for every answer, then only for
flagged ones, alternating in one process on the same request bodies.

The handler is the served one (``serving.service.build_handler`` of the fraud bundle, request log
on), called one request at a time; the two policies alternate in blocks of 1,000 requests after
100 warm-up ones, six blocks each, so a load change on the shared machine touches both
(``bench.serving_load.alternating``). It prints p50/p99/mean per request, the mean of flagged
against always, how many of the bodies were flagged (answered with reasons under ``flagged``),
and the load average.

    python bench/score_reasons.py --home /tmp/bench-serving
"""

from __future__ import annotations

import os
import sys
import tempfile
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving_load import alternating, print_alternating  # noqa: E402
from bench.serving_world import fraud_ab  # noqa: E402
from serving.service import REQUEST_LOG_ENV, build_handler  # noqa: E402

POLICIES = ("always", "flagged")


def main() -> None:
    blocks, home, bodies = fraud_ab(__doc__.split("\n\n")[0])
    with tempfile.TemporaryDirectory() as logs:
        os.environ[REQUEST_LOG_ENV] = str(Path(logs) / "requests.sqlite")
        handler = build_handler(home / "serving" / "fraud" / "bundle")

        def policy(name: str):
            handler.reasons = name
            return handler

        times = alternating({p: partial(policy, p) for p in POLICIES}, bodies, blocks)
        handler.reasons = "flagged"
        flagged = sum(bool(handler.handle_many([b])[0]["top_features"]) for b in bodies)
    print_alternating(times)
    print(f"bodies with reasons under flagged: {flagged} of {len(bodies)}")


if __name__ == "__main__":
    main()
