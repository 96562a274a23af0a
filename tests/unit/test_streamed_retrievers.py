"""The retrievers trained from splits left in the set's file, as the model asset reads them.

A retriever's asset reads its train and validation splits a chunk at a time (``retrieval_splits``):
the two-tower fits its encoders and encodes the rows as they are read, the sequence model keeps
the positives. Each must be the held frames' model, weight for weight, with the same metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from assets.models.retrieval import train_retrieval
from assets.models.retrieval_splits import first_rows_per, retrieval_splits, set_items
from assets.models.sequence import train_sequence_retrieval
from assets.training.negatives import SAMPLED
from assets.training.set_splits import SetSplits
from configs import CONFIG_DIR
from configs.schema import load_specs
from runtime.models.tower_inputs import FeatureEncoder
from tests.streamed_fits import chunks, streamed_set

HISTORY = "user_activity__item_id_last20_30d"
CUTS = [10, 10, 700, 1500, 2600]  # an empty chunk, a first chunk without any history


def _feed(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A feed retrieval set in time order (impressions and sampled negatives) and its catalog."""
    rng = np.random.default_rng(seed)
    n, users, items = 4_000, 150, 60
    item = rng.integers(0, items, n)
    user = rng.integers(0, users, n)
    taste = rng.normal(size=users)
    clicked = (taste[user] + 0.05 * (item % 7) + rng.normal(size=n) > 0.8).astype(int)
    history = [
        [int(i) for i in rng.integers(0, items, rng.integers(0, 6))] if row >= 30 else None
        for row in range(n)
    ]
    count = rng.poisson(3, n).astype(float)
    count[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame(
        {
            "user_id": user,
            "item_id": item,
            "clicked": clicked,
            SAMPLED: rng.random(n) < 0.4,
            "user_activity__events_count_7d": count,
            "user_activity__clicked_mean_7d": taste[user] + rng.normal(scale=0.1, size=n),
            HISTORY: history,
            "user_activity_attributes__country": pd.Series(
                rng.choice(["fr", "de", None], n), dtype=object
            ),
            "item_popularity__events_count_7d": rng.poisson(20, n).astype(float),
            "split": pd.Categorical(
                np.select(
                    [np.arange(n) < 2_600, np.arange(n) < 3_300], ["train", "validation"], "test"
                )
            ),
        }
    )
    frame.loc[frame[SAMPLED], "clicked"] = 0
    # items the catalog lacks, in the last train chunk and in validation alone: the item table
    # gets them from the splits' rows
    frame.loc[np.arange(n)[2_590:2_600], "item_id"] = items
    frame.loc[np.arange(n)[2_600:3_300:50], "item_id"] = items + 1
    catalog = pd.DataFrame(
        {
            "item_id": np.arange(items),
            "category": [f"c{i % 5}" for i in range(items)],
            "brand": [f"b{i % 9}" for i in range(items)],
            "price": np.round(rng.uniform(1, 80, items), 2),
        }
    )
    return frame, catalog


@pytest.fixture(scope="module")
def spec():
    (feed,) = load_specs([CONFIG_DIR / "feed.yaml"])
    quick = {"epochs": 3, "params": {"batch_size": 256}}
    models = {m: feed.model[m].model_copy(update=quick) for m in ("retrieval", "next_item")}
    return feed.model_copy(update={"model": {**feed.model, **models}})


def _same_weights(got: torch.nn.Module, want: torch.nn.Module) -> None:
    got_state, want_state = got.state_dict(), want.state_dict()
    assert got_state.keys() == want_state.keys()
    for name, tensor in want_state.items():
        assert torch.equal(got_state[name], tensor), name


@pytest.mark.parametrize("with_catalog", [True, False])
def test_the_two_tower_from_streamed_splits_is_the_held_one_s(spec, with_catalog: bool) -> None:
    frame, catalog = _feed()
    catalog = catalog if with_catalog else None
    held = train_retrieval(spec, "retrieval", frame, catalog)
    streamed = train_retrieval(
        spec, "retrieval", streamed_set(spec, "retrieval", frame, CUTS), catalog
    )
    assert HISTORY in streamed.model.user_encoder.sequence  # the list found past the first chunk
    assert streamed.model.user_encoder.to_dict() == held.model.user_encoder.to_dict()
    assert streamed.model.item_ids == held.model.item_ids
    assert streamed.model.user_ids == held.model.user_ids
    _same_weights(streamed.model.net, held.model.net)
    assert streamed.model.history == held.model.history and len(held.model.history) == 3
    assert np.array_equal(streamed.item_ids, held.item_ids)
    assert np.array_equal(streamed.item_vectors, held.item_vectors)
    assert streamed.metrics == held.metrics and "recall@10" in held.metrics
    assert streamed.baseline_metrics == held.baseline_metrics
    assert streamed.evaluate(held.model) == held.evaluate(held.model)


def test_the_sequence_model_from_streamed_splits_is_the_held_one_s(spec) -> None:
    frame, catalog = _feed()
    held = train_sequence_retrieval(spec, "next_item", frame, catalog)
    streamed = train_sequence_retrieval(
        spec, "next_item", streamed_set(spec, "next_item", frame, CUTS), catalog
    )
    assert streamed.model.item_ids == held.model.item_ids
    _same_weights(streamed.model.net, held.model.net)
    assert streamed.model.history == held.model.history and "valid_loss" in held.model.history[0]
    assert streamed.metrics == held.metrics and held.metrics["train_examples"] > 0
    assert streamed.baseline_metrics == held.baseline_metrics
    assert streamed.evaluate(held.model) == held.evaluate(held.model)


def test_the_encoder_fit_on_chunks_is_the_frame_s() -> None:
    """Statistics to the last bit, vocabularies, and a column's kind found past all-null and
    empty chunks."""
    frame, _ = _feed(5)
    train = frame[frame.split == "train"].reset_index(drop=True)
    columns = [c for c in train.columns if "__" in c]
    want = FeatureEncoder.fit(train, columns)
    got = FeatureEncoder.fit(chunks(train, CUTS), columns)
    assert got.to_dict() == want.to_dict()
    assert want.sequence == [HISTORY] and "user_activity_attributes__country" in want.categorical
    assert FeatureEncoder.fit(chunks(train.iloc[:20], [5, 5]), [HISTORY]).categorical == [HISTORY]


def test_retrieval_splits_hold_the_train_positives_and_the_test_rows(spec) -> None:
    frame, _ = _feed()
    splits = retrieval_splits(
        spec, "retrieval", streamed_set(spec, "retrieval", frame, CUTS), "clicked", ["item_id"]
    )
    train = frame[frame.split == "train"]
    want = train.loc[train.clicked > 0, ["item_id", "clicked"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(splits.positives, want)
    test = frame[frame.split == "test"].reset_index(drop=True)
    pd.testing.assert_frame_equal(splits.test, test)
    no_clicks = frame.assign(clicked=np.where(frame.split == "validation", 0, frame.clicked))
    with pytest.raises(ValueError, match="no positive 'clicked' rows in validation"):
        retrieval_splits(
            spec, "retrieval", streamed_set(spec, "retrieval", no_clicks, CUTS), "clicked", []
        )


def test_set_items_and_first_rows_per_read_the_set_in_its_order() -> None:
    frame, _ = _feed()
    splits = SetSplits.of(frame, "split", streamed=("train",))
    splits = splits.__class__(splits.parts, splits.streamed, chunks(frame, CUTS), splits.rows)
    want = frame[["item_id"]].drop_duplicates().reset_index(drop=True)
    pd.testing.assert_frame_equal(set_items(splits, "item_id"), want)
    pd.testing.assert_frame_equal(set_items(frame, "item_id"), want)
    first = frame.drop_duplicates("user_id").head(5).reset_index(drop=True)
    pd.testing.assert_frame_equal(first_rows_per(splits, "user_id", 5), first)
    many = frame.drop_duplicates("user_id").head(140).reset_index(drop=True)
    pd.testing.assert_frame_equal(first_rows_per(splits, "user_id", 140), many)
