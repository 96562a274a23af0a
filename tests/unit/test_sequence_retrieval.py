"""The sequence retriever: point-in-time histories, the encoder, training, merging, validation."""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import torch

from assets.features.aggregates import (
    CREATED_TIMESTAMP,
    EVENT_TIMESTAMP,
    compute_aggregates,
    plan_aggregates,
)
from assets.models.sequence import next_item_examples, sequence_config, train_sequence
from assets.training.label_rows import AS_OF, ONE_US
from assets.training.pit_join import FeatureTable, point_in_time_join
from configs import CONFIG_DIR
from configs.schema import load_specs
from configs.schema.requirements import history_feature, requirement_problems
from configs.schema.sequence import SequenceSpec
from configs.schema.stages import FeatureViewSpec
from runtime.funnel_roles import merge_candidates
from runtime.models.sequence_encoder import (
    SequenceConfig,
    SequenceModel,
    SequenceNet,
    encode_histories,
)
from runtime.models.tower_inputs import is_sequence

N = 4  # items in the history feature
HISTORY = f"user_activity__item_id_last{N}_30d"


def _slates(seed: int) -> pd.DataFrame:
    """Impressions in slates: several items per (user, moment), clicks at random."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2025-01-01")
    for _ in range(120):
        user = int(rng.integers(0, 5))
        at = start + pd.Timedelta(minutes=int(rng.integers(0, 3 * 24 * 60)))
        for item in rng.choice(40, size=3, replace=False):
            rows.append(
                {
                    "user_id": user,
                    "item_id": int(item),
                    "event_time": at,
                    "clicked": int(rng.random() < 0.4),
                }
            )
    return pd.DataFrame(rows).sort_values("event_time", kind="stable", ignore_index=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_training_histories_hold_only_items_known_before_the_event(seed: int) -> None:
    """The real feature and join path: each example's history is exactly the user's last N
    impressions strictly before the event (none of the same slate, none later)."""
    events = _slates(seed)
    view = FeatureViewSpec(
        entities=["user"],
        aggregates=[{"column": "item_id", "agg": "last_n", "n": N, "windows": ["30d"]}],
    )
    table = compute_aggregates(
        events, ["user_id"], plan_aggregates(view, {}, "event_time"), pd.Timestamp("2025-02-01")
    )
    labels = events.assign(**{AS_OF: events.event_time - ONE_US})
    feature = FeatureTable(
        name="user_activity",
        frame=table,
        keys=("user_id",),
        features=(f"item_id_last{N}_30d",),
        ttl=timedelta(days=30),
        event_timestamp=EVENT_TIMESTAMP,
        created_timestamp=CREATED_TIMESTAMP,
    )
    joined = point_in_time_join(labels, [feature], as_of=AS_OF, prefix_features=True)
    examples = next_item_examples(
        joined, history_column=HISTORY, item_key="item_id", label="clicked"
    )
    positives = joined[(joined.clicked > 0)].reset_index(drop=True)
    checked = 0
    for row in positives.itertuples():
        earlier = events[(events.user_id == row.user_id) & (events.event_time < row.event_time)]
        expected = earlier.sort_values(["event_time", "item_id"]).item_id.tolist()[-N:]
        got = getattr(row, HISTORY)
        assert (list(got) if is_sequence(got) else []) == expected, row
        checked += bool(expected)
    # the examples are those positives with a history, target and history as joined
    with_history = positives[positives[HISTORY].map(lambda v: is_sequence(v) and len(v) > 0)]
    assert len(examples) == len(with_history) == checked > 20
    assert examples.item_id.tolist() == with_history.item_id.tolist()
    # a history never holds an item first shown to the user at that moment (the rest of the
    # slate, the clicked item itself) or later
    leaks = 0
    for row in with_history.itertuples():
        user = events[events.user_id == row.user_id]
        first_shown = user.groupby("item_id").event_time.min()
        new = set(first_shown[first_shown >= row.event_time].index)
        leaks += len(new & set(getattr(row, HISTORY)))
    assert leaks == 0


def test_histories_are_left_padded_newest_last_and_unknown_ids_dropped() -> None:
    vocabulary = pd.Index([10, 11, 12, 13])
    codes = encode_histories([[10, 99, 11], None, [], [10, 11, 12, 13]], vocabulary, 3)
    assert codes.tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 0], [2, 3, 4]]


@pytest.mark.parametrize("encoder", ["gru", "transformer"])
def test_encoder_gives_unit_vectors_of_the_embedding_size(encoder: str) -> None:
    config = SequenceConfig(encoder=encoder, max_len=6, embedding_dim=8)
    net = SequenceNet(12, config).eval()
    history = torch.tensor([[0, 0, 0, 0, 3, 5], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 7]])
    out = net(history)
    assert out.shape == (3, 8)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    items = net.item_vectors()
    assert items.shape == (13, 8) and float(items[0].detach().abs().sum()) == 0.0  # OOV row is zero
    # a row's vector is its own: served alone or in a batch, the same
    for row in range(3):
        assert torch.allclose(net(history[row : row + 1])[0], out[row], atol=1e-6)


def _pattern(n_users: int, n_items: int, seed: int) -> pd.DataFrame:
    """Histories of consecutive ids; the clicked next item is always the last one + 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        start, length = int(rng.integers(0, n_items)), int(rng.integers(1, 6))
        history = [(start + i) % n_items for i in range(length)]
        rows.append(
            {"user_id": user, "item_id": (history[-1] + 1) % n_items, "clicked": 1, "h": history}
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("encoder", "negatives"), [("gru", "in_batch"), ("transformer", "sampled")]
)
def test_a_tiny_run_learns_a_deterministic_next_item(encoder: str, negatives: str) -> None:
    n_items = 30
    train, valid = _pattern(500, n_items, 0), _pattern(100, n_items, 1)
    config = SequenceConfig(
        encoder=encoder,
        max_len=5,
        embedding_dim=16,
        epochs=30,
        batch_size=64,
        negatives=negatives,
        num_sampled=16,
    )
    model = train_sequence(
        train,
        valid,
        user_key="user_id",
        item_key="item_id",
        label="clicked",
        history_column="h",
        items=pd.DataFrame({"item_id": range(n_items)}),
        config=config,
    )
    ids, vectors = model.item_embeddings()
    top = ids[np.argmax(model.user_embeddings(valid) @ vectors.T, axis=1)]
    assert (top == valid.item_id.to_numpy()).mean() >= 0.9
    assert model.history[0]["valid_loss"] > min(r["valid_loss"] for r in model.history)
    assert model.is_warm(pd.DataFrame({"h": [[3], [], None, [999]]})).tolist() == [
        True,
        False,
        False,
        False,
    ]
    # what the registry stores rebuilds the same model
    again = pickle.loads(pickle.dumps(model))
    assert isinstance(again, SequenceModel)
    np.testing.assert_allclose(again.user_embeddings(valid), model.user_embeddings(valid))
    np.testing.assert_array_equal(again.catalog_ids, model.catalog_ids)


def test_merge_keeps_the_better_rank_and_its_source() -> None:
    merged, sources = merge_candidates({"a": [1, 2, 3, 4], "b": [5, 1, 6]}, 5)
    assert merged == [1, 5, 2, 3, 6]
    assert sources == ["a", "b", "a", "a", "b"]
    merged, sources = merge_candidates({"a": [7, 8], "b": [8, 7]}, 10)
    assert merged == [7, 8] and sources == ["a", "b"]  # 8 is b's first, a's second
    assert merge_candidates({}, 3) == ([], [])


def test_feed_sequence_model_reads_the_online_recent_items_feature() -> None:
    (spec,) = load_specs([CONFIG_DIR / "feed.yaml"])
    (model,) = [m for m, s in spec.model.items() if s.problem == "sequence"]
    assert history_feature(spec, model) == ("user_activity__item_id_last20_30d", 20)
    assert not [p for p in requirement_problems(spec) if p[0][:2] == ("model", model)]
    config = sequence_config(16, 3, SequenceSpec(encoder="transformer", max_len=8), {"lr": 0.1})
    assert (config.encoder, config.max_len, config.embedding_dim, config.lr) == (
        "transformer",
        8,
        16,
        0.1,
    )
    # too long a max_len, then no last_n aggregate at all: each named with what to change
    stage = spec.model[model]
    longer = stage.model_copy(update={"sequence": SequenceSpec(max_len=50)})
    problems = requirement_problems(
        spec.model_copy(update={"model": {**spec.model, model: longer}})
    )
    assert any(at[-1] == "max_len" and "lower max_len or raise n" in msg for at, msg in problems)
    views = {
        name: view.model_copy(
            update={"aggregates": [a for a in view.aggregates if a.agg != "last_n"]}
        )
        for name, view in spec.features.items()
    }
    problems = requirement_problems(spec.model_copy(update={"features": views}))
    assert any("agg: last_n" in msg and at == ("model", model, "problem") for at, msg in problems)


def test_items_carry_their_content_so_an_unseen_catalog_item_has_a_vector() -> None:
    n_items = 30
    train = _pattern(300, n_items - 2, 0)  # the last two catalog items are never seen
    catalog = pd.DataFrame(
        {"item_id": range(n_items), "category": [f"c{i % 3}" for i in range(n_items)]}
    )
    config = SequenceConfig(max_len=5, embedding_dim=8, epochs=2, batch_size=64, id_dropout=0.5)
    model = train_sequence(
        train,
        None,
        user_key="user_id",
        item_key="item_id",
        label="clicked",
        history_column="h",
        items=catalog,
        content_columns=["category"],
        config=config,
    )
    assert model.content == {"category": ["c0", "c1", "c2"]}
    rows = pd.Index(model.item_ids).get_indexer(catalog.item_id) + 1
    codes = model.net.codes[torch.as_tensor(rows), 0].tolist()
    assert codes == [i % 3 + 1 for i in range(n_items)]
    ids, vectors = model.item_embeddings()
    unseen = np.isin(ids, [n_items - 2, n_items - 1])
    assert np.allclose(np.linalg.norm(vectors[unseen], axis=1), 1.0, atol=1e-5)
    # id dropout acts in training only: the served table is the same on every call
    model.net.train()
    assert not torch.equal(model.net.item_table(), model.net.item_table())
    model.net.eval()
    assert torch.equal(model.net.item_table(), model.net.item_table())
    again = SequenceModel.from_state(model.state())
    np.testing.assert_allclose(again.item_embeddings()[1], vectors)
