"""The training set's MLflow dataset: a digest of every row, a sampled schema, no rows kept."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pandas as pd
from upath import UPath

from assets.training.set_splits import file_chunks
from resources.mlflow_dataset import (
    TARGETS_TAG,
    TrainingData,
    frame_digest,
    input_tags,
    sampled_schema,
    set_sample,
    training_dataset,
)
from runtime.table_chunks import Chunks


def frame(n: int = 30_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    count = pd.array(rng.poisson(3, size=n), dtype="Int64")
    count[-1] = pd.NA  # the only null is in the last row: a sample would miss it
    return pd.DataFrame(
        {
            "card_id": rng.integers(0, 500, size=n),
            "is_fraud": rng.integers(0, 2, size=n),
            "amount": rng.normal(size=n),
            "count_1d": count,
            "country": rng.choice(["FR", "US"], size=n).astype(object),
            "recent": [np.arange(3)] * n,  # a list feature
            "split": pd.Categorical(rng.choice(["train", "test"], size=n)),
        }
    )


def test_digest_covers_every_row_and_is_stable() -> None:
    data = frame()
    digest = frame_digest(data)
    assert len(digest) == 8 and frame_digest(data.copy()) == digest
    later = data.copy()
    later.loc[len(later) - 1, "amount"] += 1.0  # beyond MLflow's first 10,000 rows
    assert frame_digest(later) != digest
    text = data.copy()
    text.loc[len(text) - 1, "country"] = "BR"
    assert frame_digest(text) != digest
    assert frame_digest(data.head(len(data) - 1)) != digest


def test_schema_is_sampled_but_required_comes_from_every_row() -> None:
    schema = sampled_schema(frame(), rows=500).to_dict()
    assert [c["name"] for c in schema] == list(frame().columns)
    required = {c["name"]: c["required"] for c in schema}
    assert not required["count_1d"]  # its one null is outside the sample
    assert required["amount"] and required["recent"]
    assert next(c for c in schema if c["name"] == "recent")["type"] == "array"


def test_dataset_entity_holds_no_rows_and_names_its_source_and_targets() -> None:
    data = TrainingData(
        frame(), "fraud/training_sets/scorer", "/data/scorer.parquet", ("is_fraud",)
    )
    started = time.perf_counter()
    dataset = training_dataset(data)
    entity = dataset.to_dict()
    assert time.perf_counter() - started < 5  # MLflow's own inference walks every list value
    assert dataset.targets == "is_fraud"
    assert json.loads(entity["source"]) == {"uri": "/data/scorer.parquet"}
    assert json.loads(entity["profile"]) == {"num_rows": 30_000, "num_elements": 210_000}
    assert len(json.dumps(entity)) < 2_000
    assert input_tags(data) == {TARGETS_TAG: "is_fraud"}

    two = TrainingData(frame().head(10), "feed/training_sets/ranking", None, ("a", "b"))
    assert training_dataset(two).targets is None  # MLflow takes one target column
    assert input_tags(two) == {TARGETS_TAG: "a,b"}
    assert json.loads(training_dataset(two).to_dict()["source"]) == {"tags": {}}


def _in_chunks(data: pd.DataFrame, cuts: list[int]) -> Chunks:
    """``data`` as chunks cut at ``cuts`` (uneven, as a file's batches of one split are)."""
    bounds = [0, *cuts, len(data)]
    return Chunks(
        tuple(data.columns),
        lambda columns: (data.iloc[a:b][columns] for a, b in itertools.pairwise(bounds)),
    )


def test_a_set_in_chunks_gives_the_whole_set_s_dataset() -> None:
    """The model stage never holds the set whole: the digest, the schema's sample and required
    flags, and the profile must be the whole frame's, from the chunks in the set's order."""
    data = frame(12_000, seed=3)
    chunks = _in_chunks(data, [1, 4_000, 4_001, 9_999])
    whole = training_dataset(TrainingData(data, "fraud/training_sets/scorer", None, ("is_fraud",)))
    split = training_dataset(
        TrainingData(chunks, "fraud/training_sets/scorer", None, ("is_fraud",))
    )
    assert split.digest == whole.digest
    assert split.schema.to_dict() == whole.schema.to_dict()
    assert split.profile == whole.profile == {"num_rows": 12_000, "num_elements": 84_000}
    assert split.targets == "is_fraud"
    shuffled = _in_chunks(data.iloc[::-1].reset_index(drop=True), [5_000])
    assert frame_digest(shuffled) != whole.digest, "the rows in another order are another set"
    sample = set_sample(chunks, 500, len(data))
    expected = data.sample(n=500, random_state=0)
    pd.testing.assert_frame_equal(
        sample.drop(columns="recent"), expected.drop(columns="recent"), check_categorical=False
    )


def test_a_set_file_read_in_batches_gives_the_loaded_set_s_dataset(tmp_path) -> None:
    """The model asset's way: the set's file a batch at a time, each batch typed by the file."""
    path = UPath(tmp_path / "set.parquet")
    frame(5_000, seed=4).to_parquet(path, index=False, row_group_size=700)
    loaded = pd.read_parquet(path)  # as the IO manager loads it
    whole = training_dataset(TrainingData(loaded, "s", None, ("is_fraud",)))
    read = training_dataset(TrainingData(file_chunks(path, "split", batch_rows=300), "s"))
    assert (read.digest, read.profile) == (whole.digest, whole.profile)
    assert read.schema.to_dict() == whole.schema.to_dict()
