"""Nearest-neighbour index over item embeddings, picked by catalog size and tuned to a recall target.

Item embeddings are L2-normalised float32 vectors, so inner product is cosine similarity and every
index here uses ``METRIC_INNER_PRODUCT``. Small catalogs get exact search (``IndexFlatIP``): below
a few tens of thousands of items brute force is fast enough and an approximate index only adds
error. Larger catalogs get IVF, whose one search knob (``nprobe``) is not hand-picked but chosen at
build time as the smallest value whose recall@k against exact search reaches the YAML target
(``IndexSpec.target_recall``) on a sample of queries; HNSW is tuned the same way on ``efSearch``
when asked for. When no setting in a useful range reaches the target, the build falls back to
exact search and says so, rather than silently shipping an index below the target.

Recall is measured twice: once on tuning queries to pick the setting, then on held-out queries that
played no part in the choice, and the latter is what ``BuiltIndex.recall_at_k`` reports.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from configs.schema.stages import IndexSpec
from runtime.ann_index import BuiltIndex, apply_search_params, as_vectors

log = logging.getLogger(__name__)

MIN_POINTS_PER_LIST = 39  # below this FAISS k-means warns and centroids are noise
TRAIN_POINTS_PER_LIST = 50  # k-means sample per list: stable centroids, bounded training time
MAX_NLIST = 65_536
MAX_SCAN_FRACTION = 0.25  # probing more lists than this is no longer meaningfully faster
MAX_EF_SEARCH = 2_048
CONFIDENCE_Z = 3.0  # tuned recall must clear the target by three standard errors


# ---------------------------------------------------------------- recall


def per_query_recall(found_ids: np.ndarray, exact_ids: np.ndarray) -> np.ndarray:
    """Share of each query's exact top-k that the approximate search found, one value per query.

    Missing results (``-1``, or fewer than k items in the catalog) count as misses in ``found`` and
    are left out of the denominator in ``exact``, so a catalog smaller than k still scores 1.0.
    """
    found = np.asarray(found_ids)
    exact = np.asarray(exact_ids)
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"{found.shape[0]} found rows but {exact.shape[0]} exact rows")
    valid = exact != -1
    hits = np.zeros(found.shape[0], dtype=np.int64)
    for start in range(0, found.shape[0], 1024):  # chunks keep the k x k comparison small
        f = found[start : start + 1024]
        e = exact[start : start + 1024]
        match = (f[:, :, None] == e[:, None, :]) & valid[start : start + 1024, None, :]
        hits[start : start + 1024] = match.any(axis=1).sum(axis=1)
    wanted = np.maximum(valid.sum(axis=1), 1)
    return hits / wanted


def recall_at_k(found_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean recall@k of ``found_ids`` against ``exact_ids`` (both shaped ``(queries, k)``)."""
    if len(found_ids) == 0:
        return 1.0
    return float(per_query_recall(found_ids, exact_ids).mean())


def _recall_lower_bound(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean recall minus ``CONFIDENCE_Z`` standard errors.

    Tuning picks the *smallest* passing setting, so a setting chosen on the plain mean lands right
    at the target and falls below it on about half of the unseen queries. Requiring the lower
    bound to pass makes the held-out recall meet the target with high probability.
    """
    recalls = per_query_recall(found, exact)
    if len(recalls) < 2:
        return float(recalls.mean()) if len(recalls) else 1.0
    stderr = recalls.std(ddof=1) / math.sqrt(len(recalls))
    return float(recalls.mean() - CONFIDENCE_Z * stderr)


# ---------------------------------------------------------------- choices


def default_nlist(n: int) -> int:
    """About ``4 * sqrt(n)`` lists, rounded to a power of two and clipped to what n can train.

    Four times the square root balances the two costs of an IVF search (scanning centroids and
    scanning lists); each list needs ``MIN_POINTS_PER_LIST`` training points to be a real cluster.
    """
    wanted = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))
    return _clip_nlist(wanted, n)


def _clip_nlist(nlist: int, n: int) -> int:
    return int(max(1, min(nlist, n // MIN_POINTS_PER_LIST, MAX_NLIST)))


def choose_kind(n: int, spec: IndexSpec) -> str:
    """The index kind for a catalog of ``n`` items: exact below ``exact_below``, else IVF.

    HNSW is only used when named: in ``bench/faiss_index.py`` (1M x 64, recall@10 ~0.96, 2
    threads) it served batched queries at a quarter of IVF's rate and took twice as long to build,
    though it answered single queries about twice as fast; it also holds a graph in memory.
    """
    if spec.kind != "auto":
        return spec.kind
    return "flat" if n < spec.exact_below else "ivf"


# ---------------------------------------------------------------- the index


# ---------------------------------------------------------------- building


def build_index(
    ids: np.ndarray,
    vectors: np.ndarray,
    spec: IndexSpec,
    queries: np.ndarray | None = None,
    *,
    sample_queries: int = 1_000,
    seed: int = 0,
) -> BuiltIndex:
    """Build the index ``spec`` asks for over ``vectors`` and tune it to ``spec.target_recall``.

    ``queries`` should look like production queries (e.g. user embeddings); without them a sample
    of the item vectors stands in. Up to ``sample_queries`` of them tune the search parameter and
    as many again, never seen by the tuning, measure the recall that is reported.
    """
    start = time.perf_counter()
    ids, vectors = _as_ids(ids), as_vectors(vectors)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
    kind = choose_kind(len(vectors), spec)
    k = max(1, min(spec.k, len(vectors)))
    if kind == "flat":
        return _flat_index(ids, vectors, k, {}, start)

    rng = np.random.default_rng(seed)
    tune_q, held_q = _tuning_queries(vectors, queries, sample_queries, rng)
    exact_tune, exact_held = _exact_neighbors(vectors, [tune_q, held_q], k)
    inner, params = _empty_ann(kind, vectors, spec, rng)
    outer = _add(inner, ids, vectors)
    name, limit = _knob(kind, params, k)
    value = _tune(inner, kind, tune_q, exact_tune, k, spec.target_recall, limit)
    if value is None:
        reason = (
            f"no {name} up to {limit} reached recall@{k} {spec.target_recall} "
            f"(with a {CONFIDENCE_Z}-standard-error margin); using exact search"
        )
        warnings.warn(f"{kind} index: {reason}", stacklevel=2)
        log.warning("%s index: %s", kind, reason)
        return _flat_index(ids, vectors, k, {"fallback_from": kind, "reason": reason}, start)

    params[name] = value
    apply_search_params(inner, kind, params)
    measured = recall_at_k(_positions(inner, held_q, k), exact_held)
    log.info("%s index: %s=%d, held-out recall@%d %.4f", kind, name, value, k, measured)
    return BuiltIndex(
        index=outer,
        ids=ids,
        kind=kind,
        params=params,
        recall_at_k=measured,
        build_seconds=time.perf_counter() - start,
        k=k,
        _inner=inner,
    )


def _flat_index(
    ids: np.ndarray, vectors: np.ndarray, k: int, params: dict[str, Any], start: float
) -> BuiltIndex:
    """Exact search: recall 1.0 by construction, so nothing to tune or measure."""
    inner = faiss.IndexFlatIP(vectors.shape[1])
    outer = _add(inner, ids, vectors)
    return BuiltIndex(
        index=outer,
        ids=ids,
        kind="flat",
        params=params,
        recall_at_k=1.0,
        build_seconds=time.perf_counter() - start,
        k=k,
        _inner=inner,
    )


def _empty_ann(
    kind: str, vectors: np.ndarray, spec: IndexSpec, rng: np.random.Generator
) -> tuple[faiss.Index, dict[str, Any]]:
    """A trained, still empty IVF or HNSW index and the build parameters it was made with."""
    n, dim = vectors.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        # 2*M candidates while linking: a common default that keeps the graph well connected
        # without the build cost of FAISS's larger presets.
        index.hnsw.efConstruction = max(40, 2 * spec.hnsw_m)
        return index, {"M": spec.hnsw_m, "efConstruction": index.hnsw.efConstruction}
    if kind != "ivf":
        raise ValueError(f"unknown index kind {kind!r}")
    nlist = _clip_nlist(spec.nlist, n) if spec.nlist else default_nlist(n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical = True  # unit-norm centroids: lists are cones, as cosine wants
    sample = min(n, TRAIN_POINTS_PER_LIST * nlist)
    rows = np.sort(rng.choice(n, size=sample, replace=False)) if sample < n else slice(None)
    index.train(np.ascontiguousarray(vectors[rows]))
    return index, {"nlist": nlist, "train_points": int(sample)}


def _add(inner: faiss.Index, ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """Add the vectors; integer ids go through an ``IndexIDMap2``, string ids stay positional."""
    if not np.issubdtype(ids.dtype, np.integer):
        inner.add(vectors)
        return inner
    outer = faiss.IndexIDMap2(inner)
    outer.add_with_ids(vectors, ids)
    return outer


def _knob(kind: str, params: dict[str, Any], k: int) -> tuple[str, int]:
    """The search parameter to tune and the largest value worth trying."""
    if kind == "ivf":
        return "nprobe", max(1, int(params["nlist"] * MAX_SCAN_FRACTION))
    return "efSearch", max(k, MAX_EF_SEARCH)


def _tune(
    inner: faiss.Index,
    kind: str,
    queries: np.ndarray,
    exact: np.ndarray,
    k: int,
    target: float,
    limit: int,
) -> int | None:
    """Smallest search setting whose tuning recall (lower bound) reaches ``target``, or None."""
    tried: dict[int, bool] = {}

    def passes(value: int) -> bool:
        if value not in tried:
            apply_search_params(inner, kind, {"nprobe": value, "efSearch": value})
            tried[value] = _recall_lower_bound(_positions(inner, queries, k), exact) >= target
        return tried[value]

    first = 1 if kind == "ivf" else k
    return smallest_passing(passes, first, limit)


def smallest_passing(passes: Callable[[int], bool], low: int, high: int) -> int | None:
    """Smallest integer in ``[low, high]`` for which ``passes`` holds, assuming it is monotone.

    Doubles from ``low`` until a value passes, then bisects the last gap, so the cost is about
    ``2 * log2(high)`` evaluations rather than one per value.
    """
    failing, value = low - 1, low
    while not passes(value):
        if value >= high:
            return None
        failing, value = value, min(high, value * 2)
    lo, hi = failing + 1, value
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def _positions(inner: faiss.Index, queries: np.ndarray, k: int) -> np.ndarray:
    """Search the inner index, whose labels are positions in the order vectors were added."""
    return inner.search(queries, k)[1]


# ---------------------------------------------------------------- queries and truth


def _tuning_queries(
    vectors: np.ndarray,
    queries: np.ndarray | None,
    sample: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint tuning and held-out query sets, from ``queries`` or else from the vectors."""
    pool = vectors if queries is None else as_vectors(queries)
    if pool.shape[1] != vectors.shape[1]:
        raise ValueError(f"queries have dim {pool.shape[1]}, vectors {vectors.shape[1]}")
    take = min(len(pool), 2 * sample)
    rows = rng.choice(len(pool), size=take, replace=False)
    half = max(1, take // 2)
    return np.ascontiguousarray(pool[rows[:half]]), np.ascontiguousarray(pool[rows[half:]])


def _exact_neighbors(vectors: np.ndarray, query_sets: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Exact top-k positions for each query set, the truth recall is measured against."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return [flat.search(queries, k)[1] for queries in query_sets]


def _as_ids(ids: np.ndarray) -> np.ndarray:
    """int64 for integer ids, unicode for anything else; ids must be unique."""
    array = np.asarray(ids)
    array = array.astype(np.int64) if np.issubdtype(array.dtype, np.integer) else array.astype(str)
    if array.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {array.shape}")
    if len(np.unique(array)) != len(array):
        raise ValueError("ids must be unique")
    return array
