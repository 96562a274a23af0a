"""What ``serving.cached_entities`` saves: the fraud handler reading its merchant views from
memory, against the same handler reading every view from the online store, alternating in one
process on the same request bodies.

Both handlers are the served one (``serving.service.build_handler`` of the fraud bundle, request
log on, each to its own file); ``live`` is built with ``PLAYBOOK_LIVE_ITEM_VIEWS`` set, which
turns the in-process view cache off. They take turns in blocks of 1,000 requests after 100
warm-up ones, six blocks each (``bench.serving_load.alternating``). It prints p50/p99/mean per
request, the mean of ``held`` against ``live``, the views each handler holds, whether both
answered every body alike, and the load average.

    python bench/score_cache.py --home /tmp/bench-serving
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving_load import alternating, print_alternating  # noqa: E402
from bench.serving_world import fraud_ab  # noqa: E402
from runtime.online_features import LIVE_ITEM_VIEWS_ENV  # noqa: E402
from serving.service import REQUEST_LOG_ENV, build_handler  # noqa: E402


def main() -> None:
    blocks, home, bodies = fraud_ab(__doc__.split("\n\n")[0])
    bundle = home / "serving" / "fraud" / "bundle"
    with tempfile.TemporaryDirectory() as logs:
        handlers = {}
        for name in ("live", "held"):
            os.environ[REQUEST_LOG_ENV] = str(Path(logs) / f"{name}.sqlite")
            if name == "live":
                os.environ[LIVE_ITEM_VIEWS_ENV] = "1"
            handlers[name] = build_handler(bundle)
            os.environ.pop(LIVE_ITEM_VIEWS_ENV, None)
        times = alternating({n: (lambda h=h: h) for n, h in handlers.items()}, bodies, blocks)
        alike = all(
            handlers["held"].handle_many([b]) == handlers["live"].handle_many([b]) for b in bodies
        )
    print_alternating(times)
    for name, handler in handlers.items():
        print(f"{name}: views held in memory {sorted(handler.features.cached_views) or 'none'}")
    print(f"same answer to each of the {len(bodies)} bodies: {alike}")


if __name__ == "__main__":
    main()
