"""Candidate sources of the shipped feed side by side: the sequence model, the two-tower, popular.

Builds the feed's world, features, split and the two retrievers' training sets with the
functions the assets call (``bench/train_models.py``), trains ``retrieval`` (two-tower) and
``next_item`` (sequence) once per ``--seeds`` value, and prints recall@k and hit_rate@k of each
beside the popularity ranking on the same test users, items removed and fallbacks as the model
assets evaluate them (:mod:`assets.models.retrieval_eval`), plus the seconds each fit took.
``--merged`` also scores the served merge of both lists (by rank, repeats dropped).

    OMP_NUM_THREADS=1 python bench/sequence_vs_two_tower.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.models.retrieval import train_retrieval  # noqa: E402
from assets.models.sequence import train_sequence_retrieval  # noqa: E402
from assets.training.build import SPLIT  # noqa: E402
from bench.train_models import training_sets  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402
from runtime.funnel_roles import merge_candidates, retrieval_keys  # noqa: E402

KS = [20, 10, 50]
TRAINERS = {"two_tower": train_retrieval, "sequence": train_sequence_retrieval}


def merged_recall(fitted: dict, frames: dict, spec, k: int) -> float:
    """recall@k of the served merge of every retriever's top k (warm users only by rank)."""
    model = next(iter(fitted))
    user_key, item_key, _ = retrieval_keys(spec, model)
    frame = frames[model]
    label = spec.labels[spec.model[model].labels[0]].column
    train = frame[(frame[SPLIT] == "train") & (frame[label] > 0)]
    test = frame[(frame[SPLIT] == "test") & (frame[label] > 0)]
    seen = train.groupby(user_key)[item_key].agg(set).to_dict()
    future = test.groupby(user_key)[item_key].agg(set).to_dict()
    lists: dict[str, dict] = {}
    popular = train[item_key].value_counts().index.tolist()
    for name, trained in fitted.items():
        rows = frames[name][frames[name][SPLIT] == "test"].drop_duplicates(user_key, keep="first")
        vectors = trained.model.user_vectors(rows)
        ids, items = trained.item_ids, trained.item_vectors
        lists[name] = {
            user: ids[np.argsort(-(items @ vector), kind="stable")].tolist()
            for user, vector in vectors.items()
        }
    recalls = []
    for user, wanted in future.items():
        wanted = wanted - seen.get(user, set())
        if not wanted:
            continue
        banned = seen.get(user, set())
        pools = {
            name: [i for i in ranked[user] if i not in banned][:k]
            for name, ranked in lists.items()
            if user in ranked
        }
        pools = pools or {"popular": [i for i in popular if i not in banned][:k]}
        merged, _ = merge_candidates(pools, k)
        recalls.append(len(set(merged) & wanted) / len(wanted))
    return float(np.mean(recalls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--merged", action="store_true")
    args = parser.parse_args()
    (spec,) = load_specs([CONFIG_DIR / "feed.yaml"])
    spec = spec.model_copy(update={"metrics": spec.metrics.model_copy(update={"k": KS})})
    retrievers = [m for m, s in spec.model.items() if s.problem in TRAINERS]
    frames = {m: (frame, items) for m, frame, items in training_sets(spec, retrievers)}
    # the catalog as the model assets read it (the item entity's table), for every retriever
    catalog = next((items for _, items in frames.values() if items is not None), None)
    frames = {
        m: (frame, catalog if items is None else items) for m, (frame, items) in frames.items()
    }
    rows = []
    for seed in args.seeds:
        fitted = {}
        for model in retrievers:
            stage = spec.model[model]
            seeded = stage.model_copy(update={"params": {**stage.params, "seed": seed}})
            seeded_spec = spec.model_copy(update={"model": {**spec.model, model: seeded}})
            frame, items = frames[model]
            started = time.perf_counter()
            trained = TRAINERS[stage.problem](seeded_spec, model, frame, items)
            seconds = time.perf_counter() - started
            fitted[model] = trained
            for name, metrics in ((model, trained.metrics), ("popular", trained.baseline_metrics)):
                rows.append(
                    {
                        "seed": seed,
                        "source": f"{name} ({spec.model[model].problem})"
                        if name == model
                        else f"popular (for {model})",
                        **{f"recall@{k}": metrics[f"recall@{k}"] for k in KS},
                        "hit_rate@20": metrics["hit_rate@20"],
                        "users": int(metrics["users"]),
                        "fit+eval s": round(seconds, 1) if name == model else None,
                        "train s": round(trained.model.train_seconds, 1) if name == model else None,
                    }
                )
        if args.merged:
            rows.append(
                {
                    "seed": seed,
                    "source": "merged (served rule)",
                    "recall@20": merged_recall(
                        fitted, {m: f for m, (f, _) in frames.items()}, spec, 20
                    ),
                }
            )
    print(pd.DataFrame(rows).round(4).to_markdown(index=False))


if __name__ == "__main__":
    main()
