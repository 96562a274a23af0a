"""Training benchmark: every model of the shipped use cases, trained once on a synthetic world.

Generates each use case's synthetic world at its config's size times ``--scale`` (volume and
entity counts of ``source.params`` multiplied, so the world keeps its shape), computes every
feature table, plans the split and builds each model's training set with the functions the
assets call, then trains each model once (``train_tabular`` or ``train_retrieval``) and prints
training rows, seconds to fit and evaluate, throughput and the primary metric beside its baseline.

    python bench/train_models.py                              # all use cases at config size
    python bench/train_models.py --use-case fraud --scale 10

On shared cores set ``OMP_NUM_THREADS=1``: with other work on a 2-core machine, PyTorch's and
LightGBM's two OpenMP threads wait on each other and the fits ran 3 to 30 times slower.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.features.views import compute_aggregate_table, compute_attribute_table, feature_tables  # noqa: E402
from assets.models.retrieval import train_retrieval  # noqa: E402
from assets.models.sequence import train_sequence_retrieval  # noqa: E402
from assets.models.train import TABULAR, train_tabular  # noqa: E402
from assets.raw.synthetic import SyntheticWorld, build_world  # noqa: E402
from assets.split.plan import mature_rows, plan_split  # noqa: E402
from assets.training.build import SPLIT, build_training_set  # noqa: E402
from assets.training.label_rows import maturity  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402
from configs.schema.model_stage import RETRIEVERS  # noqa: E402
from configs.schema.source import SyntheticSource  # noqa: E402
from configs.schema.usecase import UseCaseSpec  # noqa: E402
from runtime.funnel_roles import retrieval_keys  # noqa: E402

USE_CASES = ("feed", "fraud", "search")  # the shipped configs/<name>.yaml

# Generator params that set how much data (events per day) and how many entities a world has;
# the others (rates, biases, dimensions) set its shape and stay as configured.
VOLUME = (
    "requests_per_day",
    "transactions_per_day",
    "n_users",
    "n_items",
    "n_cards",
    "n_merchants",
    "n_queries",
    "n_documents",
)
# The retrieved entity's count, which ``catalog_scale`` multiplies on top of ``scale``.
CATALOG = ("n_items", "n_documents")


@dataclass(frozen=True)
class Result:
    """One trained model's row of the printed table."""

    use_case: str
    model: str
    problem: str
    rows: int
    train_rows: int
    seconds: float
    throughput: float
    unit: str
    primary: str
    value: float
    baseline: float


def scaled_spec(
    spec: UseCaseSpec, scale: float, days: int | None, catalog_scale: float = 1.0
) -> UseCaseSpec:
    """The spec with its synthetic volume multiplied by ``scale`` (and ``days`` if given).

    Entity counts grow with the event volume, as in ``bench/generate.py``, so per-entity
    histories (what the windowed features see) stay as dense as at the configured size.
    ``catalog_scale`` multiplies the item and document counts once more (a large catalog without
    the events a proportional world would have; ``bench/faiss_trained.py`` uses it).
    """
    source = spec.source
    if not isinstance(source, SyntheticSource):
        raise ValueError(f"{spec.name}: the benchmark needs a synthetic source")
    params = source.params
    update = {}
    for name in VOLUME:
        if hasattr(params, name):
            factor = scale * catalog_scale if name in CATALOG else scale
            update[name] = max(1, round(getattr(params, name) * factor))
    source = source.model_copy(
        update={
            "params": params.model_copy(update=update),
            "days": days if days is not None else source.days,
        }
    )
    return spec.model_copy(update={"source": source})


def generate(spec: UseCaseSpec) -> tuple[SyntheticWorld, pd.DataFrame]:
    """The world and its whole events table, day by day as the raw-events asset does."""
    source = spec.source
    world = build_world(source.params, source.seed, source.start_date, source.days)
    days = [source.start_date + timedelta(days=i) for i in range(source.days)]
    events = pd.concat([world.events_for_day(day) for day in days], ignore_index=True)
    return world, events


def write_feature_tables(
    spec: UseCaseSpec, world: SyntheticWorld, events: pd.DataFrame, directory: Path
) -> dict[str, str]:
    """Compute every feature table to Parquet; training sets read them from files, as in Dagster.

    Each frame is dropped once written, so only one feature table is in memory at a time.
    """
    created = pd.Timestamp.now().floor("us")
    paths: dict[str, str] = {}
    for table in feature_tables(spec):
        if table.kind == "aggregates":
            frame = compute_aggregate_table(spec, table, events, created)
        else:
            entity = spec.entities[table.entities[0]]
            frame = compute_attribute_table(spec, table, world.entity_table(entity.table), created)
        paths[table.name] = str(directory / f"{table.name}.parquet")
        frame.to_parquet(paths[table.name], index=False)
        del frame
    return paths


def split_plan(spec: UseCaseSpec, events: pd.DataFrame) -> pd.DataFrame:
    """The split plan as the split-plan asset makes it: over the events whose labels are final."""
    time_column = spec.events.timestamp
    labels = {name: label.column for name, label in spec.labels.items()}
    mature = events
    if time_column:
        wait = maturity(spec, list(spec.labels))
        mature = events[mature_rows(events[time_column], wait).to_numpy()]
    plan = plan_split(mature, spec.split, time_column, spec.events.group, labels)
    if time_column:
        plan["data_end"] = events[time_column].max()
    return plan


def catalog(spec: UseCaseSpec, world: SyntheticWorld, model: str) -> pd.DataFrame | None:
    """The raw entity table a model's assets take as catalog (sampled or retrieved items)."""
    stage = spec.model[model]
    if stage.problem in RETRIEVERS:
        entity = spec.entities[retrieval_keys(spec, model)[2]]
    elif stage.negatives is not None:
        entity = spec.entities[stage.negatives.entity]
    else:
        return None
    return world.entity_table(entity.table) if entity.table else None


def train_one(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame, items: pd.DataFrame | None
) -> Result:
    """Train one model as its asset does and time fit plus evaluation."""
    problem = spec.model[model].problem
    train_rows = int((frame[SPLIT] == "train").sum())
    started = time.perf_counter()
    if problem in TABULAR:
        trained = train_tabular(spec, model, frame)
        seconds = time.perf_counter() - started
        throughput, unit = train_rows / seconds, "rows/s"
    else:
        trainer = train_sequence_retrieval if problem == "sequence" else train_retrieval
        trained = trainer(spec, model, frame, items)
        seconds = time.perf_counter() - started
        throughput, unit = float(trained.model.examples_per_second), "examples/s"
    return Result(
        spec.name,
        model,
        problem,
        len(frame),
        train_rows,
        seconds,
        throughput,
        unit,
        trained.primary,
        float(trained.metrics[trained.primary]),
        float(trained.baseline_metrics.get(trained.primary, float("nan"))),
    )


def training_sets(
    spec: UseCaseSpec, models: Collection[str] | None = None
) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame | None]]:
    """Generate, featurize and split, then yield ``(model, training set, catalog)`` in turn.

    Only ``models`` (all by default) get a training set. Drop each one before taking the next,
    so peak memory is the events, one training set and one model, not all of them.
    """
    started = time.perf_counter()
    world, events = generate(spec)
    generated = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as tmp:
        paths = write_feature_tables(spec, world, events, Path(tmp))
        featured = time.perf_counter()
        plan = split_plan(spec, events)
        print(
            f"{spec.name}: {len(events):,} events over {spec.source.days} days "
            f"(generate {generated - started:.1f} s, features {featured - generated:.1f} s)",
            flush=True,
        )
        for model in spec.model:
            if models is not None and model not in models:
                continue
            items = catalog(spec, world, model)
            built_at = time.perf_counter()
            training = build_training_set(spec, model, events, plan, paths, items)
            frame = training.frame
            del training
            print(
                f"  {model}: training set {len(frame):,} rows in "
                f"{time.perf_counter() - built_at:.1f} s",
                flush=True,
            )
            yield model, frame, items
            del frame, items
            gc.collect()
    del world, events
    gc.collect()


def run_use_case(spec: UseCaseSpec) -> list[Result]:
    """Train each model of ``spec`` once on its training set."""
    results = []
    for model, frame, items in training_sets(spec):
        results.append(train_one(spec, model, frame, items))
        del frame, items  # before the next training set is built
    return results


def print_table(results: list[Result], scale: float) -> None:
    """The summary table: one row per model."""
    header = (
        f"{'use case':<8} {'model':<10} {'problem':<22} {'rows':>10} {'train rows':>10} "
        f"{'train s':>8} {'throughput':>20} {'metric':<10} {'value':>7} {'baseline':>8}"
    )
    print(f"\nscale {scale:g}")
    print(header)
    print("-" * len(header))
    for r in results:
        speed = f"{r.throughput:,.0f} {r.unit}"
        print(
            f"{r.use_case:<8} {r.model:<10} {r.problem:<22} {r.rows:>10,} {r.train_rows:>10,} "
            f"{r.seconds:>8.1f} {speed:>20} {r.primary:<10} {r.value:>7.4f} {r.baseline:>8.4f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS {peak:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--use-case", choices=(*USE_CASES, "all"), default="all")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the world's volume")
    parser.add_argument("--days", type=int, default=None, help="days to generate (config's)")
    args = parser.parse_args()
    names = USE_CASES if args.use_case == "all" else (args.use_case,)
    results: list[Result] = []
    for name in names:
        (spec,) = load_specs([CONFIG_DIR / f"{name}.yaml"])
        results += run_use_case(scaled_spec(spec, args.scale, args.days))
    print_table(results, args.scale)


if __name__ == "__main__":
    main()
