"""The shipped fraud config's request-time features, end to end on a small materialized world.

``features.transaction.request`` (amount, log1p(amount), hour, day of week, weekend and night
flags, amount over the card's 30-day mean, country differs from the card's home) must be in the
scorer's training set exactly as :mod:`runtime.request_features` computes them from the raw
transactions; ``/score`` must compute them from the request (so a request's ``amount`` moves its
features and its score) equal to the training row's for the same transaction (no training/serving
skew); and Feast's on-demand view must read the same values as ``/score``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from assets.features.feature_store_assets import data_cutoff, feature_repo_def
from assets.features.on_demand_views import on_demand_view_defs
from assets.features.views import feature_tables
from configs.schema.request_checks import request_features
from configs.schema.usecase import UseCaseSpec
from resources.feature_store import FeatureStoreResource
from runtime.bundle import load_bundle
from runtime.online_features import LIVE_ITEM_VIEWS_ENV
from runtime.request_features import compute_request_columns, compute_request_features
from serving.scoring import ScoreHandler
from serving.service import build_handler
from tests.integration.served import materialized_home

pytestmark = pytest.mark.integration
KEYS = ["card_id", "merchant_id", "event_time"]
# computed from the transaction's own fields (and the card's static home country) only
ROW_ONLY = ["amount", "amount_log", "hour", "day_of_week", "weekend", "night", "abroad"]


def _tables(home: Path) -> Path:
    return home / "tables" / "fraud"


def _events(home: Path) -> pd.DataFrame:
    files = sorted((_tables(home) / "raw_events").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _training(home: Path) -> pd.DataFrame:
    return pd.read_parquet(_tables(home) / "training_sets" / "scorer_training_set.parquet")


def _spec(home: Path) -> UseCaseSpec:
    return load_bundle(home / "serving" / "fraud" / "bundle").spec


def _equal(got: list, want: list) -> bool:
    return all(
        (isinstance(g, float) and math.isnan(g) and isinstance(w, float) and math.isnan(w))
        or g == pytest.approx(w, rel=1e-12)
        for g, w in zip(got, want, strict=True)
    )


def _with_raw_rows(home: Path) -> pd.DataFrame:
    """Training rows beside their raw transaction (one match each: duplicates left out)."""
    raw = _events(home).drop_duplicates(KEYS, keep=False)
    raw = raw[[*KEYS, "transaction_id", "amount", "country", "hour"]]
    training = _training(home).drop(columns=["amount", "country"])
    return training.merge(raw, on=KEYS, how="inner", validate="many_to_one")


def test_the_training_set_holds_the_request_features_of_each_raw_transaction(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    spec = _spec(home)
    features = request_features(spec)
    columns = [f.column for f in features]
    assert columns == [
        f"transaction_request__{name}" for name in spec.features["transaction"].request
    ]
    rows = _with_raw_rows(home)
    assert len(rows) > 0.95 * len(_training(home))
    assert set(columns) <= set(rows.columns)

    computed = compute_request_features(rows, spec.features["transaction"].request)
    for feature in features:
        assert _equal(rows[feature.column].tolist(), computed[feature.name].tolist()), feature.name
    # and against what the generator wrote: its UTC hour, its amount, the card's home country
    assert (rows["transaction_request__hour"] == rows["hour"]).all()
    assert (rows["transaction_request__amount"] == rows["amount"]).all()
    homes = pd.read_parquet(_tables(home) / "raw_cards.parquet").set_index("card_id")
    abroad = rows["country"].to_numpy() != homes.loc[rows["card_id"], "home_country"].to_numpy()
    assert (rows["transaction_request__abroad"].to_numpy() == abroad).all()
    assert 0 < rows["transaction_request__abroad"].mean() < 0.5


def _body(row: pd.Series, **changes: object) -> dict:
    transaction = {
        "card_id": int(row.card_id),
        "merchant_id": int(row.merchant_id),
        "amount": float(row.amount),
        "country": str(row.country),
        "event_time": pd.Timestamp(row.event_time).tz_localize("UTC").isoformat(),
    }
    transaction.update(changes)
    return {"transaction": {k: v for k, v in transaction.items() if v is not None}}


def _served(handler: ScoreHandler, body: dict) -> tuple[dict, dict]:
    (served,) = handler.serve_parsed([handler.parse(body)])
    assert isinstance(served, tuple), served
    return served


def test_score_computes_them_from_the_request_as_training_did(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    handler = build_handler(home / "serving" / "fraud" / "bundle", log=False)
    assert isinstance(handler, ScoreHandler)
    assert handler.request_inputs == ["amount", "event_time", "country"]
    rows = _with_raw_rows(home)
    sample = rows[rows["split"] == "test"].sample(25, random_state=3)
    expressions = _spec(home).features["transaction"].request
    for _, row in sample.iterrows():
        _, extras = _served(handler, _body(row))
        served = extras["features"]
        for name in ROW_ONLY:  # no skew: the training row's value
            column = f"transaction_request__{name}"
            assert _equal([served[column]], [row[column]]), (name, served[column], row[column])
        # the joined mean is the online store's (the end of the data), computed the same way
        inputs = {
            c: [served.get(c, row.get(c))] for c in ("amount", "card_velocity__amount_mean_30d")
        }
        inputs["card_velocity__amount_mean_30d"] = [served["card_velocity__amount_mean_30d"]]
        ratio = compute_request_columns(inputs, {"r": expressions["amount_vs_card_mean"]})["r"]
        assert _equal([served["transaction_request__amount_vs_card_mean"]], ratio.tolist())


def test_the_requests_amount_moves_its_features_and_score(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    handler = build_handler(home / "serving" / "fraud" / "bundle", log=False)
    row = _with_raw_rows(home).iloc[-1]
    small, large = (
        _served(handler, _body(row, amount=5.0)),
        _served(handler, {**_body(row, amount=5000.0), "explain": True}),
    )
    for name in ("amount", "amount_log"):
        column = f"transaction_request__{name}"
        assert small[1]["features"][column] < large[1]["features"][column]
    assert small[1]["scores"]["margin"] != large[1]["scores"]["margin"]
    # answered features name the transaction's own fields among the reasons it can give (asked
    # for: fraud.yaml gives reasons unasked only to review and decline answers)
    assert any(r["feature"].startswith("transaction_request__") for r in large[0]["top_features"])

    # without its time, a transaction happens when it is scored
    before = datetime.now(UTC).hour
    _, untimed = _served(handler, _body(row, event_time=None))
    assert untimed["features"]["transaction_request__hour"] in {before, datetime.now(UTC).hour}
    # without its amount, the amount's features are missing, never an error
    _, unpriced = _served(handler, _body(row, amount=None))
    assert math.isnan(unpriced["features"]["transaction_request__amount_log"])


def test_feasts_on_demand_view_reads_what_score_computes(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = materialized_home(tmp_path_factory, "fraud")
    spec = _spec(home)
    paths = {
        t.name: str(_tables(home) / "features" / f"{t.name}.parquet") for t in feature_tables(spec)
    }
    repo = feature_repo_def(spec, paths)
    repo = type(repo)(**{**repo.__dict__, "on_demand": on_demand_view_defs(spec)})
    store = FeatureStoreResource(root=str(tmp_path / "feast"))
    store.apply(repo)
    end = data_cutoff(pd.read_parquet(_tables(home) / "split_plan.parquet")).to_pydatetime()
    store.materialize(repo, end=end)

    handler = build_handler(home / "serving" / "fraud" / "bundle", log=False)
    sample = _with_raw_rows(home).sample(20, random_state=5)
    bodies = [_body(row) for _, row in sample.iterrows()]
    entity_rows = [
        {**b["transaction"], "event_time": pd.Timestamp(b["transaction"]["event_time"])}
        for b in bodies
    ]
    names = list(spec.features["transaction"].request)
    online = (
        store.store("fraud")
        .get_online_features(
            features=[f"transaction_request:{n}" for n in names],
            entity_rows=entity_rows,
            full_feature_names=True,
        )
        .to_df()
    )
    for i, body in enumerate(bodies):
        served = _served(handler, body)[1]["features"]
        for name in names:
            column = f"transaction_request__{name}"
            assert _equal([float(online[column].iloc[i])], [served[column]]), (name, i)


def test_merchant_views_held_in_memory_answer_as_the_store_does(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serving.cached_entities: [merchant]``: both merchant views are answered from memory,
    the card's from the store, and every answer (decision, score, reasons, logged features and
    misses) is the one the store gives, an unknown merchant's included."""
    home = materialized_home(tmp_path_factory, "fraud")
    bundle = home / "serving" / "fraud" / "bundle"
    held = build_handler(bundle, log=False)
    assert held.features.cached_views == {"merchant_risk", "merchant_risk_attributes"}
    monkeypatch.setenv(LIVE_ITEM_VIEWS_ENV, "1")
    live = build_handler(bundle, log=False)
    assert live.features.cached_views == frozenset()
    rows = _with_raw_rows(home)
    sample = rows[rows["split"] == "test"].sample(40, random_state=5)
    bodies = [_body(row) for _, row in sample.iterrows()]
    bodies.append(_body(sample.iloc[0], merchant_id=10**9))  # a merchant the store never saw
    bodies.append({**bodies[1], "explain": True})  # with its reasons
    for body in bodies:
        (answer, extras), (expected, expected_extras) = _served(held, body), _served(live, body)
        assert answer == expected
        assert extras["features"] == expected_extras["features"]
        assert extras["misses"] == expected_extras["misses"]
    assert held.features.misses == live.features.misses > 0
