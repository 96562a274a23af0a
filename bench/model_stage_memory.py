"""Peak memory and time of the model stage: the training set loaded whole against read by split.

A use case's events (``--use-case``: each shipped one; ``--events`` over ``--days``) are
prepared as ``bench/training_set_shards.py`` prepares them (day files, feature tables), the
split plan is counted from the mature rows as its asset counts it, and the model's training set
is written as its asset writes it (streamed, in ``--shards`` shards). Then the model (fraud's
scorer, a binary classifier; search's ranking, a LambdaRank ranker; the feed's ranking, the
expected-value model; pricing's delivery, a regressor with its interval; moderation's
classifier, multiclass) is trained and evaluated
(``train_tabular``: LightGBM, calibration, the baseline, the metrics and plots; not the MLflow
logging) in each mode, each in its own subprocess so that peak RSS is that run's alone:

* ``whole``: the set loaded as the IO manager loads it, one frame, then cut into its splits
  (the model asset before; the baseline);
* ``splits``: the set read by split from its file, every split held (``SetSplits.read``: the
  asset before);
* ``streamed``: the three splits left in the file, read a batch at a time by each pass
  (LightGBM's bins, the units, the baseline's rows, the test scores: what the asset does); the
  logistic-regression baseline then fits on at most ``BASELINE_FIT_ROWS`` sampled train rows,
  so its metric may differ where the train split is larger; the model's must not.

It prints wall time, peak RSS and the primary metric of each run and its baseline's (the same
model: the same metric), and the peak of each phase of the fit and evaluation: the RSS
high-water mark is reset (``/proc/self/clear_refs``) as each of the functions ``train_tabular``
calls starts and read as it returns, so a phase's peak counts what the earlier phases left in
memory (``between``: the work between and after the phases).

    python bench/model_stage_memory.py --events 4000000 --shards 8
    python bench/model_stage_memory.py --events 16000000 --shards 32 --modes splits streamed
    python bench/model_stage_memory.py --use-case search --events 4000000 --shards 8
    python bench/model_stage_memory.py --use-case search --events 4000000 --shards 8 --scatter
    python bench/model_stage_memory.py --use-case feed --events 4000000 --shards 8
    python bench/model_stage_memory.py --use-case feed --model retrieval --events 4000000 --shards 8

``--model`` picks another model of the use case: the feed's retrievers (``retrieval``, a
two-tower; ``next_item``, a sequence model) are trained and evaluated as their asset does
(``train_retrieval``, ``train_sequence_retrieval``: the fit, the full-catalog evaluation beside
popularity; not the MLflow logging) on the catalog the benchmark writes; ``whole`` is the set
loaded as the IO manager loaded it for the retriever's asset before it read by split, and
``streamed`` leaves train and validation in the file (the asset now).

``--scatter`` writes the set's rows again in a seeded random order, as from a log whose groups
are not in id order: a ranker's streamed splits are then put in group order through a
temporary folder first (``runtime.table_chunks.permuted``), and the held ones sorted in memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.features.views import feature_tables  # noqa: E402
from assets.models.retrieval import train_retrieval  # noqa: E402
from assets.models.sequence import train_sequence_retrieval  # noqa: E402
from assets.models.split_chunks import streamed_splits  # noqa: E402
from assets.models.train import train_tabular  # noqa: E402
from assets.raw.event_log import log_columns, log_size_and_end  # noqa: E402
from assets.split.split_plan_assets import mature_split_plan  # noqa: E402
from assets.training.build import SPLIT, training_rows, write_training_set  # noqa: E402
from assets.training.set_splits import SetSplits  # noqa: E402
from assets.training.sharded_labels import EventFiles  # noqa: E402
from bench.peak_memory import measure_child, peak_rss_gib, run_line  # noqa: E402
from bench.training_set_shards import _spec, prepare  # noqa: E402
from configs.schema.execution import ExecutionSpec  # noqa: E402
from configs.schema.model_stage import RETRIEVERS  # noqa: E402
from runtime.funnel_roles import retrieval_keys  # noqa: E402
from runtime.shards import LocalEngine, resolve_execution  # noqa: E402

MODES = ("whole", "splits", "streamed")
# each use case's model measured: fraud's classifier, search's LambdaRank ranker, the feed's
# expected-value model (two classifiers), pricing's regressor (with its interval),
# moderation's multiclass classifier
MODELS = {
    "fraud": "scorer",
    "search": "ranking",
    "feed": "ranking",
    "pricing": "delivery",
    "moderation": "classifier",
}
# what train_tabular calls for a classifier or a ranker, in order: each one a phase
PHASES = (
    "retrieval_splits",
    "train_two_tower",
    "train_sequence",
    "retrieval_options",
    "evaluated_retrieval",
    "model_splits",
    "plan_evaluation",
    "baseline_train",
    "train_classifier",
    "train_ranker",
    "train_expected_value",
    "train_regressor",
    "train_multiclass",
    "baseline_scores",
    "classification_plots",
    "_gain_plot",
)


def _phased(peaks: dict[str, float]) -> None:
    """Wrap each phase's function where the trainers call it (in their modules; the splits
    are cut in ``assets.models.split_chunks``): its own peak RSS."""
    import assets.models.classification as classification  # noqa: PLC0415 (names wrapped)
    import assets.models.multiclass as multiclass  # noqa: PLC0415
    import assets.models.regression as regression  # noqa: PLC0415
    import assets.models.retrieval as retrieval  # noqa: PLC0415
    import assets.models.sequence as sequence  # noqa: PLC0415
    import assets.models.split_chunks as split_chunks  # noqa: PLC0415
    import assets.models.train as train  # noqa: PLC0415

    def wrap(name: str, function):
        def measured(*args, **kwargs):
            peaks["between"] = max(peaks.get("between", 0.0), peak_rss_gib())  # since the last
            Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
            try:
                return function(*args, **kwargs)
            finally:
                peaks[name] = max(peaks.get(name, 0.0), peak_rss_gib())
                Path("/proc/self/clear_refs").write_text("5")  # "between" starts here

        return measured

    for name in PHASES:
        modules = (classification, train, regression, multiclass, split_chunks, retrieval, sequence)
        for module in modules:
            if hasattr(module, name):
                setattr(module, name, wrap(name, getattr(module, name)))


def write_set(folder: Path, shards: int, use_case: str, model: str) -> int:
    """The split plan of the mature rows and the model's set, as their assets write them."""
    spec = _spec(use_case)
    files = [UPath(p) for p in sorted(folder.glob("events-*.parquet"))]
    rows, end = log_size_and_end(files, spec.events.timestamp)
    plan = mature_split_plan(spec, files, end)
    paths = {t.name: str(folder / f"{t.name}.parquet") for t in feature_tables(spec)}
    execution = ExecutionSpec(shards=shards, storage=str(folder / "shards"))
    engine = LocalEngine(resolve_execution(execution, folder, environ={}))
    events = EventFiles(tuple(files), tuple(log_columns(files)), rows, end)
    with training_rows(spec, model, events, engine=engine) as label_rows:
        written = write_training_set(
            spec, model, label_rows, plan, paths, UPath(folder / "set.parquet")
        )
    return written.rows


def scatter(path: Path) -> None:
    """The set's rows in a seeded random order (each split's groups scattered over the file)."""
    table = pq.read_table(path)
    order = np.random.default_rng(0).permutation(table.num_rows)
    pq.write_table(table.take(order), path)


def _train(spec, model: str, training_set: pd.DataFrame | SetSplits, folder: Path) -> dict:
    """The model trained and evaluated as its asset does (not the MLflow logging): its primary
    metric, its baseline's and its test rows."""
    stage = spec.model[model]
    if stage.problem not in RETRIEVERS:
        trained = train_tabular(spec, model, training_set)
        rows = trained.predictions[SPLIT].value_counts().items()
    else:  # a retriever: its catalog is the raw table of its item entity
        table = spec.entities[retrieval_keys(spec, model)[2]].table
        catalog = pd.read_parquet(folder / f"raw_{table}.parquet") if table else None
        trainer = train_sequence_retrieval if stage.problem == "sequence" else train_retrieval
        trained = trainer(spec, model, training_set, catalog)
        rows = {"train_seconds": round(trained.model.train_seconds, 1)}.items()
    return {
        "metric": float(trained.metrics[trained.primary]),
        "baseline": float(trained.baseline_metrics[trained.primary]),
        "test": {k: v if isinstance(v, float) else int(v) for k, v in rows},
    }


def child(mode: str, folder: Path, use_case: str, model: str) -> None:
    """One measured model stage: prints wall time, peak RSS and the metric as one JSON line."""
    spec = _spec(use_case)
    path = UPath(folder / "set.parquet")
    phases: dict[str, float] = {}
    started = time.perf_counter()
    if mode == "whole":  # as the IO manager loads it
        with path.open("rb") as handle:
            training_set = pd.read_parquet(handle)
    else:
        streamed = streamed_splits(spec.model[model]) if mode == "streamed" else ()
        training_set = SetSplits.read(path, SPLIT, streamed=streamed)
    loaded = peak_rss_gib()
    _phased(phases)
    result = _train(spec, model, training_set, folder)
    wall = time.perf_counter() - started
    phases["between"] = max(phases.get("between", 0.0), peak_rss_gib())  # and after the last
    peak = max(loaded, *phases.values())  # every moment is in one of them
    print(
        json.dumps(
            {"wall_s": wall, "peak_gib": peak, **result, "phases": {"read": loaded, **phases}}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--use-case", choices=sorted(MODELS), default="fraud")
    parser.add_argument("--model", help="the use case's model (default: the one in MODELS)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--scatter", action="store_true", help="the set's rows shuffled")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = args.model or MODELS[args.use_case]
    if args.child:
        child(args.child, args.folder, args.use_case, model)
        return
    folder = Path(tempfile.mkdtemp(prefix="playbook-model-stage-"))
    try:
        started = time.perf_counter()
        prepare(args.events, args.days, folder, args.use_case)
        rows = write_set(folder, args.shards, args.use_case, model)
        if args.scatter:
            scatter(folder / "set.parquet")
        splits = pd.read_parquet(folder / "set.parquet", columns=[SPLIT])[SPLIT].value_counts()
        print(
            f"{args.events:,} {args.use_case} events: {model}'s set of {rows:,} rows"
            f" ({', '.join(f'{k} {v:,}' for k, v in splits.items())}"
            f"{', rows shuffled' if args.scatter else ''}),"
            f" ready in {time.perf_counter() - started:.0f} s"
        )
        runs = {
            mode: measure_child(
                __file__, mode, folder, "--use-case", args.use_case, "--model", model
            )
            for mode in args.modes
        }
        first = args.modes[0]
        for mode, run in runs.items():
            print(
                f"{run_line(mode, run, runs[first], first, width=8)}  metric {run['metric']:.6f}"
                f" (baseline {run['baseline']:.6f})"
            )
            print("          " + ", ".join(f"{k} {v:.2f}" for k, v in run["phases"].items()))
        same = len({run["metric"] for run in runs.values()}) == 1
        print(f"  same model (primary metric) in every mode: {same}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
