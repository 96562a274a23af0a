"""Features -> Feast -> training sets for every shipped use case, materialized for real.

One ``materialize()`` per use case (a small world, a week of data) on an ephemeral instance; then
the generated Feast repo is opened with Feast's own SDK and checked against the feature tables:
the registry holds one view per feature table and one service per model, the online store holds
each entity's latest value at the data cutoff, and Feast's point-in-time retrieval (DuckDB offline
store) returns exactly the features of the training set's rows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore

from assets.features.views import feature_tables
from assets.training.label_rows import AS_OF
from assets.training.model_views import model_tables
from dagster_project.use_case_files import load_use_cases
from runtime import layout
from tests.integration.test_raw_assets import _run, _small

pytestmark = pytest.mark.integration
SKIP = (
    "models",
    "indices",
    "funnel_evaluation",
)  # trained on a bigger world in test_model_assets.py


@pytest.fixture(scope="module", params=["feed", "fraud", "search"])
def built(request, tmp_path_factory, shipped_configs_module):
    name = request.param
    (spec,) = load_use_cases([p for p in shipped_configs_module if p.stem == name])
    spec = _small(spec)
    home = tmp_path_factory.mktemp(name)
    result = _run(spec, home, stages_to_skip=SKIP)
    return spec, home, result


@pytest.fixture(scope="module")
def shipped_configs_module():
    from configs import CONFIG_DIR

    return sorted(CONFIG_DIR.glob("*.yaml"))


def _table(home: Path, spec, *parts: str) -> pd.DataFrame:
    return pd.read_parquet(home.joinpath("tables", spec.name, *parts).with_suffix(".parquet"))


def test_every_asset_and_check_succeeds(built) -> None:
    spec, home, result = built
    assert result.success
    failed = [
        (c.asset_key, c.metadata) for c in result.get_asset_check_evaluations() if not c.passed
    ]
    assert not failed
    keys = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(layout.feature_store_key(spec.name)) in keys
    for model in spec.model:
        frame = _table(home, spec, "training_sets", f"{model}_training_set")
        assert len(frame) > 0 and set(frame.split.unique()) == {"train", "validation", "test"}
    docs = list((home / "quality" / spec.name).rglob("index.html"))
    assert docs, "Great Expectations data docs are written under the home directory"


def test_registry_has_a_view_per_table_and_a_service_per_model(built) -> None:
    spec, home, _ = built
    store = FeatureStore(repo_path=str(home / "feast" / spec.name))
    views = {v.name for v in store.list_feature_views()}
    assert views == {t.name for t in feature_tables(spec)}
    services = {
        s.name: {p.name for p in s.feature_view_projections} for s in store.list_feature_services()
    }
    assert services == {m: {t.name for t in model_tables(spec, m)} for m in spec.model}
    assert store.config.offline_store.type == "duckdb"


def _latest(frame: pd.DataFrame, keys: list[str], cutoff: pd.Timestamp, ttl) -> pd.DataFrame:
    known = frame[frame.event_timestamp <= cutoff]
    if ttl:
        known = known[known.event_timestamp >= cutoff - ttl]
    return known.sort_values(["event_timestamp", "created_timestamp"]).groupby(keys).tail(1)


def test_feast_plan_in_the_generated_repo_reports_no_changes(built) -> None:
    """Feast's own CLI in the repo the asset wrote: nothing to create, update or delete."""
    spec, home, _ = built
    feast = Path(sys.executable).with_name("feast")
    repo = layout.HomeLayout(home).feast_repo(spec.name)
    out = subprocess.run(
        [str(feast), "-c", str(repo), "plan"], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == "No changes to registry No changes to infrastructure".split()


def test_online_store_serves_each_entitys_value_at_the_cutoff(built) -> None:
    spec, home, _ = built
    store = FeatureStore(repo_path=str(home / "feast" / spec.name))
    events = pd.concat(
        pd.read_parquet(p) for p in sorted((home / "tables" / spec.name / "raw_events").glob("*"))
    )
    cutoff = events[spec.events.timestamp].max()
    rng = np.random.default_rng(0)
    for table in feature_tables(spec):
        frame = _table(home, spec, "features", table.name)
        latest = _latest(frame, list(table.keys), cutoff, table.ttl)
        sample = latest.iloc[rng.choice(len(latest), size=min(25, len(latest)), replace=False)]
        rows = sample[list(table.keys)].to_dict("records")
        features = [f"{table.name}:{name}" for name in table.feature_names]
        online = store.get_online_features(features=features, entity_rows=rows).to_df()
        for name, dtype in table.features:
            got, want = online[name].tolist(), sample[name].tolist()
            for g, w in zip(got, want, strict=True):
                if dtype.endswith("_list"):
                    assert list(g if g is not None else []) == list(w if w is not None else [])
                elif w is None or (not isinstance(w, list | np.ndarray) and pd.isna(w)):
                    assert g is None or pd.isna(g), (table.name, name)
                elif dtype == "timestamp":
                    assert pd.Timestamp(g).tz_localize(None) == pd.Timestamp(w).floor("s")
                elif dtype == "float":
                    assert g == pytest.approx(w), (table.name, name)
                else:
                    assert g == w, (table.name, name)


def test_feast_historical_retrieval_equals_the_training_set(built) -> None:
    spec, home, _ = built
    store = FeatureStore(repo_path=str(home / "feast" / spec.name))
    for model in spec.model:
        frame = _table(home, spec, "training_sets", f"{model}_training_set")
        tables = model_tables(spec, model)
        sample = frame.sample(min(300, len(frame)), random_state=1).reset_index(drop=True)
        keys = list(dict.fromkeys(k for t in tables for k in t.keys))
        entity_df = sample[keys].assign(
            event_timestamp=sample[AS_OF].dt.tz_localize("UTC"), row=np.arange(len(sample))
        )
        job = store.get_historical_features(
            entity_df=entity_df,
            features=store.get_feature_service(model),
            full_feature_names=True,
        )
        feast = job.to_df().sort_values("row", ignore_index=True)
        compared = 0
        for table in tables:
            for name, dtype in table.features:
                column = f"{table.name}__{name}"
                if dtype == "timestamp" or dtype.endswith("_list"):
                    continue  # derived (seconds since) or list-valued: compared online above
                ours, theirs = sample[column], feast[column]
                assert (ours.isna().to_numpy() == theirs.isna().to_numpy()).all(), column
                both = ours.notna().to_numpy()
                if dtype in ("float", "int"):  # Feast returns ints with nulls as floats
                    np.testing.assert_allclose(
                        ours[both].astype(float),
                        theirs[both].astype(float),
                        rtol=1e-9,
                        err_msg=column,
                    )
                else:
                    assert ours[both].astype(str).tolist() == theirs[both].astype(str).tolist(), (
                        column
                    )
                compared += 1
        assert compared > 0


def test_null_label_key_fails_clearly_and_keeps_the_previous_training_set(tmp_path: Path) -> None:
    from configs import CONFIG_DIR

    (spec,) = load_use_cases([CONFIG_DIR / "feed.yaml"])
    spec = _small(spec, days=4)
    columns = dict(spec.events.columns)
    columns["user_id"] = columns["user_id"].model_copy(update={"nullable": True})
    events_spec = spec.events.model_copy(update={"columns": columns})
    spec = spec.model_copy(update={"events": events_spec}).with_path(spec.path)
    instance = dg.DagsterInstance.ephemeral()
    assert _run(spec, tmp_path, instance=instance, stages_to_skip=SKIP).success
    target = tmp_path / "tables" / "feed" / "training_sets" / "ranking_training_set.parquet"
    before = target.read_bytes()
    day = sorted((tmp_path / "tables" / "feed" / "raw_events").glob("*.parquet"))[1]
    frame = pd.read_parquet(day)
    frame["user_id"] = frame["user_id"].astype("Int64")
    frame.loc[5, "user_id"] = pd.NA
    frame.to_parquet(day, index=False)
    failed = _run(
        spec, tmp_path, select="ranking_training_set", instance=instance, raise_on_error=False
    )
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "entities.user.key ('user_id'): 1 label events have a null value" in message
    assert target.read_bytes() == before  # the earlier materialization is untouched


def test_redis_online_store_is_a_config_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serving.online_store: redis`` in the YAML: the asset loads Feast's Redis online store."""
    from configs import CONFIG_DIR
    from resources.feature_store import FeatureStoreResource
    from tests.redis_server import INSTALL_HINT, RedisServerNotInstalled, redis_server

    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    spec = _small(spec)
    serving = spec.serving.model_copy(update={"online_store": "redis"})
    spec = spec.model_copy(update={"serving": serving}).with_path(spec.path)
    try:
        with redis_server() as connection:
            # Feast reads the connection from the environment: it is never written to disk
            monkeypatch.setenv("PLAYBOOK_REDIS", connection)
            store_resource = FeatureStoreResource(
                root=str(tmp_path / "feast"), redis_connection=connection
            )
            overrides = {"feature_store": store_resource}
            assert _run(spec, tmp_path, overrides=overrides, stages_to_skip=SKIP).success
            store = FeatureStore(repo_path=str(tmp_path / "feast" / "fraud"))
            assert store.config.online_store.type == "redis"
            cards = _table(tmp_path, spec, "features", "card_velocity_attributes").head(20)
            online = store.get_online_features(
                features=["card_velocity_attributes:card_type"],
                entity_rows=cards[["card_id"]].to_dict("records"),
            ).to_df()
            assert online.card_type.tolist() == cards.card_type.tolist()
    except RedisServerNotInstalled:
        pytest.skip(INSTALL_HINT)


def test_a_view_that_gains_a_feature_is_reloaded_online(tmp_path: Path) -> None:
    """Incremental materialization would serve the new column as null until new events came."""
    from configs import CONFIG_DIR
    from configs.schema.stages import AggregateSpec

    (spec,) = load_use_cases([CONFIG_DIR / "search.yaml"])
    spec = _small(spec, days=4)
    instance = dg.DagsterInstance.ephemeral()
    assert _run(spec, tmp_path, instance=instance, stages_to_skip=SKIP).success
    view = spec.features["query_popularity"]
    extra = AggregateSpec(column="clicked", agg="sum", windows=["1d"])
    features = {
        **spec.features,
        "query_popularity": view.model_copy(update={"aggregates": [*view.aggregates, extra]}),
    }
    spec = spec.model_copy(update={"features": features}).with_path(spec.path)
    for step in ("query_popularity", "feature_store"):
        assert _run(spec, tmp_path, select=step, instance=instance).success
    table = _table(tmp_path, spec, "features", "query_popularity")
    latest = table.sort_values("event_timestamp").groupby("query_id").tail(1).head(30)
    store = FeatureStore(repo_path=str(tmp_path / "feast" / "search"))
    online = store.get_online_features(
        features=["query_popularity:clicked_sum_1d"],
        entity_rows=latest[["query_id"]].to_dict("records"),
    ).to_df()
    assert online.clicked_sum_1d.notna().all()
    assert online.clicked_sum_1d.tolist() == pytest.approx(latest.clicked_sum_1d.tolist())
