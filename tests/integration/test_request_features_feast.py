"""Request-time features as a Feast on-demand feature view, on real Feast and SQLite.

A small card repo (a 30-day mean, a home country) gets the on-demand view ``transaction_request``
the fraud YAML's ``features.transaction.request`` makes. What a Feast user reads with
``get_online_features`` must be what :mod:`runtime.request_features` computes from the same
request fields and online features (the function training and ``/score`` use); the generated
definitions file must hold it (``feast plan`` in the folder finds nothing to change, ``feast
apply`` keeps it working); and the repo must apply again, and drop the view once the YAML does.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureStore

from resources.feast_definitions import (
    EntityDef,
    FeatureRepoDef,
    FeatureViewDef,
    OnDemandViewDef,
    feast_objects,
)
from resources.feast_render import render_definitions
from resources.feast_repo_files import check_round_trip, load_definitions
from resources.feature_store import FeatureStoreResource
from runtime.request_features import compute_request_features
from tests.integration.test_feature_store_repo_files import NO_CHANGES, feast_cli

pytestmark = pytest.mark.integration

DAY1, DAY2 = datetime(2020, 1, 1), datetime(2020, 1, 2)
END = datetime(2020, 1, 3, tzinfo=UTC)
CARD = EntityDef("card", "card_id", "int")
EXPRESSIONS = {
    "amount": "amount",
    "amount_log": "log1p(amount)",
    "hour": "hour_of_day(event_time)",
    "weekend": "is_weekend(event_time)",
    "night": "is_night(event_time, 'America/New_York')",
    "amount_vs_card_mean": "ratio(amount, card_velocity__amount_mean_30d)",
    "abroad": "differs(country, card_velocity_attributes__home_country)",
    "channel": "channel",
}
FEATURES = [f"transaction_request:{name}" for name in EXPRESSIONS]
SOURCES = ["card_velocity:amount_mean_30d", "card_velocity_attributes:home_country"]
# card 1 has history, card 2 a mean of 0, card 3 none (a miss): every edge at once
REQUEST = {
    "card_id": [1, 2, 3],
    "amount": [50.0, 5.0, 12.0],
    "event_time": [
        datetime(2020, 1, 4, 3, 0, tzinfo=UTC),  # Saturday 03:00 UTC, 22:00 in New York
        datetime(2020, 1, 6, 13, 30),  # a time without a zone is UTC
        datetime(2020, 1, 6, 8, 0, tzinfo=UTC),
    ],
    "country": ["FR", "GB", "US"],
    "channel": ["online", "pos", "online"],
}


def card_repo(folder: Path) -> FeatureRepoDef:
    folder.mkdir(parents=True, exist_ok=True)
    means = pd.DataFrame(
        {
            "card_id": [1, 1, 2],
            "event_timestamp": [DAY1, DAY2, DAY2],
            "created_timestamp": [DAY1, DAY2, DAY2],
            "amount_mean_30d": [10.0, 20.0, 0.0],
        }
    )
    homes = pd.DataFrame(
        {
            "card_id": [1, 2],
            "event_timestamp": [DAY1, DAY1],
            "created_timestamp": [DAY1, DAY1],
            "home_country": ["US", "GB"],
        }
    )
    means.to_parquet(folder / "card_velocity.parquet")
    homes.to_parquet(folder / "card_velocity_attributes.parquet")
    views = (
        FeatureViewDef(
            "card_velocity",
            (CARD,),
            (("amount_mean_30d", "float"),),
            str(folder / "card_velocity.parquet"),
            timedelta(days=30),
        ),
        FeatureViewDef(
            "card_velocity_attributes",
            (CARD,),
            (("home_country", "string"),),
            str(folder / "card_velocity_attributes.parquet"),
            timedelta(0),
        ),
    )
    request = OnDemandViewDef(
        "transaction_request",
        tuple(
            (name, text, "string" if name == "channel" else "float")
            for name, text in EXPRESSIONS.items()
        ),
        (("amount", "float"), ("event_time", "timestamp"), ("country", "string"))
        + (("channel", "string"),),
        ("card_velocity", "card_velocity_attributes"),
        "request-time features of feature view 'transaction'",
        {"kind": "request"},
    )
    return FeatureRepoDef(
        "cards", views, {"scorer": ("card_velocity", "card_velocity_attributes")}, "", (request,)
    )


def _online(store: FeatureStore, features: list[str]) -> pd.DataFrame:
    return store.get_online_features(
        features=features,
        entity_rows=[
            dict(zip(REQUEST, r, strict=True)) for r in zip(*REQUEST.values(), strict=True)
        ],
        full_feature_names=True,
    ).to_df()


def _expected(store: FeatureStore) -> pd.DataFrame:
    """The runtime function over the request's fields and the stored features Feast reads."""
    stored = _online(store, SOURCES)
    inputs = pd.DataFrame(REQUEST).assign(
        **{c.replace(":", "__"): stored[c.replace(":", "__")] for c in SOURCES}
    )
    return compute_request_features(inputs, EXPRESSIONS)


def _assert_same(online: pd.DataFrame, expected: pd.DataFrame) -> None:
    for name in EXPRESSIONS:
        got, want = online[f"transaction_request__{name}"], expected[name]
        if name == "channel":
            assert got.tolist() == want.tolist()
        else:
            pd.testing.assert_series_equal(
                got.astype(float).reset_index(drop=True),
                want.astype(float).reset_index(drop=True),
                check_names=False,
            )


def test_get_online_features_equals_the_runtime_function(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    repo = card_repo(tmp_path / "tables")
    sqlite_store.apply(repo)
    sqlite_store.materialize(repo, end=END)
    store = sqlite_store.store("cards")
    assert [v.name for v in store.list_on_demand_feature_views()] == ["transaction_request"]
    online = _online(store, [*FEATURES, *SOURCES])
    expected = _expected(store)
    _assert_same(online, expected)
    # and by hand: 50 / 20, abroad; 5 / 0 is missing; card 3 has no mean and no home
    assert online["transaction_request__amount_vs_card_mean"].tolist()[0] == 2.5
    assert online["transaction_request__abroad"].tolist()[:2] == [1.0, 0.0]
    assert online["transaction_request__hour"].tolist() == [3.0, 13.0, 8.0]
    assert online["transaction_request__night"].tolist() == [0.0, 0.0, 1.0]
    assert online["transaction_request__weekend"].tolist() == [1.0, 0.0, 0.0]
    assert pd.isna(online["transaction_request__amount_vs_card_mean"]).tolist() == [
        False,
        True,
        True,
    ]


def test_the_definitions_file_holds_the_view_for_feasts_cli(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    repo = card_repo(tmp_path / "tables")
    summary = sqlite_store.apply(repo)
    sqlite_store.materialize(repo, end=END)
    text = Path(summary["definitions"]).read_text()
    assert "transaction_request_udf = feast_udf(" in text
    assert '"amount_vs_card_mean": "ratio(amount, card_velocity__amount_mean_30d)",' in text
    assert "from runtime.request_features import feast_udf" in text
    objects = feast_objects(repo)
    check_round_trip(render_definitions(objects, "cards"), objects)
    assert {type(o).__name__ for o in load_definitions(text, summary["definitions"])} >= {
        "OnDemandFeatureView",
        "RequestSource",
    }

    folder = sqlite_store.repo_path("cards")
    assert feast_cli(folder, "plan") == NO_CHANGES
    assert feast_cli(folder, "apply") == ["Applying changes for project cards", *NO_CHANGES]
    store = FeatureStore(repo_path=str(folder))  # as Feast's CLI left the registry
    _assert_same(_online(store, FEATURES), _expected(store))


def test_the_repo_applies_again_and_drops_the_view_with_the_yaml(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    repo = card_repo(tmp_path / "tables")
    sqlite_store.apply(repo)
    sqlite_store.materialize(repo, end=END)
    again = sqlite_store.apply(repo)  # an unchanged YAML: nothing removed, nothing to plan
    assert again["removed"] == []
    folder = sqlite_store.repo_path("cards")
    assert feast_cli(folder, "plan") == NO_CHANGES

    without = sqlite_store.apply(dataclasses.replace(repo, on_demand=()))
    assert set(without["removed"]) == {
        "OnDemandFeatureView:transaction_request",
        "RequestSource:transaction_request_source",
    }
    store = sqlite_store.store("cards")
    assert store.list_on_demand_feature_views() == []
    assert "transaction_request" not in sqlite_store.definitions_path("cards").read_text()
    assert feast_cli(folder, "plan") == NO_CHANGES
