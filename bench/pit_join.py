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
feature parquet; peak RSS is the child's own ``VmHWM`` at the end of the join, so it includes
the labels and imports (not ``wait4``'s ``ru_maxrss``, which carries over the parent's peak).
Every engine that finishes runs ``--repeat`` times, the engines in turn, and each figure is the
median of its rounds; each round's line gives the load average, the machine being shared. The
last line is the join's budget: Playbook over raw DuckDB's ``ASOF`` in time, CPU and peak RSS.

    python bench/pit_join.py                                  # 1M labels, 10M rows, 100K ids
    python bench/pit_join.py --labels 100000 --rows 1000000 --engines playbook duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    """One engine in a fresh interpreter; its outcome, seconds and peak RSS (the child's own)."""
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
    reported = _reported(text)
    # The child's own VmHWM; wait4's figure only for a child killed before it could say, and
    # that one is at least the parent's peak at the launch (Linux carries it over the exec).
    peak_gib = reported.get("peak_gib", usage.ru_maxrss / 2**20 if usage else float("nan"))
    if status == -1:
        return {"outcome": f"timeout ({args.timeout}s)", "peak_gib": peak_gib}
    code = os.waitstatus_to_exitcode(status)
    if code == OOM_EXIT or any(m in text for m in OOM_MARKERS) or code in (-9, -6):
        return {"outcome": "out of memory", "peak_gib": peak_gib}
    if code != 0:
        tail = text.strip().splitlines()[-1:] or ["?"]
        return {"outcome": f"failed: {tail[0][:60]}", "peak_gib": peak_gib}
    return {"outcome": "ok", **reported, "out": out}


def _reported(text: str) -> dict[str, float]:
    """The JSON a child prints last (seconds, CPU, peak), or {} when it printed none."""
    lines = text.strip().splitlines()
    try:
        found = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def _run(engine: str, folder: Path, args: argparse.Namespace) -> dict[str, object]:
    """:func:`launch`, with a progress line that gives the machine's load beside the seconds."""
    result = launch(engine, folder, args)
    seconds = f"{result['seconds']:.2f} s" if "seconds" in result else ""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  {engine}: {result['outcome']} {seconds} (load average {load})", flush=True)
    return result


def _median(runs: list[dict[str, object]]) -> dict[str, object]:
    """One engine's rounds as one result: the median of each figure, taken separately."""
    figures = {f: statistics.median(r[f] for r in runs) for f in ("seconds", "cpu", "peak_gib")}
    return {**runs[0], **figures, "rounds": len(runs)}


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
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure's median")
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
        results = {engine: _run(engine, folder, args) for engine in ["reference", *args.engines]}
        # more rounds of the engines that finished, in turn, so that a burst of load on a shared
        # machine lands on one round of one engine rather than decide a ratio
        rounds = {e: [r] for e, r in results.items() if e != "reference" and r["outcome"] == "ok"}
        for _ in range(args.repeat - 1):
            for engine, runs in rounds.items():
                if (res := _run(engine, folder, args))["outcome"] == "ok":
                    runs.append(res)
        results |= {engine: _median(runs) for engine, runs in rounds.items()}
        print(sample_check(folder, results, args))
        print(report(results, args))


if __name__ == "__main__":
    main()
