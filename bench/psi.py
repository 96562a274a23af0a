"""PSI drift at scale: Playbook's fit + window PSI, beside Evidently's DataDriftPreset (PSI).

Generates a reference and a window of ``--rows`` rows x ``--features`` numeric features
(``--dtype``, float32 by default), five kinds in turn: normal, lognormal, 40% zeros then
exponential, Poisson counts (discrete), normal with 5% nulls. A few window features drift:

* f00 normal, mean +1 sd (alert); f01 lognormal, sigma 1 -> 1.3; f02 zeros 40% -> 30%;
  f03 Poisson, lambda 3 -> 4; f05 normal, mean +0.25 sd (small: below the warn level).

Then times, in this process:

* playbook: ``DriftReference.fit`` on the reference, then ``psi_table`` on the window;
* searchsorted: the textbook ``np.bincount(np.searchsorted(edges, x))`` on the same bins, over
  the first ``--searchsorted-features`` window columns, against Playbook's comparison counts;
* evidently: ``Report([DataDriftPreset(method="psi", threshold=0.1)])`` from pandas frames, at
  ``--evidently-rows`` (Evidently takes ~2 s per 1M-row column here, so not at 10M), with
  Playbook run again on exactly the same data for an equal-size ratio. Evidently is not a
  project dependency: it runs in the interpreter ``--evidently-python`` (a throwaway venv, e.g.
  ``python3.11 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install evidently "pandas<3"``),
  which re-runs this file with ``--evidently-only`` and regenerates the same seeded data.

Evidently bins differently: Sturges equal-width bins over reference and window together (21+
bins) and it drops nulls, against our 10 quantile bins fitted on the reference plus a null bin;
the PSI values differ, the question is whether the same features are flagged (PSI >= 0.1).

    python bench/psi.py                              # 10M x 50, Evidently at 1M x 50
    python bench/psi.py --rows 1000000 --evidently-rows 0
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVIDENTLY_VENV = Path("/tmp/evvenv/bin/python")
WARN = 0.1


# ---------------------------------------------------------------- data


def _column(kind: int, rng: np.random.Generator, rows: int, drifted: int | None) -> np.ndarray:
    """One feature's values; ``drifted`` is the column index when the window drifts."""
    if kind == 0:  # normal
        shift = {0: 1.0, 5: 0.25}.get(drifted, 0.0) if drifted is not None else 0.0
        return rng.standard_normal(rows) + shift
    if kind == 1:  # lognormal
        return rng.lognormal(0.0, 1.3 if drifted == 1 else 1.0, rows)
    if kind == 2:  # point mass at zero, then exponential
        zeros = 0.3 if drifted == 2 else 0.4
        return np.where(rng.random(rows) < zeros, 0.0, rng.exponential(1.0, rows))
    if kind == 3:  # discrete counts
        return rng.poisson(4.0 if drifted == 3 else 3.0, rows).astype(np.float64)
    values = rng.standard_normal(rows)  # normal with 5% nulls
    values[rng.random(rows) < 0.05] = np.nan
    return values


def make_frames(
    rows: int, features: int, dtype: str, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and window, one block each with every column contiguous, as read from Parquet.

    The block is (features, rows) and handed over transposed: pandas stores blocks that way
    round, so it keeps the array without copying and a column is a contiguous view.
    """
    names = [f"f{i:02d}" for i in range(features)]
    frames = []
    for side in (0, 1):
        block = np.empty((features, rows), dtype=dtype)
        for i in range(features):
            rng = np.random.default_rng([seed, side, i])
            block[i] = _column(i % 5, rng, rows, i if side == 1 else None)
        frames.append(pd.DataFrame(block.T, columns=names, copy=False))
    return frames[0], frames[1]


def checksum(frame: pd.DataFrame) -> float:
    """Proof both interpreters generated the same data."""
    return float(np.nansum(frame.to_numpy(dtype=np.float64)[:: max(1, len(frame) // 1000)]))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ---------------------------------------------------------------- engines


def run_playbook(reference: pd.DataFrame, window: pd.DataFrame) -> dict:
    from assets.monitoring.drift_reference import DriftReference

    start = time.perf_counter()
    drift = DriftReference.fit(reference)
    fitted = time.perf_counter()
    table = drift.psi_table(window, min_window_rows=1000, psi_warn=WARN)
    done = time.perf_counter()
    return {
        "fit_s": fitted - start,
        "window_s": done - fitted,
        "total_s": done - start,
        "psi": dict(zip(table["feature"], table["psi"], strict=True)),
        "status": dict(zip(table["feature"], table["status"], strict=True)),
        "drift": drift,
    }


def run_searchsorted(drift, window: pd.DataFrame, features: int) -> dict:
    """The same bin counts by ``searchsorted`` + ``bincount``, against Playbook's counting."""
    names = list(window.columns[:features])
    start = time.perf_counter()
    textbook = []
    for name in names:
        values = window[name].to_numpy()
        edges = drift.features[name].edges
        nulls = np.isnan(values)
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
        counts[-1] -= np.count_nonzero(nulls)  # NaN sorts last: move it to the null bin
        textbook.append(np.append(counts, np.count_nonzero(nulls)))
    middle = time.perf_counter()
    ours = [drift.features[name].window_counts(window[name]) for name in names]
    done = time.perf_counter()
    same = all(np.array_equal(a, b) for a, b in zip(textbook, ours, strict=True))
    return {"searchsorted_s": middle - start, "playbook_s": done - middle, "same": same}


def run_evidently(reference: pd.DataFrame, window: pd.DataFrame) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = list(reference.columns)
    start = time.perf_counter()
    definition = DataDefinition(numerical_columns=names)
    report = Report([DataDriftPreset(method="psi", threshold=WARN)])
    snapshot = report.run(
        Dataset.from_pandas(window, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - start
    values = {}
    for metric in snapshot.dict()["metrics"]:
        column = metric["config"].get("column")
        if column is not None:
            values[column] = float(metric["value"])
    return {"total_s": seconds, "psi": values}


def evidently_in_venv(python: Path, args: argparse.Namespace) -> dict | None:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "evidently.json"
        command = [
            str(python), __file__, "--evidently-only", "--json", str(out),
            "--rows", str(args.evidently_rows), "--features", str(args.features),
            "--dtype", args.dtype, "--seed", str(args.seed),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"evidently failed ({python}):\n{done.stderr[-2000:]}")
            return None
        return json.loads(out.read_text())


# ---------------------------------------------------------------- report


def table(rows: list[list]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers="firstrow", floatfmt=".3f", intfmt=",")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="Rows of each frame.")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evidently-rows", type=int, default=1_000_000, help="0: skip.")
    parser.add_argument("--evidently-python", type=Path, default=EVIDENTLY_VENV)
    parser.add_argument("--searchsorted-features", type=int, default=10)
    parser.add_argument("--evidently-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.evidently_only:  # inside Evidently's venv: no project imports
        reference, window = make_frames(args.rows, args.features, args.dtype, args.seed)
        result = run_evidently(reference, window)
        result |= {"checksum": checksum(window), "peak_rss_gib": peak_rss_gib()}
        import evidently

        result["version"] = evidently.__version__
        args.json.write_text(json.dumps(result))
        return

    cells = args.rows * args.features
    start = time.perf_counter()
    reference, window = make_frames(args.rows, args.features, args.dtype, args.seed)
    print(f"data: 2 x {args.rows:,} rows x {args.features} {args.dtype} features "
          f"in {time.perf_counter() - start:.1f}s")  # fmt: skip
    ours = run_playbook(reference, window)
    print(f"playbook: fit {ours['fit_s']:.2f}s ({cells / ours['fit_s'] / 1e6:,.0f}M cells/s), "
          f"window PSI {ours['window_s']:.2f}s ({cells / ours['window_s'] / 1e6:,.0f}M cells/s), "
          f"total {ours['total_s']:.2f}s; peak RSS {peak_rss_gib():.2f} GiB")  # fmt: skip
    drifted = ["f00", "f01", "f02", "f03", "f05"]
    print(table([["feature", "psi", "status"]]
                + [[f, ours["psi"][f], ours["status"][f]] for f in drifted if f in ours["psi"]]))  # fmt: skip
    flagged = sorted(f for f, s in ours["status"].items() if s in ("warn", "alert"))
    print(f"flagged (psi >= {WARN}): {flagged}")

    rows = [["engine", "rows", "features", "seconds", "M cells/s read", "x playbook"]]
    rows.append(["playbook fit+psi", args.rows, args.features, ours["total_s"],
                 2 * cells / ours["total_s"] / 1e6, 1.0])  # fmt: skip
    if args.searchsorted_features:
        count = run_searchsorted(
            ours["drift"], window, min(args.searchsorted_features, args.features)
        )
        n = min(args.searchsorted_features, args.features)
        print(f"\nwindow counts on {n} columns: searchsorted+bincount {count['searchsorted_s']:.2f}s, "
              f"playbook {count['playbook_s']:.2f}s, identical counts: {count['same']}")  # fmt: skip
        rows.append(["playbook counts", args.rows, n, count["playbook_s"],
                     args.rows * n / count["playbook_s"] / 1e6, 1.0])  # fmt: skip
        rows.append(["searchsorted+bincount counts", args.rows, n, count["searchsorted_s"],
                     args.rows * n / count["searchsorted_s"] / 1e6,
                     count["searchsorted_s"] / count["playbook_s"]])  # fmt: skip
    del reference, window, ours

    if args.evidently_rows:
        evidently = None
        try:
            import evidently  # noqa: F401

            small = make_frames(args.evidently_rows, args.features, args.dtype, args.seed)
            evidently = run_evidently(*small) | {"checksum": checksum(small[1])}
            del small
        except ImportError:
            if args.evidently_python.exists():
                evidently = evidently_in_venv(args.evidently_python, args)
            else:
                print(f"\nevidently: not importable and no {args.evidently_python}; skipped")
        if evidently is not None:
            small_ref, small_win = make_frames(
                args.evidently_rows, args.features, args.dtype, args.seed
            )
            assert abs(checksum(small_win) - evidently["checksum"]) < 1e-6, "different data"
            same_size = run_playbook(small_ref, small_win)
            small_cells = 2 * args.evidently_rows * args.features
            rows.append(["playbook fit+psi", args.evidently_rows, args.features,
                         same_size["total_s"], small_cells / same_size["total_s"] / 1e6, 1.0])  # fmt: skip
            rows.append([f"evidently {evidently.get('version', '')} DataDriftPreset(psi)",
                         args.evidently_rows, args.features, evidently["total_s"],
                         small_cells / evidently["total_s"] / 1e6,
                         evidently["total_s"] / same_size["total_s"]])  # fmt: skip
            if args.evidently_rows < args.rows:
                print(f"\nevidently at {args.evidently_rows:,} rows, not {args.rows:,} "
                      "(about 2 s per 1M-row column here); Playbook re-run at that size")  # fmt: skip
            if "peak_rss_gib" in evidently:
                print(f"evidently peak RSS {evidently['peak_rss_gib']:.2f} GiB (its own process)")
            compare(same_size["psi"], evidently["psi"])
    print()
    print(table(rows))
    print("x playbook: seconds / Playbook's seconds at the same size (fit+psi vs the preset's "
          "run; counts vs counts). cells read: both frames for fit+psi, the window for counts")  # fmt: skip


def compare(ours: dict[str, float], theirs: dict[str, float]) -> None:
    """PSI per feature side by side, and whether both flag the same features."""
    names = sorted(set(ours) & set(theirs))
    diff = {n: abs(ours[n] - theirs[n]) for n in names}
    ours_flag = {n for n in names if ours[n] >= WARN}
    their_flag = {n for n in names if theirs[n] >= WARN}
    interesting = sorted(set(names[:6]) | ours_flag | their_flag | {max(diff, key=diff.get)})
    print("\nPSI at equal size, ours (10 quantile bins + null) vs Evidently (Sturges bins):")
    print(table([["feature", "playbook", "evidently", "abs diff"]]
                + [[n, ours[n], theirs[n], diff[n]] for n in interesting]))  # fmt: skip
    undrifted = [d for n, d in diff.items() if n not in ("f00", "f01", "f02", "f03", "f05")]
    print(f"max abs diff: {max(diff.values()):.4f} ({max(diff, key=diff.get)}); "
          f"over undrifted features: {max(undrifted, default=0):.4f}")  # fmt: skip
    print(f"flagged by playbook: {sorted(ours_flag)}; by evidently: {sorted(their_flag)}; "
          f"same: {ours_flag == their_flag}")  # fmt: skip


if __name__ == "__main__":
    main()
