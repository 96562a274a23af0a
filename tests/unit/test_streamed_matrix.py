"""LightGBM fit on a split read in chunks grows the trees the whole frame grows.

The bin sample must be drawn at the same rows (``data_random_seed`` as LightGBM derives it from
``seed``), the text levels learned over every chunk, the rows pushed in order across chunk
edges; any difference shows in the model's text.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from assets.models.baselines import baseline_scores, baseline_train
from assets.models.classifier import train_classifier
from assets.models.streamed_matrix import _ChunkRows, sampling_params, streamed_dataset
from runtime.models.features import prepare_features
from tests.streamed_fits import chunks, held_and_streamed

CUTS = [1, 2_000, 2_001, 7_777]  # a one-row chunk, a chunk edge inside LightGBM's batches


def _frame(rows: int = 12_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=rows),
            "gap": np.where(rng.random(rows) < 0.2, np.nan, rng.exponential(size=rows)),
            # a level seen only in the last chunk, and missing values
            "channel": pd.Series(rng.choice(["web", "pos", None], rows), dtype=object),
            "count": pd.array(rng.integers(0, 5, rows), dtype="Int64"),
            "flag": (rng.random(rows) < 0.1).astype(float),
        }
    )
    frame.loc[rows - 3 :, "channel"] = "atm"
    signal = frame["amount"] + (frame["channel"] == "web") + rng.normal(size=rows)
    return frame.assign(is_fraud=(signal > 1.2).astype(int))


FEATURES = ["amount", "gap", "channel", "count", "flag"]
PARAMS = {
    "objective": "binary",
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
    "num_iterations": 15,
    "bin_construct_sample_cnt": 3_000,  # fewer than the rows: the sample's rows matter
}


@pytest.mark.parametrize("seed", [0, 7, 123_456])
def test_the_trees_are_the_whole_frame_s(seed: int) -> None:
    frame = _frame()
    y = frame["is_fraud"].to_numpy()
    params = {**PARAMS, "seed": seed}
    x, categories = prepare_features(frame, FEATURES)
    whole = lgb.train(params, lgb.Dataset(x, label=y))
    streamed = streamed_dataset(chunks(frame, CUTS), FEATURES, y)
    assert streamed.categories == categories and streamed.columns == list(x.columns)
    fitted = lgb.train({**params, **sampling_params(params)}, streamed.dataset)
    assert fitted.model_to_string() == whole.model_to_string()
    # without the derived sampling seed the bins (and trees) are another model's
    other = lgb.train(params, streamed_dataset(chunks(frame, CUTS), FEATURES, y).dataset)
    assert other.model_to_string() != whole.model_to_string()


def test_sampling_params_leave_a_given_data_seed_alone() -> None:
    assert sampling_params({"seed": 0}) == {"data_random_seed": 38}
    assert sampling_params({"random_state": 7}) == {"data_random_seed": 61}
    assert sampling_params({"seed": 0, "data_random_seed": 5}) == {}
    assert sampling_params({}) == {}


def test_rows_are_read_forward_and_again_from_the_start() -> None:
    reads = []

    def matrices():
        reads.append(1)
        yield from (np.full((n, 2), float(i)) for i, n in enumerate([3, 1, 4]))

    rows = _ChunkRows(matrices, 8)
    np.testing.assert_array_equal(rows[2:5][:, 0], [0, 1, 2])
    assert rows[7][0] == 2 and len(reads) == 1
    assert rows[0][0] == 0 and len(reads) == 2  # behind the cursor: read again
    with pytest.raises(IndexError, match="past the split's rows"):
        rows[8]


def test_a_classifier_on_a_streamed_split_is_the_frame_s() -> None:
    frame = _frame(9_000, seed=1)
    train, valid = frame.iloc[:7_000].reset_index(drop=True), frame.iloc[7_000:]
    params = {"num_iterations": 40, "bin_construct_sample_cnt": 2_500}
    held = train_classifier(train, valid, FEATURES, "is_fraud", params)
    for valid_rows in (valid, chunks(valid, [5, 600])):  # validation held, then read in chunks
        streamed = train_classifier(chunks(train, CUTS), valid_rows, FEATURES, "is_fraud", params)
        assert streamed.booster.model_to_string() == held.booster.model_to_string()
        assert streamed.best_iteration == held.best_iteration < 40  # early-stopped alike
        assert streamed.params == held.params  # the sampling seed is LightGBM's, not recorded
        np.testing.assert_array_equal(streamed.predict_proba(valid), held.predict_proba(valid))
    with pytest.raises(ValueError, match="label 'fraud' is not a column of the train set"):
        train_classifier(chunks(train, CUTS), valid, FEATURES, "fraud", params)
    with pytest.raises(ValueError, match="features missing from the frame: nope"):
        train_classifier(chunks(train, CUTS), valid, [*FEATURES, "nope"], "is_fraud", params)


def test_the_baseline_fits_on_every_row_or_on_a_bounded_sample() -> None:
    frame = _frame(3_000, seed=2)
    train, test = frame.iloc[:2_000].reset_index(drop=True), frame.iloc[2_000:]
    numeric = ["amount", "gap", "count", "flag"]
    whole = baseline_scores("logistic_regression", train, test, numeric, "is_fraud")
    rows = baseline_train("logistic_regression", chunks(train, [700]), 2_000, numeric, "is_fraud")
    got = baseline_scores("logistic_regression", rows, test, numeric, "is_fraud")
    np.testing.assert_array_equal(got, whole)
    sample = baseline_train(
        "logistic_regression", chunks(train, [700]), 2_000, numeric, "is_fraud", fit_rows=500
    )
    picked = np.sort(np.random.default_rng(0).choice(2_000, size=500, replace=False))
    pd.testing.assert_frame_equal(
        sample, train[[*numeric, "is_fraud"]].iloc[picked].reset_index(drop=True)
    )
    prior = baseline_train(
        "class_prior", chunks(train, CUTS), 2_000, numeric, "is_fraud", fit_rows=5
    )
    assert list(prior.columns) == ["is_fraud"] and len(prior) == 2_000


def test_the_scorer_trained_on_a_streamed_train_split_is_the_held_one_s() -> None:
    """The model asset's way for a classifier: no split loaded whole (their loaders fail), and
    the model, bands, metrics, baseline, predictions and the gate's score are the held ones'."""
    from configs import CONFIG_DIR
    from configs.schema import load_specs

    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    rng = np.random.default_rng(3)
    frame = _frame(6_000, seed=3).rename(columns={c: f"card__{c}" for c in FEATURES})
    frame["card_id"] = rng.integers(0, 400, len(frame))
    frame["split"] = pd.Categorical(rng.choice(["train", "validation", "test"], len(frame)))
    fast = {"num_iterations": 30}
    held, streamed = held_and_streamed(spec, "scorer", frame, fast, [99, 100, 100, 1_000])
    assert streamed.model.booster.model_to_string() == held.model.booster.model_to_string()
    assert streamed.metrics == held.metrics
    assert streamed.baseline_metrics == pytest.approx(held.baseline_metrics, rel=1e-12)
    assert streamed.model.bands == held.model.bands and "bands_on_test" in streamed.extra
    pd.testing.assert_frame_equal(streamed.predictions, held.predictions)
    assert streamed.evaluate(held.model) == held.evaluate(held.model)


def test_baselines_score_test_rows_in_chunks_as_whole() -> None:
    """The counting baselines exactly; the regression to the last bits of a matrix product
    (BLAS sums a chunk's product in another order than the whole's)."""
    frame = _frame(3_000, seed=5).assign(item=lambda f: f.index % 7)
    train, test = frame.iloc[:2_000].reset_index(drop=True), frame.iloc[2_000:]
    numeric = ["amount", "gap", "count", "flag"]
    for name in ("logistic_regression", "feature:gap", "popularity", "random", "class_prior"):
        whole = baseline_scores(name, train, test, numeric, "is_fraud", item_key="item")
        pieces = chunks(test, [1, 300, 300])  # an empty chunk too
        chunked = baseline_scores(name, train, pieces, numeric, "is_fraud", "item")
        # the regression's scores: one matrix product a chunk, so the last bit may differ
        np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=0, err_msg=name)
    with pytest.raises(ValueError, match="baseline feature 'nope' is not a column"):
        baseline_scores("feature:nope", train, chunks(test, CUTS), numeric, "is_fraud")


def test_pricing_s_regressor_on_streamed_splits_is_the_held_one_s() -> None:
    """A regressor's point and quantile boosters binned from chunks, the conformal shift from
    validation margins a chunk at a time, the baseline's feature held: the same models,
    metrics, intervals, predictions and gate score as from held splits."""
    from configs import CONFIG_DIR
    from configs.schema import load_specs

    (spec,) = load_specs([CONFIG_DIR / "pricing.yaml"])
    rng = np.random.default_rng(11)
    n = 5_000
    distance, load = rng.uniform(0.5, 8, n), rng.poisson(4, n).astype(float)
    zone = pd.Series(rng.choice(["north", "south", None], n), dtype=object)
    seconds = 600 + 180 * distance + 60 * load + 120 * (zone == "south") + rng.normal(0, 90, n)
    time = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.uniform(0, 2e6, n)), "s"
    )
    frame = pd.DataFrame(
        {
            "order_id": np.arange(n),
            "store_id": rng.integers(0, 60, n),
            "event_time": time,
            "delivered_at": time + pd.to_timedelta(seconds, "s"),
            "delivery_seconds": seconds.round(),
            "distance_km": distance,
            "items": rng.integers(1, 6, n),
            "store_load__count_1h": load,
            "store_load__delivery_seconds_mean_7d": np.where(
                rng.random(n) < 0.1, np.nan, seconds + rng.normal(0, 200, n)
            ),
            "store_load__zone": zone,
        }
    )
    frame["split"] = pd.Categorical(
        np.select([frame.index < 3_000, frame.index < 4_000], ["train", "validation"], "test")
    )
    fast = {"num_iterations": 20}
    held, streamed = held_and_streamed(spec, "delivery", frame, fast, [1, 400, 400, 700])
    for got, want in (
        (streamed.model, held.model),
        (streamed.model.lower, held.model.lower),
        (streamed.model.upper, held.model.upper),
    ):
        assert got.booster.model_to_string() == want.booster.model_to_string()
    assert streamed.model.interval_shift == held.model.interval_shift
    assert streamed.metrics == held.metrics and "interval_coverage" in held.metrics
    assert streamed.baseline_metrics == held.baseline_metrics
    pd.testing.assert_frame_equal(streamed.predictions, held.predictions)
    assert streamed.evaluate(held.model) == held.evaluate(held.model)


def test_an_empty_split_is_refused_held_or_in_chunks() -> None:
    frame = _frame(500, seed=2)
    train, valid = frame.iloc[:400], frame.iloc[400:]
    for rows in (train.iloc[:0], chunks(train.iloc[:0], [])):
        with pytest.raises(ValueError, match="the training set is empty"):
            train_classifier(rows, valid, FEATURES, "is_fraud", PARAMS)
    with pytest.raises(ValueError, match="the validation set is empty: early stopping"):
        train_classifier(chunks(train, [100]), valid.iloc[:0], FEATURES, "is_fraud", PARAMS)


def test_a_set_without_validation_rows_is_a_located_error_held_or_streamed() -> None:
    from assets.models.split_chunks import streamed_splits
    from assets.models.train import train_tabular
    from assets.training.set_splits import SetSplits
    from configs import CONFIG_DIR
    from configs.schema import load_specs

    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    frame = _frame(600, seed=4).rename(columns={c: f"card__{c}" for c in FEATURES})
    frame["card_id"] = frame.index % 50
    frame["split"] = pd.Categorical(np.where(frame.index < 400, "train", "test"))
    streamed = SetSplits.of(frame, "split", streamed=streamed_splits(spec.model["scorer"]))
    for rows in (frame, streamed):
        with pytest.raises(ValueError, match="fraud: model.scorer: the validation split of the"):
            train_tabular(spec, "scorer", rows)
