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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The parts live beside this script: the data, the engines (and the child that times one), the
# checks and the report. This file keeps the command line and runs each engine in a child.
from bench.pit_join_check import report, sample_check  # noqa: E402
from bench.pit_join_data import generate  # noqa: E402
from bench.pit_join_engines import OOM_EXIT, OOM_MARKERS, child  # noqa: E402

ENGINES = ("reference", "playbook", "duckdb", "feast-duckdb", "feast-file", "pandas")


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
