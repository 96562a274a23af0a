"""How Ray Train's LightGBM workers are laid out and fed, without a cluster.

Rows are dealt to the workers (every shard spans the whole time range), a ranker's query
groups whole; one worker per node; and a learner outside a Ray execution never imports Ray.
"""

from __future__ import annotations

import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from runtime.ray_lightgbm import dataset_parts, shard_rows
from runtime.ray_workers import WorkerLayout, worker_layout


def test_rows_are_dealt_so_every_shard_spans_the_whole_range() -> None:
    shards = shard_rows(10, 3)
    assert [s.tolist() for s in shards] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    with pytest.raises(ValueError, match="2 training rows cannot feed 3 Ray Train workers"):
        shard_rows(2, 3)


@pytest.mark.parametrize("seed", range(5))
def test_query_groups_are_dealt_whole_and_every_row_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.integers(1, 30, size=200)
    group_of_row = np.repeat(np.arange(len(groups)), groups)
    shards = shard_rows(int(groups.sum()), 4, groups)
    assert sorted(np.concatenate(shards).tolist()) == list(range(int(groups.sum())))
    owners = [set(group_of_row[rows].tolist()) for rows in shards]
    assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1 :]), "no split"
    for rows, owned in zip(shards, owners, strict=True):
        assert len(rows) == groups[sorted(owned)].sum(), "a shard holds its groups whole"
        assert np.all(np.diff(rows) > 0), "rows keep their order, so groups stay consecutive"
    with pytest.raises(ValueError, match="2 query groups cannot feed 3 Ray Train workers whole"):
        shard_rows(101, 3, np.array([100, 1]))


def test_dataset_parts_carry_each_shards_rows_labels_weights_and_groups() -> None:
    frame = pd.DataFrame({"x": np.arange(10.0), "c": pd.Categorical(list("ab") * 5)})
    dataset = lgb.Dataset(frame, label=np.arange(10) % 2, weight=np.arange(10.0), group=[4, 3, 3])
    first, second = dataset_parts(dataset, [np.arange(4), np.arange(4, 10)])
    assert first["data"]["x"].tolist() == [0, 1, 2, 3]
    assert list(first["data"]["c"].cat.categories) == ["a", "b"], "pandas categories kept"
    assert first["group"].tolist() == [4] and second["group"].tolist() == [3, 3]
    assert second["label"].tolist() == [0, 1, 0, 1, 0, 1]
    assert second["weight"].tolist() == [4, 5, 6, 7, 8, 9]
    assert second["init_score"] is None


def test_one_worker_per_node_sized_by_the_smallest_node() -> None:
    assert worker_layout([4, 8, 0]) == WorkerLayout(2, 4.0)
    assert worker_layout([1, 1]) == WorkerLayout(2, 1.0)
    single = worker_layout([6])
    assert (single.workers, single.cpus, single.threads) == (2, 3.0, 3)
    assert worker_layout([1]).threads == 1  # two workers sharing one CPU, one thread each
    with pytest.raises(ValueError, match="no node with a CPU"):
        worker_layout([0])


def test_a_learner_outside_a_ray_execution_never_imports_ray() -> None:
    script = """
import sys
import numpy as np
import pandas as pd
from assets.models.classifier import train_classifier
rng = np.random.default_rng(0)
frame = pd.DataFrame({"f__x": rng.normal(size=400)})
frame["y"] = (frame["f__x"] + rng.normal(size=400) > 1).astype(int)
train_classifier(frame[:300], frame[300:].reset_index(drop=True), ["f__x"], "y")
assert "ray" not in sys.modules, sorted(m for m in sys.modules if m.startswith("ray"))[:5]
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
