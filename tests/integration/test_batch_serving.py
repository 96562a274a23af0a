"""Batch serving end to end: score every card for an hourly window, read it back from Feast online.

The card-risk world (:mod:`tests.batch_serving_world`) is materialized up to its model; then the
``predictions`` asset runs for one hourly window, and a real Feast ``get_online_features`` read
of the ``card_risk_predictions`` view must return, for cards picked at random, the champion's
score on that card's features as of the window's close, computed here from the feature tables'
files with pandas (the latest row before the close within the TTL), not through the asset's
join. The next window then replaces every online value with its own, and rescoring the earlier
window afterwards must leave the newer predictions online.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from upath import UPath

from assets.training.model_views import model_tables
from configs.schema.execution import ExecutionSpec
from dagster_project.loader import resources, use_case_assets
from dagster_project.materialize import RANGE_END, RANGE_START
from dagster_project.use_case_files import load_use_cases
from resources.feast_predictions import online_predictions
from resources.feature_store import FeatureStoreResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.models.features import seconds_since_last
from tests.batch_serving_world import write_card_risk
from tests.integration.test_raw_assets import _run

pytestmark = pytest.mark.integration

FIRST, SECOND = "2025-01-06-1000", "2025-01-06-1100"
FIRST_CLOSE, SECOND_CLOSE = pd.Timestamp("2025-01-06 11:00"), pd.Timestamp("2025-01-06 12:00")


def _expected(
    spec, home: Path, instance: dg.DagsterInstance, cards: list[int], close: pd.Timestamp
) -> np.ndarray:
    """The champion's scores of ``cards`` on their features as of just before ``close``."""
    as_of = close - pd.Timedelta(microseconds=1)
    row: dict[str, list[object]] = {"card_id": cards}
    for table in model_tables(spec, "scorer"):
        key = dg.AssetKey(layout.feature_table_key(spec.name, table.name))
        event = instance.get_latest_materialization_event(key)
        frame = pd.read_parquet(event.asset_materialization.metadata["path"].value)
        times = pd.to_datetime(frame["event_timestamp"], utc=True).dt.tz_localize(None)
        fresh = times >= as_of - table.ttl if table.ttl else True  # zero TTL: never stale
        live = frame[(times <= as_of) & fresh]
        ordered = live.sort_values(["event_timestamp", "created_timestamp"], kind="stable")
        latest = ordered.drop_duplicates("card_id", keep="last").set_index("card_id")
        for feature in table.feature_names:
            values = latest[feature].reindex(cards)
            row[layout.feature_column(table.name, feature)] = values.tolist()
    features = seconds_since_last(pd.DataFrame(row), as_of)
    registry = MLflowResource(home=str(home))
    scorer = registry.load_model("card_risk.scorer", "champion").unwrap_python_model().model
    return np.asarray(scorer.predict(features), dtype=float)


def _score(assets, home: Path, instance: dg.DagsterInstance, window: str, last: str = ""):
    """Run the predictions asset for ``window`` (through ``last``: one run over the range, as a
    backfill or ``playbook materialize`` runs it)."""
    (predictions,) = [a for a in assets if a.key.path[-1] == "predictions"]
    where = {"tags": {RANGE_START: window, RANGE_END: last}} if last else {"partition_key": window}
    return dg.materialize(
        assets,
        selection=[predictions.key],
        resources=resources(UPath(home)),
        instance=instance,
        **where,
    )


def _online(home: Path, cards: list[int]) -> pd.DataFrame:
    store = FeatureStoreResource(root=str(home / "feast"))
    return online_predictions(store, "card_risk", "card_id", cards).set_index("card_id")


def test_batch_predictions_are_read_online(tmp_path: Path) -> None:
    (spec,) = load_use_cases([write_card_risk(tmp_path)])
    home = tmp_path / "home"
    instance = dg.DagsterInstance.ephemeral()
    upstream = _run(spec, home, instance=instance, stages_to_skip=("predictions",))
    assert upstream.success
    assets = use_case_assets(spec)

    first = _score(assets, home, instance, FIRST)
    assert first.success
    (event,) = first.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["model_version"].value == "1"
    scored = pd.read_parquet(home / "tables" / "card_risk" / "predictions" / f"{FIRST}.parquet")
    assert metadata["entities_scored"].value == len(scored) == scored["card_id"].nunique() > 200
    (check,) = first.get_asset_check_evaluations()
    assert check.check_name == "prediction_drift" and check.passed  # nothing earlier to compare
    assert "no earlier window" in check.description

    rng = np.random.default_rng(0)
    cards = sorted(rng.choice(scored["card_id"].to_numpy(), size=20, replace=False).tolist())
    online = _online(home, cards)
    want = _expected(spec, home, instance, cards, FIRST_CLOSE)
    np.testing.assert_allclose(online.loc[cards, "prediction"].to_numpy(), want, rtol=1e-9)
    assert (online.loc[cards, "model_version"] == 1).all()

    second = _score(assets, home, instance, SECOND)
    assert second.success
    (check,) = second.get_asset_check_evaluations()
    drift = check.metadata
    assert drift["reference_rows"].value == len(scored) and drift["status"].value in (
        "ok",
        "warn",
    ), check.description
    newer = pd.read_parquet(home / "tables" / "card_risk" / "predictions" / f"{SECOND}.parquet")
    online = _online(home, cards)
    want_second = _expected(spec, home, instance, cards, SECOND_CLOSE)
    np.testing.assert_allclose(online.loc[cards, "prediction"].to_numpy(), want_second, rtol=1e-9)
    by_card = newer.set_index("card_id")["prediction"]
    np.testing.assert_allclose(online.loc[cards, "prediction"], by_card.loc[cards], rtol=1e-12)
    moved = by_card.loc[scored["card_id"]] != scored.set_index("card_id")["prediction"]
    assert moved.any(), "an hour of transactions should move some card's score"

    # rescoring the older window afterwards must not put older predictions online
    again = _score(assets, home, instance, FIRST)
    assert again.success
    everyone = scored["card_id"].tolist()
    online = _online(home, everyone)
    np.testing.assert_allclose(
        online.loc[everyone, "prediction"], by_card.loc[everyone], rtol=1e-12
    )

    # a backfill of the day's last three windows in one run: one file each, the last one online
    backfill = _score(assets, home, instance, "2025-01-06-2100", "2025-01-06-2300")
    assert backfill.success
    events = backfill.get_asset_materialization_events()  # one per window, from one run
    assert sorted(e.partition for e in events) == [f"2025-01-06-{h}00" for h in (21, 22, 23)]
    assert all(e.materialization.metadata["windows"].value == 3 for e in events)
    folder = home / "tables" / "card_risk" / "predictions"
    assert sorted(p.stem for p in folder.glob("*.parquet")) == [
        FIRST,
        SECOND,
        "2025-01-06-2100",
        "2025-01-06-2200",
        "2025-01-06-2300",
    ]
    last = pd.read_parquet(folder / "2025-01-06-2300.parquet").set_index("card_id")["prediction"]
    online = _online(home, last.index.tolist())
    np.testing.assert_allclose(online.loc[last.index, "prediction"], last, rtol=1e-12)
    (check,) = backfill.get_asset_check_evaluations()  # 2300 against 2200, both from this run
    assert check.metadata["reference_rows"].value == len(last)

    # the same window scored in 3 shards of cards (joined and scored shard by shard): the same
    # predictions, row for row and in the same order
    sharded = spec.model_copy(update={"execution": ExecutionSpec(shards=3)}).with_path(spec.path)
    rescored = _score(use_case_assets(sharded), home, instance, FIRST)
    assert rescored.success
    (event,) = rescored.get_asset_materialization_events()
    assert event.materialization.metadata["execution"].value == "local, 3 shards on 1 node(s)"
    in_shards = pd.read_parquet(home / "tables" / "card_risk" / "predictions" / f"{FIRST}.parquet")
    pd.testing.assert_frame_equal(
        in_shards.drop(columns=["created_timestamp"]), scored.drop(columns=["created_timestamp"])
    )
