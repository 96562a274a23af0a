"""Delayed-label tracking and auto-rollback end to end on a small served fraud world.

Version 1 (the shipped scorer) serves recent transactions in-process through the serving
bundle, so the request log holds its real predictions. A second version trained with a crippled
learner (one tree of two leaves) is promoted through the real gate, loosened for that run only
(``promotion_margin: 1``: the offline gate let a bad model through), the bundle is rebuilt and
serves the same transactions. The performance asset, run with the YAML's margin, joins both
versions' predictions with the chargeback labels, finds v2 worse on PR-AUC and moves
``champion`` back to 1; MLflow and the Dagster check record it.

Replayed transactions read the online store as it is at the end of the data, not as of each
transaction, so both versions see the same (partly future) features: the comparison between
them is fair, their absolute numbers are optimistic.
"""

import shutil
import sqlite3
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from assets.monitoring.performance_assets import ROLLBACK_CHECK
from configs import CONFIG_DIR
from dagster_project.loader import load_use_cases, resources, use_case_assets
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.promotion import (
    LAST_ROLLBACK_TAG,
    PREVIOUS_CHAMPION_TAG,
    RESTORED_TAG,
    ROLLBACK_TAG_PREFIX,
    ROLLED_BACK_TAG,
)
from serving.service import build_handler
from tests.integration.served import DAYS, materialized_home
from tests.integration.test_raw_assets import _small

pytestmark = pytest.mark.integration

WEAK = {"num_iterations": 1, "num_leaves": 2, "learning_rate": 0.001}
LEGITIMATE = 250  # sampled legitimate transactions served beside every fraud of the last days


def _relocated_copy(source: Path, target: Path) -> Path:
    """A copy of a home whose MLflow store and Feast configs point into the copy, so nothing
    the test writes (runs, artifacts, aliases) reaches the shared home."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("bentoml", "triton", "done"))
    old, new = str(source), str(target)
    with sqlite3.connect(target / "mlflow" / "mlflow.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for _, column, kind, *_ in db.execute(f"PRAGMA table_info({table})").fetchall():
                if "CHAR" in kind.upper() or "TEXT" in kind.upper():
                    db.execute(
                        f"UPDATE {table} SET {column} = REPLACE({column}, ?, ?)"
                        f" WHERE {column} LIKE ?",
                        (old, new, f"%{old}%"),
                    )
    for config in target.rglob("feature_store.yaml"):
        config.write_text(config.read_text().replace(old, new))
    return target


def _transactions(home: Path) -> pd.DataFrame:
    """Every fraud of the last three days and a seeded sample of legitimate transactions."""
    files = sorted((home / "tables" / "fraud" / "raw_events").rglob("*.parquet"))
    events = pd.concat([pd.read_parquet(f) for f in files[-3:]], ignore_index=True)
    legitimate = events[events.is_fraud == 0].sample(LEGITIMATE, random_state=0)
    return pd.concat([events[events.is_fraud == 1], legitimate]).sort_values("event_time")


def _serve(home: Path, transactions: pd.DataFrame) -> None:
    handler = build_handler(home / "serving" / "fraud" / "bundle")
    for row in transactions.itertuples():
        handler.handle(
            {
                "transaction": {
                    "transaction_id": int(row.transaction_id),
                    "card_id": int(row.card_id),
                    "merchant_id": int(row.merchant_id),
                    "amount": float(row.amount),
                    "event_time": row.event_time.isoformat(),
                }
            }
        )
    handler.log.flush()
    handler.log.close()


def _materialize(spec, home: Path, keys: list[dg.AssetKey]) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        use_case_assets(spec),
        selection=keys,
        resources=resources(UPath(home)),
        instance=dg.DagsterInstance.ephemeral(),
    )


def test_worse_champion_on_delayed_labels_is_rolled_back(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _relocated_copy(materialized_home(tmp_path_factory, "fraud"), tmp_path / "home")
    monkeypatch.setenv("PLAYBOOK_HOME", str(home))
    monkeypatch.delenv("PLAYBOOK_REQUEST_LOG", raising=False)
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    spec = _small(spec, days=DAYS["fraud"])
    name = layout.registered_model_name(spec.name, "scorer")
    registry = MLflowResource(home=str(home))
    assert registry.version_by_alias(name, "champion") == "1"
    started = time.perf_counter()
    # nothing served yet: an empty table and a passing check, not a failure
    empty = _materialize(spec, home, [dg.AssetKey(layout.performance_key(spec.name, "scorer"))])
    (event,) = empty.get_asset_materialization_events()
    assert event.materialization.metadata["dagster/row_count"].value == 0
    assert "no logged 'score' predictions" in event.materialization.metadata["note"].value
    assert [c.passed for c in empty.get_asset_check_evaluations()] == [True, True]

    transactions = _transactions(home)
    _serve(home, transactions)  # version 1

    # v2: a crippled learner through the real gate, loosened for this run only
    stage = spec.model["scorer"].model_copy(update={"params": WEAK, "promotion_margin": 1.0})
    weak = spec.model_copy(update={"model": {"scorer": stage}}).with_path(spec.path)
    trained = _materialize(
        weak,
        home,
        [
            dg.AssetKey(layout.model_key(weak.name, "scorer")),
            dg.AssetKey(layout.serving_bundle_key(weak.name)),
        ],
    )
    assert trained.success
    assert registry.version_by_alias(name, "champion") == "2"
    assert registry.version_tags(name, "2")[PREVIOUS_CHAMPION_TAG] == "1"
    _serve(home, transactions)  # version 2, from the rebuilt bundle

    result = _materialize(spec, home, [dg.AssetKey(layout.performance_key(spec.name, "scorer"))])
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    table = pd.read_parquet(
        home / "tables" / "fraud" / "performance" / "scorer_performance.parquet"
    )
    by_version = table.groupby("version")[["labelled", "positives"]].sum()
    assert by_version["labelled"].tolist() == [len(transactions)] * 2  # all labels arrived
    assert metadata["pending"].value == 0 and metadata["unmatched"].value == 0

    # the rollback: alias back to 1, both versions, the registered model and a run record it
    assert registry.version_by_alias(name, "champion") == "1"
    demoted, restored = registry.version_tags(name, "2"), registry.version_tags(name, "1")
    assert demoted[ROLLED_BACK_TAG] == "true" and restored[RESTORED_TAG] == "true"
    for tags in (demoted, restored):
        assert tags[ROLLBACK_TAG_PREFIX + "from"] == "2" and tags[ROLLBACK_TAG_PREFIX + "to"] == "1"
        assert "beyond margin" in tags[ROLLBACK_TAG_PREFIX + "reason"]
    model_tags = registry.client().get_registered_model(name).tags
    assert "v2 -> v1" in model_tags[LAST_ROLLBACK_TAG]
    (run,) = registry.client().search_runs(
        [registry.experiment_id("playbook/fraud")],
        filter_string="tags.`playbook.event` = 'rollback'",
    )
    assert run.data.params == {"from_version": "2", "to_version": "1"}

    # the Dagster check reports it
    check = _check(result, ROLLBACK_CHECK)
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["rolled_back"].value is True
    assert check.metadata["rolled_back_to"].value == "1"
    assert check.metadata["mlflow_run_id"].value == run.info.run_id
    assert check.metadata["metric"].value == "pr_auc"  # fraud's primary metric
    margin = spec.model["scorer"].promotion_margin
    assert check.metadata["previous_value"].value > check.metadata["champion_value"].value + margin
    with pytest.raises(ValueError, match="champion is 1"):
        registry.rollback(name, "1", "again")

    # run again: champion 1 has no previous champion, nothing more happens
    again = _materialize(spec, home, [dg.AssetKey(layout.performance_key(spec.name, "scorer"))])
    check = _check(again, ROLLBACK_CHECK)
    assert check.passed and "no previous champion" in check.metadata["reason"].value
    assert time.perf_counter() - started < 120


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    """The evaluation of the check ``name`` (the asset also has its request-log check)."""
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == name]
    return check
