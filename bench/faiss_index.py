"""FAISS index: exact ``IndexFlatIP`` beside the auto-tuned IVF and HNSW from ``build_index``.

Builds unit vectors shaped like real embeddings, a Gaussian mixture on the sphere with uneven
cluster sizes and spreads (not uniform noise, on which every ANN index looks bad and which no
embedding model produces), plus separate query and tuning draws from the same mixture. Then for
each method reports build seconds (for IVF/HNSW: training, adding and tuning), queries per second
batched and one query at a time, and recall@k of the bench queries against exact search, with
ratios to exact. IVF and HNSW parameters come from ``IndexSpec.target_recall``; none is set here.

    python bench/faiss_index.py                                   # 1M x 64, 1000 clusters
    python bench/faiss_index.py --n 200000 --queries 2000 --no-hnsw
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from tabulate import tabulate

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assets.indexing.faiss_index import build_index, recall_at_k  # noqa: E402
from configs.schema.stages import IndexSpec  # noqa: E402

Search = Callable[[np.ndarray, int], np.ndarray]


def mixture(n: int, dim: int, clusters: int, seed: int, chunk: int = 200_000) -> np.ndarray:
    """Unit vectors from a fixed Gaussian mixture on the sphere (centres from seed 0).

    Cluster weights are log-normal (a few big topics, many small ones) and each cluster has its
    own spread, so list sizes and neighbourhood densities vary as they do in real catalogs.
    """
    shape = np.random.default_rng(0)
    centres = shape.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = shape.lognormal(0.0, 1.0, clusters)
    spreads = shape.uniform(0.6, 1.0, clusters).astype(np.float32) / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    members = rng.choice(clusters, size=n, p=weights / weights.sum())
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = members[start : start + chunk]
        noise = rng.standard_normal((len(rows), dim)).astype(np.float32)
        block = centres[rows] + noise * spreads[rows, None]
        out[start : start + chunk] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def batched_qps(search: Search, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    found = search(queries, k)
    return len(queries) / (time.perf_counter() - start), found


def single_qps(search: Search, queries: np.ndarray, k: int) -> float:
    start = time.perf_counter()
    for row in range(len(queries)):
        search(queries[row : row + 1], k)
    return len(queries) / (time.perf_counter() - start)


def measure(
    name: str, params: str, build_s: float, search: Search, args: argparse.Namespace, data: dict
) -> dict:
    qps, found = batched_qps(search, data["queries"], args.k)
    one = single_qps(search, data["queries"][: args.single], args.k)
    recall = recall_at_k(found, data["exact"]) if "exact" in data else 1.0
    print(f"  {name}: {qps:,.0f} q/s batched, {one:,.0f} q/s single, recall {recall:.4f}")
    return {"method": name, "params": params, "build_s": build_s, "qps": qps, "single": one,
            "recall": recall, "found": found}  # fmt: skip


def run_exact(args: argparse.Namespace, data: dict) -> dict:
    start = time.perf_counter()
    flat = faiss.IndexFlatIP(data["vectors"].shape[1])
    flat.add(data["vectors"])
    build_s = time.perf_counter() - start
    row = measure("exact IndexFlatIP", "-", build_s, lambda q, k: flat.search(q, k)[1], args, data)
    data["exact"] = row["found"]
    return row


def run_built(args: argparse.Namespace, data: dict, spec: IndexSpec, name: str) -> dict:
    ids = np.arange(len(data["vectors"]), dtype=np.int64)
    built = build_index(ids, data["vectors"], spec, queries=data["tuning"])
    params = ", ".join(f"{key}={value}" for key, value in built.params.items())
    print(f"  {name}: built {built.kind} in {built.build_seconds:.1f}s ({params}), "
          f"held-out recall {built.recall_at_k:.4f}")  # fmt: skip
    label = f"{name} -> {built.kind}"
    return measure(label, params, built.build_seconds, lambda q, k: built.search(q, k)[0], args,
                   data)  # fmt: skip


def table(rows: list[dict]) -> str:
    exact = rows[0]
    body = [
        [
            row["method"],
            row["params"],
            f"{row['build_s']:.1f}",
            f"{row['qps']:,.0f}",
            f"{row['qps'] / exact['qps']:.1f}x",
            f"{row['single']:,.0f}",
            f"{row['single'] / exact['single']:.1f}x",
            f"{row['recall']:.4f}",
        ]
        for row in rows
    ]
    headers = ["method", "params", "build s", "QPS batched", "vs exact", "QPS 1-at-a-time",
               "vs exact", "recall@k"]  # fmt: skip
    return tabulate(body, headers=headers, disable_numparse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=300, help="Queries timed one at a time.")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.95, help="IndexSpec.target_recall.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-hnsw", action="store_true", help="Skip HNSW (slow to build).")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)

    start = time.perf_counter()
    data = {
        "vectors": mixture(args.n, args.dim, args.clusters, seed=1),
        "queries": mixture(args.queries, args.dim, args.clusters, seed=2),
        "tuning": mixture(2_000, args.dim, args.clusters, seed=3),
    }
    print(f"data: {args.n:,} x {args.dim}, {args.clusters} clusters, "
          f"{args.queries:,} queries in {time.perf_counter() - start:.1f}s; "
          f"{args.threads} threads")  # fmt: skip
    rows = [run_exact(args, data)]
    auto = IndexSpec(kind="auto", target_recall=args.target, k=args.k)
    rows.append(run_built(args, data, auto, "auto"))
    if not args.no_hnsw:
        hnsw = IndexSpec(kind="hnsw", hnsw_m=32, target_recall=args.target, k=args.k)
        rows.append(run_built(args, data, hnsw, "hnsw M=32"))
    print()
    print(f"n={args.n:,} dim={args.dim} clusters={args.clusters} queries={args.queries:,} "
          f"k={args.k} target={args.target} threads={args.threads}")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
