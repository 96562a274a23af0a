"""MLflowResource against a real SQLite MLflow store in a temporary home (no mocks).

One store serves the whole module: creating it runs every MLflow migration (seconds), so each
test uses its own registered model name instead of its own database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import RunStatus

from resources.mlflow_resource import MLflowResource, RegisteredVersion
from runtime.layout import CHALLENGER, CHAMPION
from runtime.promotion import GATE_TAG_PREFIX, promotion_gate

EXPERIMENT = "movies/ranker"
FEATURES = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "n": [1, 2, 3, 4]})
TARGET = np.array([2.0, 4.0, 6.0, 8.0])  # y = 2x
LINEAGE = {"training_set": "movies/training_set", "training_set.data_version": "abc123"}


@dataclass
class Scaler:
    """A stand-in model: predicts ``slope * x``."""

    slope: float

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["x"].to_numpy() * self.slope


def _refuse_to_load() -> Scaler:
    raise RuntimeError("this model cannot be loaded")


@dataclass
class UnloadableModel(Scaler):
    """Pickles fine and predicts in training, but fails to unpickle: a broken artifact."""

    def __reduce__(self):
        return (_refuse_to_load, ())


@dataclass
class Store:
    resource: MLflowResource
    home: Path
    cwd: Path
    plot: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    base = tmp_path_factory.mktemp("mlflow")
    cwd = base / "cwd"
    cwd.mkdir()
    plot = base / "roc.png"
    plot.write_bytes(b"\x89PNG not really")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)  # anything MLflow writes relative to the cwd would land here
        yield Store(MLflowResource(home=str(base / "home")), base / "home", cwd, plot)


def log(store: Store, name: str, slope: float, **overrides) -> RegisteredVersion:
    arguments = {
        "experiment": EXPERIMENT,
        "run_name": f"{name}-{slope}",
        "params": {"slope": slope, "objective": "l2"},
        "metrics": {"mae": 0.5, "rmse": 0.7},
        "model": Scaler(slope),
        "input_example": FEATURES,
        "lineage": LINEAGE,
        "artifacts": {"roc_curve": store.plot},
        "registered_name": name,
    }
    return store.resource.log_training_run(**{**arguments, **overrides})


def mae(model) -> float:
    return float(np.abs(model.predict(FEATURES) - TARGET).mean())


def test_logged_run_has_params_metrics_tags_plots_and_a_registered_model(store: Store) -> None:
    registered = log(store, "logged", 2.0)
    client = store.resource.client()

    run = client.get_run(registered.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"slope": "2.0", "objective": "l2"}
    assert run.data.metrics == {"mae": 0.5, "rmse": 0.7}
    assert {k: run.data.tags[k] for k in LINEAGE} == LINEAGE
    assert [a.path for a in client.list_artifacts(registered.run_id, "plots")] == [
        "plots/roc_curve.png"
    ]

    version = client.get_model_version("logged", registered.version)
    assert version.run_id == registered.run_id
    assert {k: version.tags[k] for k in LINEAGE} == LINEAGE
    assert registered.model_uri == f"models:/logged/{registered.version}"
    assert registered.run_url is None  # no UI behind a SQLite store

    model = store.resource.load_model("logged", registered.version)
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["x", "n"]
    assert signature.outputs is not None
    np.testing.assert_allclose(model.predict(FEATURES), TARGET)


def test_aliases_round_trip(store: Store) -> None:
    first = log(store, "aliased", 1.0)
    second = log(store, "aliased", 2.0)
    resource = store.resource

    assert resource.version_by_alias("aliased", CHAMPION) is None
    assert resource.version_by_alias("no-such-model", CHAMPION) is None
    resource.set_alias("aliased", CHAMPION, first.version)
    assert resource.version_by_alias("aliased", CHAMPION) == first.version
    resource.set_alias("aliased", CHAMPION, second.version)  # an alias moves
    assert resource.version_by_alias("aliased", CHAMPION) == second.version
    np.testing.assert_allclose(resource.load_model("aliased", CHAMPION).predict(FEATURES), TARGET)
    np.testing.assert_allclose(
        resource.load_model("aliased", first.version).predict(FEATURES), TARGET / 2
    )


def test_gate_promotes_first_and_better_models_and_blocks_worse_ones(store: Store) -> None:
    resource = store.resource
    name = "gated"

    def gate(registered: RegisteredVersion):
        return resource.run_gate(name, registered.version, mae, higher_is_better=False, margin=0.1)

    first = log(store, name, 1.0)  # mae 5.0
    verdict = gate(first)
    assert verdict.promote and verdict.delta is None
    assert resource.version_by_alias(name, CHAMPION) == first.version

    worse = log(store, name, 0.5)  # mae 6.25: worse by 1.25, beyond the margin
    verdict = gate(worse)
    assert not verdict.promote
    assert verdict.delta == pytest.approx(-1.25)
    assert verdict.champion_version == first.version
    assert resource.version_by_alias(name, CHAMPION) == first.version
    assert resource.version_by_alias(name, CHALLENGER) == worse.version
    tags = resource.version_tags(name, worse.version)
    assert tags[GATE_TAG_PREFIX + "promote"] == "false"
    assert "beyond margin" in tags[GATE_TAG_PREFIX + "reason"]

    better = log(store, name, 1.8)  # mae 1.0
    assert gate(better).promote
    assert resource.version_by_alias(name, CHAMPION) == better.version

    slightly_worse = log(store, name, 1.78)  # mae 1.05: worse by 0.05, within the margin
    verdict = gate(slightly_worse)
    assert verdict.promote and "within margin" in verdict.reason
    assert verdict.delta == pytest.approx(-0.05)
    assert resource.version_by_alias(name, CHAMPION) == slightly_worse.version
    assert resource.version_tags(name, slightly_worse.version)[GATE_TAG_PREFIX + "promote"] == (
        "true"
    )


def test_promotion_gate_directions_and_margin() -> None:
    assert promotion_gate(0.7, None, higher_is_better=True, margin=0.0).promote
    assert promotion_gate(0.7, 0.6, higher_is_better=True, margin=0.0).delta == pytest.approx(0.1)
    assert not promotion_gate(0.5, 0.6, higher_is_better=True, margin=0.05).promote
    assert promotion_gate(0.58, 0.6, higher_is_better=True, margin=0.05).promote
    assert promotion_gate(0.5, 0.6, higher_is_better=False, margin=0.0).promote
    with pytest.raises(ValueError):
        promotion_gate(0.5, 0.6, higher_is_better=True, margin=-1)


def failed_runs(store: Store, run_name: str) -> list:
    client = store.resource.client()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"attributes.run_name = '{run_name}'"
    )
    return [run for run in runs if run.info.status == RunStatus.to_string(RunStatus.FAILED)]


def test_failure_after_registration_deletes_the_version_and_fails_the_run(store: Store) -> None:
    name = "unloadable"
    with pytest.raises(RuntimeError, match="cannot be loaded"):
        log(store, name, 2.0, model=UnloadableModel(2.0), run_name="broken")
    client = store.resource.client()
    assert client.search_model_versions(f"name = '{name}'") == []
    assert client.search_registered_models(f"name = '{name}'") == []
    assert len(failed_runs(store, "broken")) == 1


def test_failure_keeps_earlier_versions_of_an_existing_model(store: Store) -> None:
    name = "kept"
    good = log(store, name, 2.0)
    with pytest.raises(FileNotFoundError):
        log(store, name, 3.0, artifacts={"missing": store.home / "nope.png"}, run_name="no-plot")
    versions = store.resource.client().search_model_versions(f"name = '{name}'")
    assert [str(v.version) for v in versions] == [good.version]
    assert len(failed_runs(store, "no-plot")) == 1


# Last on purpose: every test above ran with the cwd set to store.cwd.
def test_artifacts_live_under_the_home_and_nothing_in_the_cwd(store: Store) -> None:
    registered = log(store, "located", 2.0)
    client = store.resource.client()
    root = store.home / "mlflow" / "artifacts"

    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == (root / "movies_ranker").as_uri()
    # MLflow's own Default experiment too, though the store was first opened in the cwd
    assert client.get_experiment("0").artifact_location == f"{root.as_uri()}/0"
    assert client.get_run(registered.run_id).info.artifact_uri.startswith(root.as_uri())
    assert list(root.rglob("roc_curve.png"))
    assert list(root.rglob("MLmodel"))
    assert (store.home / "mlflow" / "mlflow.db").is_file()
    assert not (store.cwd / "mlruns").exists()
    assert list(store.cwd.iterdir()) == []
