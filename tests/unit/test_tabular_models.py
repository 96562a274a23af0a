"""Tabular learners on small synthetic frames with a known, learnable signal.

Each frame mimics a training set from ``assets.training.build``: a ``split`` column, features
named ``<table>__<feature>`` of every dtype the builder produces (float, nullable Int64, string,
last-N id lists), and labels whose dependence on the features is nonlinear enough that a linear
or single-feature baseline leaves room for the trees.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from assets.models.baselines import baseline_scores
from assets.models.evaluation import (
    classification_metrics,
    compare,
    expected_calibration_error,
    ranking_metrics,
)
from assets.models.tabular import (
    band_summary,
    decision_bands,
    prepare_features,
    train_classifier,
    train_expected_value,
    train_ranker,
)
from configs.schema.stages import DecisionBandsSpec

FAST = {"num_threads": 1, "learning_rate": 0.1, "num_leaves": 15, "num_iterations": 300}
SPLITS = ("train", "validation", "test")


def _split(n: int, rng: np.random.Generator) -> pd.Categorical:
    return pd.Categorical(rng.choice(SPLITS, size=n, p=[0.5, 0.25, 0.25]), categories=SPLITS)


def _parts(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, valid, test = (frame[frame["split"] == name] for name in SPLITS)
    return train, valid, test


def fraud_frame(n: int = 8000, seed: int = 0) -> pd.DataFrame:
    """About 6% positives driven by an interaction, a threshold and a category."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, n))
    country = rng.choice(["FR", "US", "IN", "BR"], size=n)
    logit = -4.0 + 2.0 * x1 * x2 + 2.0 * (x3 > 0.8) + 1.5 * (country == "BR")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    count = pd.array(rng.poisson(3, size=n), dtype="Int64")
    count[rng.random(n) < 0.2] = pd.NA
    return pd.DataFrame(
        {
            "card_id": rng.integers(0, 500, size=n),
            "is_fraud": y,
            "card__x1": x1,
            "card__x2": x2,
            "card__x3": np.where(rng.random(n) < 0.1, np.nan, x3),
            "card__events_count_1d": count,
            "card_attributes__country": country,
            "card__merchant_id_last5_7d": [np.arange(3)] * n,
            "split": _split(n, rng),
        }
    )


FRAUD_FEATURES = [
    "card__x1",
    "card__x2",
    "card__x3",
    "card__events_count_1d",
    "card_attributes__country",
    "card__merchant_id_last5_7d",
]


@pytest.fixture(scope="module")
def fraud() -> pd.DataFrame:
    return fraud_frame()


@pytest.fixture(scope="module")
def classifier(fraud):
    train, valid, _ = _parts(fraud)
    return train_classifier(train, valid, FRAUD_FEATURES, "is_fraud", FAST)


# --------------------------------------------------------------------------- features


def test_prepare_features_types_levels_and_lists(fraud):
    x, categories = prepare_features(fraud, FRAUD_FEATURES)
    assert "card__merchant_id_last5_7d" not in x.columns
    assert x["card__events_count_1d"].dtype == float
    assert x["card__events_count_1d"].isna().any()
    assert isinstance(x["card_attributes__country"].dtype, pd.CategoricalDtype)
    assert categories == {"card_attributes__country": ["BR", "FR", "IN", "US"]}
    later = fraud.head(3).assign(card_attributes__country=["FR", "XX", None])
    x_later, _ = prepare_features(later, list(x.columns), categories)
    assert x_later["card_attributes__country"].isna().tolist() == [False, True, True]
    assert (
        list(x_later["card_attributes__country"].cat.categories)
        == categories["card_attributes__country"]
    )


def test_levels_come_from_the_train_split_only(fraud):
    frame = fraud.copy()
    frame.loc[frame["split"] == "test", "card_attributes__country"] = "ZZ"
    _, categories = prepare_features(frame, FRAUD_FEATURES)
    assert "ZZ" not in categories["card_attributes__country"]


# --------------------------------------------------------------------------- classifier


def test_classifier_beats_logistic_regression(fraud, classifier):
    train, _, test = _parts(fraud)
    model = classification_metrics(test["is_fraud"], classifier.predict_proba(test))
    scores = baseline_scores("logistic_regression", train, test, FRAUD_FEATURES, "is_fraud")
    base = classification_metrics(test["is_fraud"], scores)
    table = compare(model, base).set_index("metric")
    assert model["auc"] > base["auc"] + 0.05
    assert model["pr_auc"] > base["pr_auc"] + 0.05
    assert table["better"].all()


def test_calibration_lowers_ece(fraud, classifier):
    _, _, test = _parts(fraud)
    raw = expected_calibration_error(test["is_fraud"], classifier.predict_raw_proba(test))
    calibrated = expected_calibration_error(test["is_fraud"], classifier.predict_proba(test))
    assert calibrated < raw / 2
    assert calibrated < 0.03
    # the closed-form Platt transform served per request equals scikit-learn's predict_proba
    margin = classifier.margin(test)
    sklearn = classifier.calibrator.model.predict_proba(margin.reshape(-1, 1))[:, 1]
    np.testing.assert_allclose(classifier.predict_proba(test), sklearn, rtol=1e-12)


def test_isotonic_calibration_and_pickle(fraud, classifier):
    train, valid, test = _parts(fraud)
    iso = train_classifier(train, valid, FRAUD_FEATURES, "is_fraud", FAST, calibration="isotonic")
    assert expected_calibration_error(test["is_fraud"], iso.predict_proba(test)) < 0.03
    restored = pickle.loads(pickle.dumps(classifier))
    np.testing.assert_allclose(restored.predict_proba(test), classifier.predict_proba(test))
    assert "card__merchant_id_last5_7d" not in classifier.feature_columns


# --------------------------------------------------------------------------- bands


def test_precision_bands_meet_their_targets(fraud, classifier):
    _, valid, _ = _parts(fraud)
    spec = DecisionBandsSpec(
        method="precision", decline_precision=0.6, approve_max_positive_share=0.1
    )
    y, p = valid["is_fraud"].to_numpy(), classifier.predict_proba(valid)
    bands = decision_bands(y, p, spec)
    assert bands.approve_below <= bands.decline_at_or_above
    decision = bands.apply_bands(p)
    assert set(decision) <= {"approve", "review", "decline"}
    assert (decision == "decline").any()
    assert y[decision == "decline"].mean() >= 0.6
    assert (decision[y == 1] == "approve").mean() <= 0.1
    assert bands.summary["decline_precision"] >= 0.6


def test_cost_bands_beat_naive_thresholds(fraud, classifier):
    _, valid, _ = _parts(fraud)
    spec = DecisionBandsSpec(method="cost")
    y, p = valid["is_fraud"].to_numpy(), classifier.predict_proba(valid)
    bands = decision_bands(y, p, spec)
    cost = bands.summary["cost_per_case"]
    naive = [
        type(bands)(np.inf, np.inf, {}),  # approve everything
        type(bands)(0.5, 0.5, {}),  # one threshold at 0.5, no review
        type(bands)(0.0, np.inf, {}),  # review everything
        decision_bands(y, p, DecisionBandsSpec(method="precision")),
    ]
    for other in naive:
        assert cost < band_summary(y, p, other, spec)["cost_per_case"]


# --------------------------------------------------------------------------- errors


def test_errors_name_what_is_wrong(fraud):
    train, valid, _ = _parts(fraud)
    with pytest.raises(ValueError, match="is_fraud"):
        train_classifier(train.assign(is_fraud=0), valid, FRAUD_FEATURES, "is_fraud", FAST)
    with pytest.raises(ValueError, match="empty"):
        train_classifier(train.iloc[:0], valid, FRAUD_FEATURES, "is_fraud", FAST)
    with pytest.raises(ValueError, match="num_leafs"):
        train_classifier(train, valid, FRAUD_FEATURES, "is_fraud", {"num_leafs": 7})
    with pytest.raises(ValueError, match="num_leaves"):
        train_classifier(train, valid, FRAUD_FEATURES, "is_fraud", {"num_leaves": 1})
    broken = train.assign(card__x1=train["card__x1"].where(train.index % 50 != 0, np.inf))
    with pytest.raises(ValueError, match="'card__x1' has .* infinite values"):
        train_classifier(broken, valid, FRAUD_FEATURES, "is_fraud", FAST)
    with pytest.raises(ValueError, match="logistic_regression.*popularity"):
        baseline_scores("bm25", train, valid, FRAUD_FEATURES, "is_fraud")


# --------------------------------------------------------------------------- ranker


def search_frame(groups: int = 600, per_group: int = 10, seed: int = 1) -> pd.DataFrame:
    """Graded relevance 0..4 from one linear and one quadratic feature plus noise."""
    rng = np.random.default_rng(seed)
    n = groups * per_group
    f1, f2, f3 = rng.normal(size=(3, n))
    latent = f1 + 1.2 * f2**2 + 0.3 * rng.normal(size=n)
    relevance = np.digitize(latent, np.quantile(latent, [0.4, 0.65, 0.8, 0.92]))
    request = np.repeat(np.arange(groups), per_group)
    split = np.array(SPLITS)[rng.choice(3, size=groups, p=[0.5, 0.25, 0.25])][request]
    frame = pd.DataFrame(
        {
            "request_id": request,
            "relevance": relevance,
            "doc__f1": f1,
            "doc__f2": f2,
            "doc__f3": f3,
            "split": pd.Categorical(split, categories=SPLITS),
        }
    )
    return frame.sample(frac=1.0, random_state=0)  # groups interleaved: the trainer must sort


def test_ranker_beats_random_and_single_feature():
    frame = search_frame()
    train, valid, test = _parts(frame)
    features = ["doc__f1", "doc__f2", "doc__f3"]
    ranker = train_ranker(train, valid, features, "relevance", "request_id", FAST)
    ranker = pickle.loads(pickle.dumps(ranker))
    scored = test.assign(
        model=ranker.predict(test),
        random=baseline_scores("random", train, test, features, "relevance"),
        single=baseline_scores("feature:doc__f1", train, test, features, "relevance"),
    )
    ndcg = {
        name: ranking_metrics(scored, "request_id", "relevance", name, [10])["ndcg@10"]
        for name in ("model", "random", "single")
    }
    assert ndcg["model"] > ndcg["single"] + 0.03
    assert ndcg["model"] > ndcg["random"] + 0.1


def test_ranking_metrics_by_hand():
    frame = pd.DataFrame(
        {
            "g": [1, 1, 1, 2, 2, 2, 3, 3],
            "y": [0, 2, 0, 1, 0, 1, 0, 0],
            "s": [0.9, 0.5, 0.1, 0.9, 0.8, 0.1, 0.3, 0.2],
        }
    )
    metrics = ranking_metrics(frame, "g", "y", "s", [2])
    assert metrics["groups"] == 2  # group 3 has nothing relevant
    assert metrics["mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["map"] == pytest.approx((1 / 2 + (1 + 2 / 3) / 2) / 2)
    assert metrics["hit_rate@2"] == 1.0
    assert metrics["recall@2"] == pytest.approx((1 + 1 / 2) / 2)


def test_compare_knows_directions():
    table = compare({"auc": 0.8, "ece": 0.02, "rows": 10}, {"auc": 0.7, "ece": 0.01, "rows": 9})
    assert table.set_index("metric")["better"].to_dict() == {"auc": True, "ece": False}


# --------------------------------------------------------------------------- expected value


def feed_frame(groups: int = 800, per_group: int = 10, seed: int = 2) -> pd.DataFrame:
    """Clicks from one feature, purchases-given-click from another, prices spread widely."""
    rng = np.random.default_rng(seed)
    n = groups * per_group
    x_click, x_buy = rng.normal(size=(2, n))
    price = np.exp(rng.normal(3.0, 1.0, size=n))
    price[rng.random(n) < 0.02] = np.nan
    clicked = rng.random(n) < 1 / (1 + np.exp(-(-1.5 + 1.5 * x_click)))
    purchased = clicked & (rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 2.0 * x_buy))))
    request = np.repeat(np.arange(groups), per_group)
    split = np.array(SPLITS)[rng.choice(3, size=groups, p=[0.5, 0.25, 0.25])][request]
    return pd.DataFrame(
        {
            "request_id": request,
            "clicked": clicked.astype(int),
            "purchased": purchased.astype(int),
            "item__x_click": x_click,
            "item__x_buy": x_buy,
            "item_attributes__price": price,
            "split": pd.Categorical(split, categories=SPLITS),
        }
    )


def _revenue_at(frame: pd.DataFrame, score: str, k: int) -> float:
    top = frame.sort_values(["request_id", score], ascending=[True, False])
    top = top.groupby("request_id").head(k)
    return float((top["purchased"] * top["item_attributes__price"].fillna(0)).sum())


def test_expected_value_heads_are_calibrated_and_rank_revenue():
    frame = feed_frame()
    train, valid, test = _parts(frame)
    features = ["item__x_click", "item__x_buy", "item_attributes__price"]
    model = train_expected_value(
        train, valid, features, "clicked", "purchased", "item_attributes__price", FAST
    )
    model = pickle.loads(pickle.dumps(model))
    heads = model.heads(test)
    assert expected_calibration_error(test["clicked"], heads["p_click"]) < 0.05
    clicked = test["clicked"].to_numpy() > 0
    given = heads["p_purchase_given_click"].to_numpy()[clicked]
    assert expected_calibration_error(test["purchased"].to_numpy()[clicked], given) < 0.08
    assert (heads.loc[test["item_attributes__price"].isna(), "expected_value"] == 0).all()
    np.testing.assert_allclose(model.predict(test), heads["expected_value"])
    scored = test.assign(ev=model.predict(test), click_only=heads["p_click"].to_numpy())
    assert _revenue_at(scored, "ev", 3) > 1.1 * _revenue_at(scored, "click_only", 3)


def test_purchase_head_error_names_the_label():
    frame = feed_frame(groups=200).assign(purchased=0)
    train, valid, _ = _parts(frame)
    with pytest.raises(ValueError, match="purchased"):
        train_expected_value(
            train, valid, ["item__x_click"], "clicked", "purchased", "item_attributes__price", FAST
        )


def test_the_logistic_regression_baseline_is_the_plain_pipeline_s() -> None:
    """Its train matrix is freed early and scaled in place (memory): the scores must be those
    of the plain pipeline on the same matrix, bit for bit."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(4)
    frame = pd.DataFrame({f"t__f{i}": rng.normal(size=3_000) for i in range(6)})
    frame.loc[rng.random(3_000) < 0.1, "t__f0"] = np.nan  # imputed, with its indicator
    frame["y"] = (rng.random(3_000) < 0.2).astype(int)
    features = [c for c in frame.columns if c != "y"]
    train, test = frame.iloc[:2_000], frame.iloc[2_000:]
    plain = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=1000),
    )
    plain.fit(train[features].to_numpy(), train["y"].to_numpy())
    expected = plain.predict_proba(test[features].to_numpy())[:, 1]
    got = baseline_scores("logistic_regression", train, test, features, "y")
    np.testing.assert_array_equal(got, expected)
