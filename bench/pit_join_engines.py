"""The engines ``bench/pit_join.py`` compares, and the child process that times one of them.

Each engine runs in a fresh interpreter (``bench/pit_join.py --child <engine>``) under a memory
cap, so this module is what that child runs: the joins themselves, Feast's untimed setup, and
:func:`child`, which times one join and reports it. The heavy libraries (DuckDB, Feast, the
Playbook join) are imported inside the engine that needs them, so a child loads only its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pandas as pd

from bench.peak_memory import peak_rss_gib
from bench.pit_join_data import FEATURES

OOM_EXIT = 3
OOM_MARKERS = ("MemoryError", "bad_alloc", "Out of Memory", "OutOfMemory", "Cannot allocate")


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


def _out_of_memory() -> None:
    """Report the peak reached before running out of memory, then exit with ``OOM_EXIT``."""
    print(json.dumps({"peak_gib": peak_rss_gib()}), flush=True)
    sys.exit(OOM_EXIT)


def child(args: argparse.Namespace) -> None:
    """Run one engine under the memory cap; report seconds and peak RSS as JSON on stdout.

    The peak is this process's own ``VmHWM``: the parent's ``wait4`` figure would carry over the
    parent's peak (it generated the data), and read the same for every engine.
    """
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
        peak = peak_rss_gib()  # the join's, before the checks' copy and the write below
    except MemoryError:
        _out_of_memory()
    except Exception as error:  # DuckDB and Dask raise their own out-of-memory types
        if any(m in f"{type(error).__name__} {error}" for m in OOM_MARKERS):
            _out_of_memory()
        raise
    out = result[["row_id", *FEATURES]].sort_values("row_id").reset_index(drop=True)
    out.to_parquet(args.out)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_gib": peak}))
