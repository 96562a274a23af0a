"""The use cases ``bench/serving_latency.py`` serves: their homes, endpoints and request bodies.

The benchmark needs a served world before it can measure anything: a home with the use case's
serving bundle (reused, or a small test world materialized through the ``bento`` asset) and a
set of real request bodies drawn from its raw events. That preparation is its own job, apart
from the servers, the load generator and the report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from configs import CONFIG_DIR
from dagster_project.use_case_files import load_use_cases
from tests.integration.served import DAYS
from tests.integration.test_raw_assets import _run, _small

USE_CASES = ("fraud", "feed", "search")
ENDPOINTS = {"fraud": "score", "feed": "recommend", "search": "search"}


def use_case_home(root: Path, use_case: str, items: int | None) -> Path:
    """A home holding ``use_case``'s bundle: reused from ``root`` if there, else materialized."""
    for home in (root, root / use_case):
        if (home / "serving" / use_case / "bundle").is_dir():
            print(f"[{use_case}] reusing {home}", flush=True)
            return home
    home = root / use_case
    (spec,) = load_use_cases([CONFIG_DIR / f"{use_case}.yaml"])
    # no SLO check: its gate would keep a first version from champion on a loaded machine, and
    # the benchmark measures the service whatever its latency
    spec = _small(spec, days=DAYS[use_case]).model_copy(update={"slo": None})
    if use_case == "feed" and items:
        params = spec.source.params.model_copy(update={"n_items": items})
        source = spec.source.model_copy(update={"params": params})
        spec = spec.model_copy(update={"source": source}).with_path(spec.path)
    print(f"[{use_case}] materializing a small world into {home} ...", flush=True)
    started = time.monotonic()
    result = _run(spec, home, stages_to_skip=("funnel_evaluation",))
    if not result.success:
        raise SystemExit(f"[{use_case}] materialization failed")
    print(f"[{use_case}] materialized in {time.monotonic() - started:.0f} s", flush=True)
    return home


def request_bodies(home: Path, use_case: str, n: int = 256, seed: int = 0) -> list[dict]:
    """``n`` real request bodies drawn from the use case's raw events."""
    files = sorted((home / "tables" / use_case / "raw_events").glob("*.parquet"))
    if not files:
        raise SystemExit(f"no raw events under {home / 'tables' / use_case}")
    columns = {
        "fraud": ["card_id", "merchant_id", "amount"],
        "feed": ["user_id"],
        "search": ["query_id"],
    }[use_case]
    events = pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
    rows = events.sample(n=min(n, len(events)), random_state=seed)
    if use_case == "fraud":
        return [
            {"transaction": {"card_id": int(c), "merchant_id": int(m), "amount": float(a)}}
            for c, m, a in rows.itertuples(index=False)
        ]
    if use_case == "feed":
        return [{"user_id": int(u), "k": 20} for u in rows["user_id"]]
    return [{"query": int(q), "k": 10} for q in rows["query_id"]]


def fraud_ab(description: str) -> tuple[int, Path, list[dict]]:
    """The command line of the fraud handler A/B scripts (``--home``, ``--blocks``): the blocks
    per variant, the fraud home (its small world materialized there when missing) and its
    request bodies."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--home", type=Path, default=Path("/tmp/bench-serving"))
    parser.add_argument("--blocks", type=int, default=6)
    args = parser.parse_args()
    home = use_case_home(args.home, "fraud", None)
    return args.blocks, home, request_bodies(home, "fraud")
