"""Training progress in the run's log: LightGBM iterations and two-tower epochs.

The learners log through Python ``logging`` (a logger per module) and know nothing of Dagster;
the instance a home's ``dagster_home`` writes captures those loggers (``python_logs`` in its
``dagster.yaml``), so the lines land in the run's event log, where the UI's run view reads them.
The instance here is exactly that one, read from the file, not configured in code.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml
from upath import UPath

from assets.models.classifier import train_classifier
from assets.models.two_tower import train_two_tower
from resources.home import MANAGED_PYTHON_LOGGERS, dagster_home
from runtime.models.two_tower import TwoTowerConfig
from tests.unit.test_two_tower import ITEM_FEATURES, USER_FEATURES, _make_world

pytestmark = pytest.mark.integration


def _log_lines(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        record.user_message for record in instance.all_logs(run_id) if not record.is_dagster_event
    ]


def _fraud_like(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    p = 1 / (1 + np.exp(-(2 * x[:, 0] - x[:, 1] - 2.5)))
    return pd.DataFrame(x, columns=["a", "b", "c"]).assign(label=(rng.random(rows) < p).astype(int))


def test_lightgbm_iterations_and_two_tower_epochs_reach_the_run_log(tmp_path: Path) -> None:
    @dg.asset
    def scorer() -> None:
        train_classifier(_fraud_like(3000, 0), _fraud_like(1000, 1), ["a", "b", "c"], "label")

    @dg.asset
    def retriever() -> None:
        world = _make_world()
        train_two_tower(
            world.frame[world.frame.split == "train"],
            world.frame[world.frame.split == "validation"],
            user_key="user_id",
            item_key="item_id",
            label="clicked",
            user_features=USER_FEATURES,
            item_features=ITEM_FEATURES,
            items=world.items,
            config=TwoTowerConfig(epochs=2, batch_size=512, seed=3),
        )

    folder = dagster_home(UPath(tmp_path / "home"))
    with dg.DagsterInstance.from_config(str(folder)) as instance:
        assert set(MANAGED_PYTHON_LOGGERS) <= set(instance.managed_python_loggers)
        tabular = dg.materialize([scorer], instance=instance)
        towers = dg.materialize([retriever], instance=instance)
        assert tabular.success and towers.success
        lines = _log_lines(instance, tabular.run_id)
        iterations = [line for line in lines if line.startswith("LightGBM iteration")]
        # the first iteration and every 25th, each with the validation metric
        assert iterations[0].startswith("LightGBM iteration 1/1000: validation auc=")
        assert any(line.startswith("LightGBM iteration 25/1000: validation auc=") for line in lines)
        (done,) = [line for line in lines if line.startswith("LightGBM done:")]
        # "LightGBM done: 60 iterations in 3.8 s, best iteration 10 (validation auc=0.88376)":
        # early stopping ran on past the best iteration, and the line says how far
        ran = int(done.split()[2])
        best = int(done.split("best iteration ")[1].split()[0])
        assert ran > best and "(validation auc=" in done
        epochs = [
            line for line in _log_lines(instance, towers.run_id) if line.startswith("two-tower")
        ]
        assert [line.split(":")[0] for line in epochs] == [
            "two-tower epoch 1/2",
            "two-tower epoch 2/2",
        ]
        assert all("train loss" in line and "validation loss" in line for line in epochs)
        assert all(line.endswith(" s") for line in epochs)


def test_an_existing_home_gets_the_loggers_and_keeps_its_settings(tmp_path: Path) -> None:
    folder = tmp_path / "home" / "dagster"
    folder.mkdir(parents=True)
    config = folder / "dagster.yaml"
    # a home from before: telemetry on purpose, a run coordinator, a comment
    config.write_text(
        "# mine\ntelemetry:\n  enabled: true\n"
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    dagster_home(UPath(tmp_path / "home"))
    text = config.read_text()
    settings = yaml.safe_load(text)
    assert text.startswith("# mine\n")  # appended, not rewritten
    assert settings["telemetry"] == {"enabled": True}
    assert settings["run_coordinator"]["class"] == "DefaultRunCoordinator"
    assert settings["python_logs"] == {
        "managed_python_loggers": list(MANAGED_PYTHON_LOGGERS),
        "python_log_level": "INFO",
    }
    dagster_home(UPath(tmp_path / "home"))
    assert config.read_text() == text  # nothing left to add: the file is left alone

    # a user's own python_logs: their loggers and level are kept, ours added
    config.write_text(
        "python_logs:\n  managed_python_loggers: [my_lib]\n  python_log_level: DEBUG\n"
        "telemetry:\n  enabled: false\n"
    )
    dagster_home(UPath(tmp_path / "home"))
    settings = yaml.safe_load(config.read_text())
    assert settings["python_logs"] == {
        "managed_python_loggers": ["my_lib", *MANAGED_PYTHON_LOGGERS],
        "python_log_level": "DEBUG",
    }
    assert settings["telemetry"] == {"enabled": False}
    with dg.DagsterInstance.from_config(str(folder)) as instance:  # Dagster accepts the file
        assert instance.python_log_level == "DEBUG"
