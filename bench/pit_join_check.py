"""Whether the engines of ``bench/pit_join.py`` are right, and the table that says so.

Correctness is half of what the benchmark reports (a fast join that is wrong on the planted
ties is no contender), so the checks live together: a per-row brute force on a sample that
checks the reference and Playbook, the row-by-row comparison with the reference, and the
side-by-side report with each engine's ratios to Playbook.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.pit_join_data import FEATURES


def _same(a: pd.DataFrame, b: pd.DataFrame) -> int:
    """How many rows differ in any feature; both null counts as equal; a missing row differs."""
    extra = len(a) - a["row_id"].nunique() + int((~a["row_id"].isin(b["row_id"])).sum())
    bad = (~b["row_id"].isin(a["row_id"])).to_numpy()  # dropped label rows
    a = a.drop_duplicates("row_id").set_index("row_id").reindex(b["row_id"]).reset_index()
    for feature in FEATURES:
        x, y = a[feature].astype("float64").to_numpy(), b[feature].astype("float64").to_numpy()
        bad |= ~((x == y) | (np.isnan(x) & np.isnan(y)))
    return int(bad.sum()) + extra


def brute_force(folder: Path, row_ids: np.ndarray, ttl: timedelta) -> pd.DataFrame:
    """The definition, one label at a time, on a sample: the slow oracle that checks the rest."""
    labels = pd.read_parquet(folder / "labels.parquet").set_index("row_id").loc[row_ids]
    features = pd.read_parquet(
        folder / "features.parquet",
        filters=[("user_id", "in", labels["user_id"].unique().tolist())],
    )
    history = {u: g for u, g in features.groupby("user_id")}
    rows = []
    for row_id, label in labels.iterrows():
        best = None
        for rec in history.get(label["user_id"], features.iloc[:0]).itertuples():
            if label["event_timestamp"] - ttl <= rec.event_timestamp <= label["event_timestamp"]:
                if best is None or (rec.event_timestamp, rec.created_timestamp) > (
                    best.event_timestamp,
                    best.created_timestamp,
                ):
                    best = rec
        rows.append({"row_id": row_id, **{f: getattr(best, f) if best else None for f in FEATURES}})
    return pd.DataFrame(rows)


def sample_check(folder: Path, results: dict, args: argparse.Namespace) -> str:
    """Check the reference and Playbook against the brute force on ``--sample`` label rows."""
    rng = np.random.default_rng(args.seed + 1)
    n = args.labels
    ids = np.unique(
        np.concatenate(
            [
                rng.choice(n, args.sample // 2, replace=False),
                rng.permutation(n // 20)[: args.sample // 2],
            ]
        )
    )
    truth = brute_force(folder, ids, timedelta(days=args.ttl_days))
    verdicts = []
    for engine in ("reference", "playbook"):
        if results.get(engine, {}).get("outcome") != "ok":
            continue
        found = pd.read_parquet(results[engine]["out"]).set_index("row_id").loc[ids].reset_index()
        verdicts.append(f"{engine} {'agrees' if _same(found, truth) == 0 else 'DIFFERS'}")
    return f"brute force on {len(ids)} label rows: " + ", ".join(verdicts)


def _verdict(res: dict, truth: pd.DataFrame | None) -> str:
    """'yes', 'no (n rows)' or '-' when there is nothing to compare."""
    if res["outcome"] != "ok" or truth is None:
        return "-"
    differ = _same(pd.read_parquet(res["out"]), truth)
    return "yes" if differ == 0 else f"no ({differ:,} rows)"


def _ratio(res: dict, base: dict, field: str) -> str:
    """``res[field] / base[field]`` as '1.23x', or '-' when either is missing."""
    if res.get(field) is None or base.get(field) is None:
        return "-"
    return f"{res[field] / base[field]:.2f}x"


def report(results: dict, args: argparse.Namespace) -> str:
    """The side-by-side table; ratios are to Playbook's wall seconds, CPU seconds and peak RSS
    (each the median of the engine's rounds), then Playbook's own ratios to raw DuckDB."""
    reference = results.get("reference", {})
    truth = pd.read_parquet(reference["out"]) if reference.get("outcome") == "ok" else None
    base = results.get("playbook", {})
    rows = []
    for engine, res in results.items():
        ok = res["outcome"] == "ok"
        rows.append(
            [
                engine,
                f"{res['seconds']:.2f}" if ok else res["outcome"],
                f"{res['cpu']:.2f}" if ok else "-",
                f"{args.labels / res['seconds']:,.0f}" if ok else "-",
                f"{res['peak_gib']:.2f}",
                _verdict(res, truth),
                _ratio(res, base, "seconds"),
                _ratio(res, base, "cpu"),
                _ratio(res, base, "peak_gib"),
                str(res.get("rounds", 1)) if ok else "-",
            ]
        )
    headers = ["engine", "seconds", "CPU s", "label rows/s", "peak RSS GiB", "equals oracle"]
    headers += ["time vs playbook", "CPU vs playbook", "RSS vs playbook", "rounds (medians)"]
    table = tabulate(rows, headers=headers, disable_numparse=True)
    raw = results.get("duckdb", {})
    if base.get("outcome") != "ok" or raw.get("outcome") != "ok":
        return table
    # the budget the join is held to: Playbook over the raw ASOF join (no TTL, no tie-break)
    over = ", ".join(
        f"{name} {_ratio(base, raw, field)}"
        for name, field in (("time", "seconds"), ("CPU", "cpu"), ("peak RSS", "peak_gib"))
    )
    return f"{table}\nplaybook vs raw duckdb ASOF: {over}"
