"""The FAISS index stage: kind chosen by size, search parameter tuned to the recall target."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from assets.indexing.faiss_index import (
    BuiltIndex,
    build_index,
    default_nlist,
    recall_at_k,
    smallest_passing,
)
from configs.schema.stages import IndexSpec

faiss.omp_set_num_threads(2)


def clustered(n: int, dim: int, clusters: int, seed: int, spread: float = 0.8) -> np.ndarray:
    """Unit vectors from a Gaussian mixture whose centres are fixed, so queries share them."""
    centres = np.random.default_rng(1234).standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    vectors = centres[rng.integers(0, clusters, n)] + noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)[1]


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, np.ndarray]:
    return clustered(50_000, 32, 100, seed=0), clustered(2_000, 32, 100, seed=1)


@pytest.fixture(scope="module")
def ivf(big: tuple[np.ndarray, np.ndarray]) -> BuiltIndex:
    vectors, queries = big
    spec = IndexSpec(exact_below=10_000, target_recall=0.95, k=10)
    return build_index(np.arange(len(vectors)) * 7, vectors, spec, queries=queries)


def test_recall_at_k_counts_shared_ids() -> None:
    found = np.array([[1, 2, 3], [4, 5, -1]])
    exact = np.array([[3, 2, 9], [4, 5, 6]])
    assert recall_at_k(found, exact) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert recall_at_k(exact, exact) == 1.0


def test_smallest_passing_bisects_to_the_first_passing_value() -> None:
    calls: list[int] = []

    def passes(value: int) -> bool:
        calls.append(value)
        return value >= 37

    assert smallest_passing(passes, 1, 256) == 37
    assert len(calls) < 16
    assert smallest_passing(lambda v: False, 1, 64) is None


def test_default_nlist_is_about_four_root_n_and_trainable() -> None:
    assert default_nlist(1_000_000) == 4096
    assert default_nlist(50_000) == 1024
    assert default_nlist(1_000) == 1_000 // 39


def test_small_catalog_is_exact() -> None:
    vectors = clustered(2_000, 16, 20, seed=0)
    built = build_index(np.arange(2_000), vectors, IndexSpec(k=5))
    assert built.kind == "flat"
    assert built.recall_at_k == 1.0
    ids, scores = built.search(vectors[:10], 5)
    assert (ids[:, 0] == np.arange(10)).all()
    assert scores.shape == (10, 5)


def test_large_catalog_gets_ivf_tuned_to_target(
    ivf: BuiltIndex, big: tuple[np.ndarray, np.ndarray]
) -> None:
    vectors, queries = big
    assert ivf.kind == "ivf"
    assert ivf.params["nlist"] == 1024
    assert 1 <= ivf.params["nprobe"] < ivf.params["nlist"] // 4
    assert ivf.recall_at_k >= 0.95
    # the stored recall matches what the tuned index gives on queries it never saw
    fresh = clustered(500, 32, 100, seed=2)
    found, _ = ivf.search(fresh, 10)
    measured = recall_at_k(found // 7, exact_top(vectors, fresh, 10))
    assert measured >= 0.94
    meta = ivf.metadata()
    assert meta["n"] == 50_000 and meta["dim"] == 32 and meta["params"]["nprobe"]
    assert meta["recall_at_k"] == pytest.approx(ivf.recall_at_k, abs=1e-4)


def test_tuned_nprobe_is_the_smallest_that_reaches_target(
    ivf: BuiltIndex, big: tuple[np.ndarray, np.ndarray]
) -> None:
    lower = ivf.params["nprobe"] - 1
    if lower < 1:
        return
    vectors, _ = big
    queries = clustered(1_000, 32, 100, seed=3)
    exact = exact_top(vectors, queries, 10)
    faiss.extract_index_ivf(ivf._inner).nprobe = lower
    try:
        assert recall_at_k(ivf.search(queries, 10)[0] // 7, exact) < 0.95 + 0.02
    finally:
        faiss.extract_index_ivf(ivf._inner).nprobe = ivf.params["nprobe"]


def test_hnsw_when_asked() -> None:
    vectors = clustered(10_000, 32, 50, seed=0)
    spec = IndexSpec(kind="hnsw", hnsw_m=16, target_recall=0.9, k=10)
    built = build_index(np.arange(10_000), vectors, spec)
    assert built.kind == "hnsw"
    assert built.params["M"] == 16 and built.params["efSearch"] >= 10
    assert built.recall_at_k >= 0.9


def test_string_ids_round_trip(tmp_path) -> None:
    vectors = clustered(12_000, 16, 30, seed=0)
    ids = np.array([f"item-{i}" for i in range(12_000)], dtype=object)
    built = build_index(ids, vectors, IndexSpec(exact_below=1_000, k=5))
    assert built.kind == "ivf"
    found, _ = built.search(vectors[:20], 5)
    assert found.dtype.kind == "U"
    assert (found[:, 0] == ids[:20].astype(str)).mean() >= 0.9
    loaded = BuiltIndex.load(built.save(tmp_path / "index"))
    assert (loaded.search(vectors[:20], 5)[0] == found).all()


def test_save_load_gives_identical_results(ivf: BuiltIndex, tmp_path) -> None:
    queries = clustered(300, 32, 100, seed=4)
    before_ids, before_scores = ivf.search(queries, 10)
    loaded = BuiltIndex.load(ivf.save(tmp_path / "index"))
    after_ids, after_scores = loaded.search(queries, 10)
    assert (after_ids == before_ids).all()
    np.testing.assert_array_equal(after_scores, before_scores)
    assert loaded.kind == "ivf" and loaded.params == ivf.params
    assert loaded.recall_at_k == ivf.recall_at_k


def test_unreachable_target_falls_back_to_exact() -> None:
    vectors = np.random.default_rng(0).standard_normal((6_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = IndexSpec(kind="ivf", target_recall=1.0, k=10)
    with pytest.warns(UserWarning, match="exact search"):
        built = build_index(np.arange(6_000), vectors, spec)
    assert built.kind == "flat"
    assert built.params["fallback_from"] == "ivf"
    assert built.recall_at_k == 1.0
    ids, _ = built.search(vectors[:5], 10)
    assert (ids[:, 0] == np.arange(5)).all()


def test_mismatched_inputs_are_rejected() -> None:
    vectors = clustered(100, 8, 4, seed=0)
    with pytest.raises(ValueError, match="ids but"):
        build_index(np.arange(99), vectors, IndexSpec())
    with pytest.raises(ValueError, match="unique"):
        build_index(np.zeros(100, dtype=np.int64), vectors, IndexSpec())
