"""Point-in-time join: Playbook beside Feast (DuckDB and file stores), raw DuckDB and pandas.

Generates ``--labels`` label rows and ``--rows`` feature rows over ``--entities`` entities once,
to parquet in a temporary folder, with planted edge cases: exact ties on event time (the winner,
with the later created time, first in the file), labels exactly at an event's TTL boundary and
1µs past it, exactly at an event's time and 1µs before it, and entities with no history. Then
runs each engine in a fresh subprocess under a memory cap (``RLIMIT_AS``) and a timeout, so an
engine that runs out of memory is reported as such rather than taking the bench down:

* playbook: ``point_in_time_join`` on the labels DataFrame and the features' parquet path;
* feast-duckdb / feast-file: ``get_historical_features(...).to_df()`` on a throwaway repo
  (``offline_store: {type: duckdb}`` / ``{type: file}``, the Dask one), applied before timing;
* duckdb: a plain ``ASOF LEFT JOIN ... ON key AND l.ts >= f.ts`` (no tie-break, no TTL);
* pandas: ``merge_asof`` by key with ``tolerance=ttl`` (no tie-break);
* reference: an independent vectorised answer (pandas: keep the latest created row per
  (key, event time), ``merge_asof``, then null rows older than the TTL), itself checked, with
  Playbook, against a per-row brute force on ``--sample`` label rows.

Seconds cover the join from in-memory labels to a pandas DataFrame, including reading the
feature parquet; peak RSS is the child's ``ru_maxrss``, so it includes the labels and imports.

    python bench/pit_join.py                                  # 1M labels, 10M rows, 100K ids
    python bench/pit_join.py --labels 100000 --rows 1000000 --engines playbook duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINES = ("reference", "playbook", "duckdb", "feast-duckdb", "feast-file", "pandas")
FEATURES = ("f_float", "f_int")
START = pd.Timestamp("2024-03-01", tz="UTC")
DAY_US = 86_400 * 10**6
OOM_EXIT = 3
OOM_MARKERS = ("MemoryError", "bad_alloc", "Out of Memory", "OutOfMemory", "Cannot allocate")


# ---------------------------------------------------------------- data


def _times(offsets_us: np.ndarray) -> pd.Series:
    """UTC timestamps at microsecond resolution from offsets after ``START``."""
    return pd.Series(START + pd.to_timedelta(offsets_us, unit="us")).astype("datetime64[us, UTC]")


def generate(folder: Path, args: argparse.Namespace) -> dict[str, int]:
    """Write ``labels.parquet`` and ``features.parquet``; return how many of each case."""
    rng = np.random.default_rng(args.seed)
    m, n, ttl_us = args.rows, args.labels, args.ttl_days * DAY_US
    base = m - m // 20  # 5% of rows are tie winners planted before the row they beat
    user = rng.integers(0, args.entities, base)
    event = rng.integers(0, args.days * DAY_US, base)
    created = event + rng.integers(0, int(args.lag_s * 10**6) + 1, base)
    losers = rng.choice(base, m - base, replace=False)
    winner_created = created[losers] + rng.integers(1, 10**6, len(losers))
    picked = rng.choice(losers, min(n // 100, len(losers)), replace=False)
    tie_user, tie_event = user[picked], event[picked]  # before the arrays are interleaved
    order = np.argsort(np.concatenate([np.arange(base), losers - 0.5]), kind="stable")
    user = np.concatenate([user, user[losers]])[order]
    event = np.concatenate([event, event[losers]])[order]
    created = np.concatenate([created, winner_created])[order]
    features = pd.DataFrame(
        {
            "user_id": user,
            "event_timestamp": _times(event),
            "created_timestamp": _times(created),
            "f_float": rng.normal(size=m),
            "f_int": np.arange(m, dtype=np.int64),
        }
    )
    features.to_parquet(folder / "features.parquet", row_group_size=1 << 20)

    # labels: 2% on ids with no history, uniform times after a TTL of warm-up
    label_user = rng.integers(0, int(args.entities * 1.02), n)
    as_of = rng.integers(ttl_us, args.days * DAY_US, n)
    cases = {"at a tie": (tie_user, tie_event)}
    for name, shift in (("at TTL boundary", ttl_us), ("1us past TTL", ttl_us + 1)):
        rows = rng.integers(0, m, n // 100)
        cases[name] = (user[rows], event[rows] + shift)
    for name, shift in (("at event time", 0), ("1us before event", -1)):
        rows = rng.integers(0, m, n // 100)
        cases[name] = (user[rows], event[rows] + shift)
    slots = rng.permutation(n)
    counts, at = {}, 0
    for name, (users, times) in cases.items():
        target = slots[at : at + len(users)]
        label_user[target], as_of[target] = users, times
        counts[name], at = len(users), at + len(users)
    labels = pd.DataFrame(
        {
            "row_id": np.arange(n, dtype=np.int64),
            "user_id": label_user,
            "event_timestamp": _times(as_of),
        }
    )
    labels.to_parquet(folder / "labels.parquet")
    return counts


# ---------------------------------------------------------------- engines (run in a child)


def run_playbook(labels: pd.DataFrame, folder: Path, ttl: timedelta) -> pd.DataFrame:
    from assets.training.pit_join import FeatureTable, point_in_time_join

    table = FeatureTable("fv", str(folder / "features.parquet"), ("user_id",), FEATURES, ttl)
    return point_in_time_join(labels, [table])


def run_duckdb(labels: pd.DataFrame, folder: Path, ttl: timedelta) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    con.register("labels", labels)
    features = f"read_parquet('{folder / 'features.parquet'}')"
    return con.sql(
        f"SELECT l.*, f.f_float, f.f_int FROM labels l ASOF LEFT JOIN {features} f "
        "ON l.user_id = f.user_id AND l.event_timestamp >= f.event_timestamp"
    ).df()


def run_pandas(labels: pd.DataFrame, folder: Path, ttl: timedelta) -> pd.DataFrame:
    features = pd.read_parquet(
        folder / "features.parquet", columns=["user_id", "event_timestamp", *FEATURES]
    )
    joined = pd.merge_asof(
        labels.sort_values("event_timestamp"),
        features.sort_values("event_timestamp"),
        on="event_timestamp",
        by="user_id",
        tolerance=pd.Timedelta(ttl),
    )
    return joined.sort_values("row_id")


def run_reference(labels: pd.DataFrame, folder: Path, ttl: timedelta) -> pd.DataFrame:
    """Independent of DuckDB: the latest created row per (key, event time), then merge_asof."""
    features = pd.read_parquet(folder / "features.parquet")
    features = features.sort_values(["event_timestamp", "created_timestamp"], kind="stable")
    features = features.drop_duplicates(["user_id", "event_timestamp"], keep="last")
    features["winner_event"] = features["event_timestamp"]
    joined = pd.merge_asof(
        labels.sort_values("event_timestamp"),
        features[["user_id", "event_timestamp", "winner_event", *FEATURES]],
        on="event_timestamp",
        by="user_id",
        allow_exact_matches=True,
    )
    stale = joined["winner_event"] < joined["event_timestamp"] - pd.Timedelta(ttl)
    joined["f_int"] = joined["f_int"].astype("Int64")
    joined.loc[stale, list(FEATURES)] = None
    return joined.sort_values("row_id")


FEAST_YAML = """
project: bench
provider: local
registry: {root}/registry.db
online_store:
  type: sqlite
  path: {root}/online.db
offline_store:
  type: {store}
entity_key_serialization_version: 3
"""


def _feast_store(folder: Path, store: str, ttl: timedelta):
    """A throwaway repo over ``features.parquet``, applied (registry writes are not timed)."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64, Int64

    root = Path(tempfile.mkdtemp(dir=folder, prefix=f"feast-{store}-"))
    yaml = FEAST_YAML.format(root=root, store=store)
    (root / "feature_store.yaml").write_text(textwrap.dedent(yaml).lstrip())
    user = Entity(name="user", join_keys=["user_id"])
    source = FileSource(
        path=str(folder / "features.parquet"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )
    schema = [Field(name="f_float", dtype=Float64), Field(name="f_int", dtype=Int64)]
    view = FeatureView(name="fv", entities=[user], ttl=ttl, schema=schema, source=source)
    feature_store = FeatureStore(repo_path=str(root))
    feature_store.apply([user, view])
    return feature_store


def feast_runner(
    store: str,
) -> Callable[[pd.DataFrame, Path, timedelta], Callable[[], pd.DataFrame]]:
    """Feast's setup happens before the clock starts; the returned thunk is what is timed."""

    def prepare(labels: pd.DataFrame, folder: Path, ttl: timedelta) -> Callable[[], pd.DataFrame]:
        feature_store = _feast_store(folder, store, ttl)

        def join() -> pd.DataFrame:
            job = feature_store.get_historical_features(
                entity_df=labels, features=[f"fv:{f}" for f in FEATURES], full_feature_names=True
            )
            return job.to_df().rename(columns={f"fv__{f}": f for f in FEATURES})

        return join

    return prepare


DIRECT = {
    "playbook": run_playbook,
    "duckdb": run_duckdb,
    "pandas": run_pandas,
    "reference": run_reference,
}
PREPARED = {"feast-duckdb": feast_runner("duckdb"), "feast-file": feast_runner("file")}


def _cpu_seconds() -> float:
    """User plus system CPU of this process, all threads: steadier than wall time on a busy box."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(args: argparse.Namespace) -> None:
    """Run one engine under the memory cap; report seconds as JSON on stdout."""
    cap = int(args.mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    folder, ttl = Path(args.data), timedelta(days=args.ttl_days)
    labels = pd.read_parquet(folder / "labels.parquet")
    try:
        if args.child in PREPARED:
            join = PREPARED[args.child](labels, folder, ttl)
        else:
            join = lambda: DIRECT[args.child](labels, folder, ttl)  # noqa: E731
        start, cpu = time.perf_counter(), _cpu_seconds()
        result = join()
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    except MemoryError:
        sys.exit(OOM_EXIT)
    except Exception as error:  # DuckDB and Dask raise their own out-of-memory types
        if any(m in f"{type(error).__name__} {error}" for m in OOM_MARKERS):
            sys.exit(OOM_EXIT)
        raise
    out = result[["row_id", *FEATURES]].sort_values("row_id").reset_index(drop=True)
    out.to_parquet(args.out)
    print(json.dumps({"seconds": seconds, "cpu": cpu}))


# ---------------------------------------------------------------- parent


def launch(engine: str, folder: Path, args: argparse.Namespace) -> dict[str, object]:
    """One engine in a fresh interpreter; its outcome, seconds and peak RSS (from wait4)."""
    out = folder / f"out-{engine}.parquet"
    log = folder / f"log-{engine}.txt"
    command = [
        sys.executable,
        __file__,
        "--child",
        engine,
        "--data",
        str(folder),
        "--out",
        str(out),
    ]
    command += ["--mem-gb", str(args.mem_gb), "--ttl-days", str(args.ttl_days)]
    with open(log, "w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline, status, usage = time.monotonic() + args.timeout, None, None
        while status is None:
            pid, code, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                status, usage = code, rusage
            elif time.monotonic() > deadline:
                process.kill()
                _, _, usage = os.wait4(process.pid, 0)
                status = -1
            else:
                time.sleep(0.05)
    process.returncode = 0  # reaped by wait4 above
    text = log.read_text(errors="replace")
    peak_gib = usage.ru_maxrss / 2**20 if usage else float("nan")
    if status == -1:
        return {"outcome": f"timeout ({args.timeout}s)", "peak_gib": peak_gib}
    code = os.waitstatus_to_exitcode(status)
    if code == OOM_EXIT or any(m in text for m in OOM_MARKERS) or code in (-9, -6):
        return {"outcome": "out of memory", "peak_gib": peak_gib}
    if code != 0:
        tail = text.strip().splitlines()[-1:] or ["?"]
        return {"outcome": f"failed: {tail[0][:60]}", "peak_gib": peak_gib}
    timing = json.loads(text.strip().splitlines()[-1])
    return {"outcome": "ok", **timing, "peak_gib": peak_gib, "out": out}


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
    """The side-by-side table; ratios are to Playbook's wall seconds, CPU seconds and peak RSS."""
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
            ]
        )
    headers = ["engine", "seconds", "CPU s", "label rows/s", "peak RSS GiB", "equals oracle"]
    headers += ["time vs playbook", "CPU vs playbook", "RSS vs playbook"]
    return tabulate(rows, headers=headers, disable_numparse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--engines", nargs="+", choices=ENGINES[1:], default=list(ENGINES[1:]))
    parser.add_argument("--mem-gb", type=float, default=16.0)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per engine")
    parser.add_argument("--days", type=int, default=30, help="span of feature event times")
    parser.add_argument("--ttl-days", type=int, default=2)
    parser.add_argument("--lag-s", type=float, default=1.0, help="max created minus event time")
    parser.add_argument("--sample", type=int, default=2_000, help="label rows brute-forced")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="pit-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        counts = generate(folder, args)
        print(
            f"data: {args.labels:,} labels, {args.rows:,} rows, {args.entities:,} ids, planted {counts}"
        )
        print(
            f"generated in {time.perf_counter() - start:.1f}s; mem cap {args.mem_gb} GiB, timeout {args.timeout}s",
            flush=True,
        )
        results = {}
        for engine in ["reference", *args.engines]:
            results[engine] = launch(engine, folder, args)
            print(
                f"  {engine}: {results[engine]['outcome']} {results[engine].get('seconds', '')}",
                flush=True,
            )
        print(sample_check(folder, results, args))
        print(report(results, args))


if __name__ == "__main__":
    main()
