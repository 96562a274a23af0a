"""Native MLflow flavours, the training set as a dataset input and the Default experiment's place,
against a real SQLite MLflow store with small real models (no mocks).

A registered version's source stays the pyfunc that serving and the gate load; its LightGBM
boosters and torch towers are logged beside it with MLflow's own flavours and must load with
``mlflow.lightgbm.load_model`` / ``mlflow.pytorch.load_model`` from the URI the version exposes,
predicting what the served object's trees and towers predict.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from assets.models.tabular import train_classifier, train_expected_value
from assets.models.train import model_input
from resources.mlflow_dataset import TARGETS_TAG, TrainingData
from resources.mlflow_resource import MLflowResource, RegisteredVersion
from runtime.models.classifier import CalibratedClassifier
from runtime.models.two_tower import TwoTowerConfig, TwoTowerModel
from tests.unit.test_tabular_models import FRAUD_FEATURES, feed_frame, fraud_frame
from tests.unit.test_two_tower import World, _make_world, _train

pytestmark = pytest.mark.integration

torch.set_num_threads(1)
QUICK = {"num_threads": 1, "learning_rate": 0.1, "num_leaves": 15, "num_iterations": 60}
EXPERIMENT = "playbook/flavours"


@dataclass
class Store:
    resource: MLflowResource
    home: Path
    cwd: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    base = tmp_path_factory.mktemp("flavours")
    cwd = base / "cwd"
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)  # anything MLflow writes relative to the cwd would land here
        yield Store(MLflowResource(home=str(base / "home")), base / "home", cwd)


@contextmanager
def tracking(store: Store) -> Iterator[None]:
    """MLflow's process-wide URIs on the test store, as a user would set them to load a model."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(store.resource.resolved_tracking_uri())
    mlflow.set_registry_uri(store.resource.resolved_registry_uri())
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def splits(frame: pd.DataFrame) -> list[pd.DataFrame]:
    return [frame[frame["split"] == name] for name in ("train", "validation", "test")]


@pytest.fixture(scope="module")
def fraud() -> pd.DataFrame:
    return fraud_frame(n=4000)


@pytest.fixture(scope="module")
def classifier(fraud: pd.DataFrame) -> CalibratedClassifier:
    train, valid, _ = splits(fraud)
    return train_classifier(train, valid, FRAUD_FEATURES, "is_fraud", QUICK)


@pytest.fixture(scope="module")
def world() -> World:
    return _make_world()


@pytest.fixture(scope="module")
def two_tower(world: World) -> TwoTowerModel:
    return _train(world, TwoTowerConfig(epochs=1, batch_size=512, seed=3))


def log(
    store: Store,
    name: str,
    model,
    example: pd.DataFrame,
    training_data: TrainingData | None = None,
) -> RegisteredVersion:
    return store.resource.log_training_run(
        experiment=EXPERIMENT,
        run_name=name,
        params={"problem": name},
        metrics={"score": 1.0},
        model=model,
        input_example=example,
        lineage={"playbook.training_set": f"tests/training_sets/{name}"},
        artifacts={},
        registered_name=name,
        training_data=training_data,
    )


def test_fraud_booster_loads_with_the_lightgbm_flavour_beside_the_pyfunc(
    store: Store, fraud: pd.DataFrame, classifier: CalibratedClassifier
) -> None:
    parquet = store.home / "tables" / "fraud" / "training_sets" / "scorer_training_set.parquet"
    data = TrainingData(
        fraud, "fraud/training_sets/scorer", str(parquet), ("is_fraud",), {"playbook.x": "1"}
    )
    example = model_input(fraud.head(5), classifier.feature_columns)
    registered = log(store, "fraud.scorer", classifier, example, data)
    uri = registered.native_model_uris["booster"]
    assert uri.startswith("models:/m-")
    tags = store.resource.version_tags("fraud.scorer", registered.version)
    assert tags["playbook.native_model_uri.booster"] == uri
    assert tags["playbook.native_flavor.booster"] == "lightgbm"

    _, _, test = splits(fraud)
    matrix = classifier.features(test)
    with tracking(store):
        booster = mlflow.lightgbm.load_model(uri)
        pyfunc = mlflow.pyfunc.load_model(registered.model_uri)
        info = mlflow.models.get_model_info(registered.model_uri)
    # exactly the served trees: raw margins and LightGBM's own probability
    served = classifier.booster.predict(matrix, num_iteration=classifier.best_iteration)
    np.testing.assert_allclose(booster.predict(matrix), served, rtol=1e-9)
    np.testing.assert_allclose(booster.predict(matrix, raw_score=True), classifier.margin(test))
    assert booster.num_trees() == classifier.best_iteration
    assert booster.feature_name() == classifier.feature_columns
    # the resource's loader, by version and by alias, gives the same booster
    store.resource.set_alias("fraud.scorer", "champion", registered.version)
    for ref in (registered.version, "champion"):
        again = store.resource.load_native("fraud.scorer", ref)
        np.testing.assert_allclose(again.predict(matrix), served, rtol=1e-9)
    # the pyfunc is unchanged: what serving and the gate unwrap, and it names its native models
    unwrapped = pyfunc.unwrap_python_model().model
    assert isinstance(unwrapped, CalibratedClassifier)
    served_input = model_input(test, classifier.feature_columns)
    np.testing.assert_allclose(pyfunc.predict(served_input), classifier.predict(test))
    assert info.metadata == {"playbook.native_models": {"booster": uri}}

    # the training set is the run's dataset input: location, digest, schema, size; no rows
    run = store.resource.client().get_run(registered.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "fraud/training_sets/scorer"
    assert json.loads(dataset.source) == {"uri": str(parquet)}
    assert json.loads(dataset.profile) == {"num_rows": len(fraud), "num_elements": fraud.size}
    schema = json.loads(dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == list(fraud.columns)
    required = {c["name"]: c["required"] for c in schema}
    assert required["card__x1"] and not required["card__x3"]  # x3 has nulls
    assert len(dataset.digest) == 8 and len(dataset_input.dataset.schema) < 5_000
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags == {"mlflow.data.context": "training", TARGETS_TAG: "is_fraud", "playbook.x": "1"}


def test_expected_value_heads_are_two_native_boosters(store: Store) -> None:
    frame = feed_frame(groups=300)
    train, valid, test = splits(frame)
    features = ["item__x_click", "item__x_buy", "item_attributes__price"]
    model = train_expected_value(
        train, valid, features, "clicked", "purchased", "item_attributes__price", QUICK
    )
    registered = log(store, "feed.ranking", model, test[features].head(5))
    assert set(registered.native_model_uris) == {"click_booster", "purchase_booster"}
    matrix = model.click_model.features(test)
    for head, part in (
        (model.click_model, "click_booster"),
        (model.purchase_model, "purchase_booster"),
    ):
        with tracking(store):
            booster = mlflow.lightgbm.load_model(registered.native_model_uris[part])
        np.testing.assert_allclose(
            booster.predict(matrix, raw_score=True), head.margin(test), rtol=1e-9
        )
        assert store.resource.load_native("feed.ranking", registered.version, part).num_trees()
    with pytest.raises(LookupError, match="click_booster"):
        store.resource.load_native("feed.ranking", registered.version)  # two parts: name one


def test_towers_load_with_the_pytorch_flavour_without_pickle(
    store: Store, world: World, two_tower: TwoTowerModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = world.frame.drop_duplicates("user_id")
    example = users[two_tower.user_columns].head(5)
    registered = log(store, "feed.retrieval", two_tower, example)
    assert set(registered.native_model_uris) == {"item_tower", "user_tower"}
    tags = store.resource.version_tags("feed.retrieval", registered.version)
    assert tags["playbook.native_flavor.user_tower"] == "pytorch"

    # pt2 graphs: they load where MLflow refuses pickles (and so without Playbook's classes)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with tracking(store):
        user_tower = mlflow.pytorch.load_model(registered.native_model_uris["user_tower"])
        item_tower = mlflow.pytorch.load_model(registered.native_model_uris["item_tower"])
    assert isinstance(user_tower, torch.nn.Module)

    rows = users.head(300)  # a batch size the export never saw
    side = two_tower.user_inputs(rows)
    with torch.no_grad():
        vectors = user_tower(side.ids, side.cats, side.nums, side.seqs).numpy()
    np.testing.assert_allclose(vectors, two_tower.user_embeddings(rows), rtol=1e-5, atol=1e-6)

    items = world.items.rename(
        columns={"category": "item_attributes__category", "price": "item_attributes__price"}
    )
    side = two_tower.item_inputs(items)
    with torch.no_grad():
        vectors = item_tower(side.ids, side.cats, side.nums, side.seqs).numpy()
    _, expected = two_tower.item_embeddings(world.items)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)

    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    loaded = store.resource.load_model("feed.retrieval", registered.version)
    assert isinstance(loaded.unwrap_python_model().model, TwoTowerModel)  # serving's object


def test_a_model_without_native_parts_logs_only_the_pyfunc(store: Store) -> None:
    @dataclass
    class Constant:
        value: float

        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return np.full(len(frame), self.value)

    registered = log(store, "constant", Constant(0.5), pd.DataFrame({"x": [1.0, 2.0]}))
    assert registered.native_model_uris == {}
    assert "playbook.native_model_uri" not in str(
        store.resource.version_tags("constant", registered.version)
    )
    with pytest.raises(LookupError, match="none"):
        store.resource.load_native("constant", registered.version)


# Last on purpose: every test above logged with the cwd set to store.cwd.
def test_default_experiment_and_every_artifact_live_under_the_home(store: Store) -> None:
    client = store.resource.client()
    root = (store.home / "mlflow" / "artifacts").as_uri()
    assert client.get_experiment("0").artifact_location == f"{root}/0"
    assert client.get_experiment_by_name(EXPERIMENT).artifact_location.startswith(root)
    models = client.search_logged_models([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert models and all(m.artifact_location.startswith(root) for m in models)
    assert not (store.cwd / "mlruns").exists()
    assert list(store.cwd.iterdir()) == []


def test_an_empty_default_experiment_made_elsewhere_is_moved_under_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store first opened by a plain MLflow client (Default under that cwd's mlruns)."""
    homes = {}
    for name, with_run in (("empty", False), ("used", True)):
        home, elsewhere = tmp_path / name, tmp_path / f"{name}-cwd"
        (home / "mlflow").mkdir(parents=True)
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        client = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
        assert client.get_experiment("0").artifact_location == str(elsewhere / "mlruns" / "0")
        if with_run:
            client.set_terminated(client.create_run("0").info.run_id)
        homes[name] = home
    monkeypatch.chdir(tmp_path)

    empty = MLflowResource(home=str(homes["empty"])).client()
    root = (homes["empty"] / "mlflow" / "artifacts").as_uri()
    assert empty.get_experiment("0").artifact_location == f"{root}/0"

    with caplog.at_level(logging.WARNING, logger="resources.mlflow_logging"):
        used = MLflowResource(home=str(homes["used"])).client()
    assert "holds runs" in caplog.text  # its runs' artifacts stay where they are
    assert used.get_experiment("0").artifact_location.endswith("used-cwd/mlruns/0")
