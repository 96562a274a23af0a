"""Out of core, the shard engine's part: its peak RSS does not grow with the event log.

The fraud world at 100K and 400K events goes through ``bench/scale.py``'s ``shards`` path (the
days streamed into shards of whole entities by ``runtime.shards.split_parquet``, aggregated one
shard at a time by ``runtime.shards.run_local``), each size in a fresh process whose ``ru_maxrss``
is its own. With shards of a fixed size, four times the events is four times the shards, not a
bigger working set: the peaks may differ by at most 1.3x.

This covers the engine, not the whole feature asset: the asset still receives the whole log from
the IO manager and returns the whole table (``bench/scale.py --modes asset`` measures that).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.scale import generate
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # two subprocesses importing Dagster, ~1 minute on 2 cores

SIZES = (100_000, 400_000)
SHARD_EVENTS = 50_000
DAYS = 7


def _shards_run(home) -> dict:
    command = [sys.executable, str(REPO / "bench" / "scale.py"), "--child", "shards"]
    command += ["--folder", str(home), "--shard-events", str(SHARD_EVENTS)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_shard_path_peak_rss_is_flat_from_100k_to_400k_events(tmp_path) -> None:
    runs = {}
    for events in SIZES:
        home = tmp_path / f"events-{events}"
        generate(events, DAYS, home)
        runs[events] = _shards_run(home)
    small, large = (runs[n] for n in SIZES)
    assert (small["shards"], large["shards"]) == (2, 8)
    # the work did grow with the log: four times the events, about four times the feature rows
    assert 3.5 <= large["rows"] / small["rows"] <= 4.5, (small["rows"], large["rows"])
    ratio = large["peak_gib"] / small["peak_gib"]
    assert ratio <= 1.3, f"peak RSS {small['peak_gib']:.2f} -> {large['peak_gib']:.2f} GiB"
