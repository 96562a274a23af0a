"""Batch predictions in Feast: the ``<use case>_predictions`` view, its loads and online reads.

The view lives in a Feast project of its own, ``<use case>_predictions`` (folder
``<home>/feast/<use case>_predictions``, beside the use case's feature repo), rather than in the
use case's project: the ``feature_store`` asset applies that project whole and deletes what the
YAML does not define, and the predictions are written by another asset on another cadence (each
scoring window). A project per writer keeps each one's ``feast plan`` empty after its apply.

The view's source is every window's Parquet file (a ``*.parquet`` glob over the predictions
folder, which Feast's DuckDB offline store reads as one table). A load is
``FeatureStore.materialize(start, end)`` over the windows just scored up to the newest prediction
stored: Feast writes each entity's latest row in that range, so rescoring an old window never
replaces a newer prediction online. A read is Feast's own ``get_online_features``: a key lookup
is the whole serving path.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from resources.feast_definitions import EntityDef, FeatureRepoDef, FeatureViewDef
from resources.feature_store import FeatureStoreResource
from runtime import layout
from runtime.batch_predictions import EVENT_TIMESTAMP, MODEL_VERSION, PREDICTION


def predictions_repo(
    use_case: str,
    entity: EntityDef,
    folder: str,
    outputs: tuple[tuple[str, str], ...] = ((PREDICTION, "float"),),
    origin: str = "",
) -> FeatureRepoDef:
    """The Feast project of ``use_case``'s predictions, over the Parquet files in ``folder``:
    one view whose features are the model's ``outputs`` (``(name, dtype)``) and its version."""
    name = layout.predictions_view(use_case)
    view = FeatureViewDef(
        name=name,
        entities=(entity,),
        features=(*outputs, (MODEL_VERSION, "int")),
        source_path=f"{folder.rstrip('/')}/*.parquet",
        ttl=timedelta(0),  # a prediction stands until the next window replaces it
        description=f"Batch predictions of {use_case!r}: the champion's score per {entity.name}.",
        tags={"use_case": use_case, "kind": "predictions"},
    )
    return FeatureRepoDef(project=name, views=(view,), services={}, origin=origin)


def stored_until(repo: FeatureRepoDef) -> datetime | None:
    """The newest prediction time in the view's files (None when there are none)."""
    (view,) = repo.views
    try:
        ((latest,),) = duckdb.sql(
            f"SELECT max({EVENT_TIMESTAMP}) FROM read_parquet('{view.source_path}')"
        ).fetchall()
    except duckdb.IOException:  # no file matches the glob yet
        return None
    return None if latest is None else pd.Timestamp(latest).tz_convert("UTC").to_pydatetime()


def publish_predictions(
    store: FeatureStoreResource, repo: FeatureRepoDef, start: datetime
) -> dict[str, object]:
    """Apply the predictions project and load ``[start, newest stored]`` into the online store."""
    applied = store.apply(repo)
    end = stored_until(repo)
    if end is None:
        raise FileNotFoundError(f"no predictions under {repo.views[0].source_path}")
    feast = store.store(repo.project)
    feast.materialize(start, end, feature_views=[repo.views[0].name])
    return {
        "project": repo.project,
        "repo_path": applied["repo_path"],
        "definitions": applied["definitions"],
        "view": repo.views[0].name,
        "loaded_from": start.isoformat(),
        "loaded_until": end.isoformat(),
    }


def online_predictions(
    store: FeatureStoreResource, use_case: str, key: str, values: list[object]
) -> pd.DataFrame:
    """The served predictions of ``values`` (entity keys): Feast's ``get_online_features`` on
    the predictions view, one row per key with every stored output and ``model_version`` (null
    for an entity never scored)."""
    name = layout.predictions_view(use_case)
    feast = store.store(name)
    features = [f"{name}:{field.name}" for field in feast.get_feature_view(name).features]
    response = feast.get_online_features(
        features=features, entity_rows=[{key: value} for value in values]
    )
    return response.to_df()
