"""FAISS over trained two-tower item embeddings: exact ``IndexFlatIP`` beside the tuned indexes.

Trains the two-tower model of each use case (feed's and search's ``retrieval``) as
``bench/train_models.py`` does, on a synthetic world scaled by ``--scale`` whose catalog
``--catalog-scale`` enlarges once more, embeds the whole catalog with the item tower, then
measures what ``bench/faiss_index.py`` measures on clustered vectors (build seconds, QPS batched
and one query at a time, recall@k against exact search) with the same ``IndexSpec.target_recall``
tuning. Queries are query-tower vectors of real users, one per warm user (a user the served path
ranks with the model): test-split users are the bench queries and training-split users tune the
index, so no query both tunes and measures it. A last row tunes on item vectors instead, as the
index asset does, which has no user queries. ``--cache`` keeps the vectors and queries, so a
second run measures the indexes without training again.

Below ``IndexSpec.exact_below`` items ``auto`` is exact search, so IVF is then asked for by name.

On 100k trained item vectors (2 threads) IVF tuned on user queries met the 0.95 target on unseen
users (recall@10 0.958 feed, 0.967 search) at 16x exact's batched QPS and 40-50x its single-query
QPS. Tuned on item vectors, the same IVF reported 0.96-0.97 held-out recall on items yet reached
only 0.88 (feed), 0.85 (search) and 0.46 (feed with a 90%-cold catalog) on user queries: a user's
neighbourhood among items is harder to probe than an item's, so item queries pick too small an
``nprobe``.

    python bench/faiss_trained.py --use-case feed --scale 10 --catalog-scale 10   # 100k items
    python bench/faiss_trained.py --use-case search --no-hnsw
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.models.retrieval import train_retrieval  # noqa: E402
from assets.training.build import SPLIT  # noqa: E402
from bench.faiss_index import run_built, run_exact, table  # noqa: E402
from bench.train_models import scaled_spec, training_sets  # noqa: E402
from configs import CONFIG_DIR  # noqa: E402
from configs.schema import load_specs  # noqa: E402
from configs.schema.stages import IndexSpec  # noqa: E402

USE_CASES = ("feed", "search")  # the shipped configs with a two-tower model


def user_queries(tower, rows: pd.DataFrame, limit: int, seed: int) -> np.ndarray:
    """Query-tower vectors of up to ``limit`` warm users of ``rows`` (their last row each)."""
    vectors = np.stack(list(tower.user_vectors(rows, warm_only=True).values()))
    if len(vectors) > limit:
        vectors = vectors[np.random.default_rng(seed).choice(len(vectors), limit, replace=False)]
    return np.ascontiguousarray(vectors, dtype=np.float32)


def embed(spec, model: str, frame: pd.DataFrame, items, args: argparse.Namespace) -> dict:
    """Train ``model``; its catalog vectors plus bench and tuning user queries."""
    started = time.perf_counter()
    trained = train_retrieval(spec, model, frame, items)
    tower = trained.model
    vectors = np.ascontiguousarray(trained.item_vectors, dtype=np.float32)
    warm = pd.Index(tower.item_ids).get_indexer(trained.item_ids) >= 0
    data = {
        "vectors": vectors,
        "queries": user_queries(tower, frame[frame[SPLIT] == "test"], args.queries, 2),
        "tuning": user_queries(tower, frame[frame[SPLIT] == "train"], 2_000, 3),
    }
    primary = trained.primary
    print(
        f"  {model}: trained in {time.perf_counter() - started:.1f} s ({primary} "
        f"{trained.metrics[primary]:.4f}, popularity {trained.baseline_metrics[primary]:.4f}); "
        f"{warm.mean():.1%} of the catalog with a learned id",
        flush=True,
    )
    return data


def cache_path(spec, model: str, args: argparse.Namespace) -> Path | None:
    """Where ``--cache`` keeps a model's vectors and queries, named by the world's size."""
    if args.cache is None:
        return None
    size = f"s{args.scale:g}-c{args.catalog_scale:g}-d{spec.source.days}"
    return args.cache / f"{spec.name}-{model}-{size}.npz"


def embeddings(spec, args: argparse.Namespace) -> Iterator[tuple[str, dict]]:
    """``(model, vectors and queries)`` per two-tower model: read from ``--cache``, or trained."""
    towers = [m for m, stage in spec.model.items() if stage.problem == "two_tower"]
    paths = {m: cache_path(spec, m, args) for m in towers}
    missing = [m for m in towers if paths[m] is None or not paths[m].exists()]
    for model in towers:
        if model not in missing:
            print(f"{spec.name} {model}: embeddings from {paths[model]}", flush=True)
            with np.load(paths[model]) as saved:
                yield model, dict(saved)
    for model, frame, items in training_sets(spec, missing) if missing else ():
        data = embed(spec, model, frame, items, args)
        del frame, items
        if paths[model] is not None:
            paths[model].parent.mkdir(parents=True, exist_ok=True)
            np.savez(paths[model], **data)
        yield model, data


def bench(data: dict, args: argparse.Namespace) -> list[dict]:
    """Exact, the tuned IVF (auto, or named below ``exact_below``), HNSW, IVF tuned on items."""
    n = len(data["vectors"])
    ann = "auto" if n >= IndexSpec().exact_below else "ivf"
    specs = {ann: IndexSpec(kind=ann, target_recall=args.target, k=args.k)}
    if not args.no_hnsw:
        specs["hnsw M=32"] = IndexSpec(kind="hnsw", hnsw_m=32, target_recall=args.target, k=args.k)
    rows = [run_exact(args, data)]
    rows += [run_built(args, data, spec, f"{name}, user-tuned") for name, spec in specs.items()]
    rows.append(run_built(args, {**data, "tuning": None}, specs[ann], f"{ann}, item-tuned"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--use-case", choices=(*USE_CASES, "all"), default="feed")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the world's volume")
    parser.add_argument("--catalog-scale", type=float, default=1.0, help="and its catalog again")
    parser.add_argument("--days", type=int, default=None, help="days to generate (config's)")
    parser.add_argument("--queries", type=int, default=10_000, help="Most test users queried.")
    parser.add_argument("--single", type=int, default=300, help="Queries timed one at a time.")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.95, help="IndexSpec.target_recall.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-hnsw", action="store_true", help="Skip HNSW (slow to build).")
    parser.add_argument("--cache", type=Path, help="Folder keeping the embeddings between runs.")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    names = USE_CASES if args.use_case == "all" else (args.use_case,)
    for name in names:
        (spec,) = load_specs([CONFIG_DIR / f"{name}.yaml"])
        spec = scaled_spec(spec, args.scale, args.days, args.catalog_scale)
        for model, data in embeddings(spec, args):
            vectors = data["vectors"]
            print(f"  catalog {len(vectors):,} x {vectors.shape[1]}, "
                  f"{len(np.unique(vectors.round(4), axis=0)):,} distinct; "
                  f"{len(data['queries']):,} test-user queries, "
                  f"{len(data['tuning']):,} tuning", flush=True)  # fmt: skip
            rows = bench(data, args)
            print(
                f"\n{name} {model}: scale={args.scale:g} catalog-scale={args.catalog_scale:g} "
                f"n={len(data['vectors']):,} dim={data['vectors'].shape[1]} "
                f"queries={len(data['queries']):,} k={args.k} target={args.target} "
                f"threads={args.threads}"
            )
            print(table(rows), flush=True)


if __name__ == "__main__":
    main()
