"""Rankers fit on splits read in chunks grow the trees the held frames grow: a LambdaRank
ranker, and the feed's expected-value model (two classifiers, the second on the clicked rows).

LightGBM reads a group as a run of consecutive rows, so the rows go in group order first: as
they are when the file already has them so (group ids that grow with time), else permuted a
bucket at a time through a temporary folder (``runtime.table_chunks.permuted``). Either way the
bin sample, the pushed rows and the group sizes must be the frame path's; any difference shows
in the model's text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import assets.models.ranker as ranker_module
from assets.models.ranker import group_order, train_ranker
from runtime.table_chunks import Chunks, permuted
from tests.streamed_fits import chunks, held_and_streamed, streamed_set

FEATURES = ["doc__f1", "doc__f2", "doc__kind", "doc__count"]
PARAMS = {
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "num_iterations": 12,
    "bin_construct_sample_cnt": 1_500,  # fewer than the rows: the sample's rows matter
    "min_data_in_leaf": 5,
}


def _ranking_frame(groups: int, seed: int, shuffled: bool) -> pd.DataFrame:
    """Graded relevance 0..4 of 8 documents per request; a text feature with a level seen only
    at the end, missing values, a nullable integer."""
    rng = np.random.default_rng(seed)
    n = groups * 8
    f1, f2 = rng.normal(size=(2, n))
    kind = pd.Series(rng.choice(["news", "shop", None], n), dtype=object)
    kind.iloc[-2:] = "video"
    latent = f1 + f2**2 + (kind == "shop") + 0.3 * rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(groups) * 7 + 3, 8),
            "relevance": np.digitize(latent, np.quantile(latent, [0.4, 0.65, 0.8, 0.92])),
            "doc__f1": np.where(rng.random(n) < 0.1, np.nan, f1),
            "doc__f2": f2,
            "doc__kind": kind,
            "doc__count": pd.array(rng.integers(0, 9, n), dtype="Int64"),
        }
    )
    if shuffled:  # a group's rows scattered over the file, as in an untidy log
        return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame


def test_permuted_rows_are_the_frame_s_rows_in_that_order(tmp_path: Path) -> None:
    frame = _ranking_frame(300, seed=1, shuffled=False).assign(
        kind_code=lambda f: f["doc__kind"].astype("category")
    )
    order = np.random.default_rng(2).permutation(len(frame))
    table = permuted(chunks(frame, [1, 500, 500, 501, 1_700]), order, tmp_path / "p", 256)
    columns = ["doc__kind", "doc__count", "relevance"]
    pieces = list(table(columns))
    assert [len(p) for p in pieces[:-1]] == [256] * (len(pieces) - 1)  # a bucket at a time
    got = pd.concat(pieces, ignore_index=True)
    pd.testing.assert_frame_equal(got, frame.iloc[order][columns].reset_index(drop=True))
    # a category's values come back (the buckets' levels differ: they come back as text)
    kinds = Chunks.of(frame).frame(["kind_code"])["kind_code"].astype(object)
    again = table.frame(["kind_code"])["kind_code"].astype(object)
    pd.testing.assert_series_equal(again, kinds.iloc[order].reset_index(drop=True))
    with pytest.raises(ValueError, match="an order of 3 rows for a table of 2400"):
        permuted(Chunks.of(frame), np.arange(3), tmp_path / "q", 256)


def test_group_order_is_a_stable_sort_by_value() -> None:
    values = pd.Series(["b", "a", "b", None, "a"])
    assert group_order(values).tolist() == [1, 4, 0, 2, 3]
    # a category by its value, not its code (the levels here are in another order)
    coded = pd.Series(pd.Categorical(["b", "a", "b"], categories=["b", "a"]))
    assert group_order(coded).tolist() == [1, 0, 2]


def _splits(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = frame["request_id"] % 5 == 0  # whole requests to validation
    return frame[~cut].reset_index(drop=True), frame[cut].reset_index(drop=True)


@pytest.mark.parametrize("shuffled", [False, True], ids=["groups-in-order", "groups-scattered"])
def test_the_ranker_from_chunks_is_the_held_one_s(
    shuffled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, valid = _splits(_ranking_frame(500, seed=4, shuffled=shuffled))
    held = train_ranker(train, valid, FEATURES, "relevance", "request_id", PARAMS)
    permutes = []

    def counted(*args, **kwargs):
        permutes.append(len(args[1]))
        return permuted(*args, **kwargs)

    monkeypatch.setattr(ranker_module, "permuted", counted)
    monkeypatch.setattr(ranker_module, "PERMUTE_ROWS", 700)  # several buckets
    streamed = train_ranker(
        chunks(train, [1, 999, 1_000, 2_345]),
        chunks(valid, [333]),
        FEATURES,
        "relevance",
        "request_id",
        PARAMS,
    )
    # groups in time order are read as they are; scattered ones are permuted, train and valid
    assert permutes == ([len(train), len(valid)] if shuffled else [])
    assert streamed.booster.model_to_string() == held.booster.model_to_string()
    assert streamed.categories == held.categories == {"doc__kind": ["news", "shop", "video"]}
    assert streamed.best_iteration == held.best_iteration
    np.testing.assert_array_equal(streamed.predict(valid), held.predict(valid))


def test_a_ranker_split_without_its_group_column_is_refused() -> None:
    train, valid = _splits(_ranking_frame(60, seed=5, shuffled=False))
    pieces = chunks(train.drop(columns="request_id"), [100])
    with pytest.raises(ValueError, match="group column 'request_id' is not in the train set"):
        train_ranker(pieces, valid, FEATURES, "relevance", "request_id", PARAMS)


def test_the_search_ranker_trained_on_streamed_splits_is_the_held_one_s() -> None:
    """The model asset's way for a ranker: no split loaded whole (their loaders fail), and the
    model, metrics, baseline, predictions and the gate's score are the held ones'."""
    from configs import CONFIG_DIR
    from configs.schema import load_specs

    (spec,) = load_specs([CONFIG_DIR / "search.yaml"])
    frame = _ranking_frame(900, seed=6, shuffled=True)
    rng = np.random.default_rng(6)
    requests = frame["request_id"].unique()
    frame = frame.rename(columns=lambda c: c.replace("doc__", "document_engagement__"))
    frame["document_engagement__clicked_mean_30d"] = rng.random(len(frame))
    frame["query_id"] = frame["request_id"] % 37
    frame["doc_id"] = rng.integers(0, 300, len(frame))
    split_of = dict(
        zip(requests, rng.choice(["train", "validation", "test"], len(requests)), strict=True)
    )
    frame["split"] = pd.Categorical(frame["request_id"].map(split_of))
    fast = {"num_iterations": 25}
    held, streamed = held_and_streamed(spec, "ranking", frame, fast, [99, 100, 100, 1_000])
    assert streamed.model.booster.model_to_string() == held.model.booster.model_to_string()
    assert streamed.metrics == held.metrics and "ndcg@10" in held.metrics
    assert streamed.baseline_metrics == held.baseline_metrics
    pd.testing.assert_frame_equal(streamed.predictions, held.predictions)
    assert streamed.evaluate(held.model) == held.evaluate(held.model)


def test_the_feed_s_expected_value_model_on_streamed_splits_is_the_held_one_s() -> None:
    """Two classifiers, the purchase head on the clicked rows filtered as they are read: the
    same heads, metrics, baseline, predictions and gate score as from held splits."""
    from configs import CONFIG_DIR
    from configs.schema import load_specs

    (spec,) = load_specs([CONFIG_DIR / "feed.yaml"])
    rng = np.random.default_rng(8)
    requests, per = 1_200, 6
    n = requests * per
    affinity, popular = rng.normal(size=(2, n))
    clicked = (affinity + 0.5 * popular + rng.normal(size=n) > 1.0).astype(int)
    frame = pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(requests), per),
            "user_id": np.repeat(rng.integers(0, 150, requests), per),
            "item_id": rng.integers(0, 90, n),
            "clicked": clicked,
            "purchased": clicked * (rng.random(n) < 0.3 + 0.2 * (popular > 0)),
            "user_activity__clicked_mean_7d": affinity,
            "user_activity__country": pd.Series(rng.choice(["fr", "de", None], n), dtype=object),
            "user_activity__item_id_last20_30d": [[int(i)] for i in rng.integers(0, 90, n)],
            "item_popularity__count_7d": popular,
            "item_popularity_attributes__price": np.round(rng.uniform(1, 50, n), 2),
        }
    )
    frame["split"] = pd.Categorical(
        np.repeat(rng.choice(["train", "validation", "test"], requests, p=[0.6, 0.2, 0.2]), per)
    )
    fast = {"num_iterations": 20}
    held, streamed = held_and_streamed(spec, "ranking", frame, fast, [77, 500, 500, 900])
    for head in ("click_model", "purchase_model"):
        got, want = getattr(streamed.model, head), getattr(held.model, head)
        assert got.booster.model_to_string() == want.booster.model_to_string(), head
    assert "user_activity__item_id_last20_30d" not in streamed.features
    assert streamed.metrics == held.metrics and "auc_click" in held.metrics
    assert streamed.baseline_metrics == held.baseline_metrics
    pd.testing.assert_frame_equal(streamed.predictions, held.predictions)
    assert streamed.evaluate(held.model) == held.evaluate(held.model)


def test_chunks_where_filters_each_chunk_as_it_is_read() -> None:
    frame = _ranking_frame(40, seed=9, shuffled=False)
    kept = chunks(frame, [3, 3, 100]).where("relevance", lambda v: (v > 2).to_numpy())
    pd.testing.assert_frame_equal(
        kept.frame(["doc__f2"]),
        frame.loc[frame["relevance"] > 2, ["doc__f2"]].reset_index(drop=True),
    )
    assert all(len(chunk) for chunk in kept(["doc__f1"]))  # no empty chunk


@pytest.mark.parametrize("baseline", ["class_prior", "logistic_regression"])
def test_moderation_s_multiclass_model_on_streamed_splits_is_the_held_one_s(
    baseline: str,
) -> None:
    """Softmax trees with balanced weights binned from chunks, the per-class calibration from
    validation margins a chunk at a time, the baseline's test probabilities per chunk: the
    same model, metrics, predictions and gate score as from held splits."""
    from configs import CONFIG_DIR
    from configs.schema import load_specs

    (spec,) = load_specs([CONFIG_DIR / "moderation.yaml"])
    spec.model["classifier"].baseline = baseline
    rng = np.random.default_rng(12)
    n = 4_000
    links, caps = rng.poisson(1, n).astype(float), rng.random(n)
    country = pd.Series(rng.choice(["fr", "us", None], n), dtype=object)
    latent = links + 2 * caps + (country == "us") + rng.normal(0, 0.5, n)
    frame = pd.DataFrame(
        {
            "post_id": np.arange(n),
            "author_id": rng.integers(0, 300, n),
            "content_class": np.digitize(latent, [1.5, 2.5, 3.3]),
            "post__links": links,
            "post__caps_ratio": caps,
            "author_history_attributes__country": country,
            "author_history__links_mean_7d": np.where(rng.random(n) < 0.2, np.nan, links),
        }
    )
    frame["split"] = pd.Categorical(
        rng.choice(["train", "validation", "test"], n, p=[0.6, 0.2, 0.2])
    )
    fast = {"num_iterations": 15}
    held, streamed = held_and_streamed(spec, "classifier", frame, fast, [1, 300, 300, 900])
    assert streamed.model.booster.model_to_string() == held.model.booster.model_to_string()
    assert streamed.metrics == held.metrics and "macro_f1" in held.metrics
    assert streamed.baseline_metrics == pytest.approx(held.baseline_metrics, rel=1e-12)
    pd.testing.assert_frame_equal(streamed.predictions, held.predictions)
    assert streamed.evaluate(held.model) == held.evaluate(held.model)
    if baseline == "logistic_regression":  # fit on a sample of the train rows, their classes
        import assets.models.multiclass as multiclass
        from assets.models.baselines import baseline_train
        from assets.models.train import train_tabular

        def sampled(name, features, label, item_key=None):
            return lambda train, rows: baseline_train(
                name, train, rows, features, label, item_key, fit_rows=500
            )

        splits = streamed_set(spec, "classifier", frame, [1, 300, 300, 900])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(multiclass, "baseline_reader", sampled)
            again = train_tabular(spec, "classifier", splits, fast)
        assert again.metrics == held.metrics
        assert again.baseline_metrics != held.baseline_metrics
        assert 0 < again.baseline_metrics["macro_f1"] < 1
