"""Model assets end to end: train, evaluate against the baseline, register in MLflow, gate.

A small fraud world is materialized up to its model; the scorer must beat logistic regression on
the temporal test split, land in a real SQLite MLflow registry as ``champion``, and a later,
deliberately worse run must be registered but never take the champion alias.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.metadata import round_float
from configs.schema.stages import SearchRangeSpec, TuningSpec
from dagster_project.use_case_files import load_use_cases
from resources.mlflow_resource import MLflowResource
from tests.integration.test_raw_assets import _run, _small

pytestmark = pytest.mark.integration


def _fraud(days: int = 21):
    """A quarter-size fraud world over three weeks with labels final after 7 days."""
    from configs import CONFIG_DIR

    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    spec = _small(spec, days=days)
    labels = {"fraud": spec.labels["fraud"].model_copy(update={"maturity": "7d"})}
    return spec.model_copy(update={"labels": labels}).with_path(spec.path)


def _tuned(spec):
    """The scorer with a two-trial Optuna search over two parameters."""
    tuning = TuningSpec(
        trials=2,
        timeout_s=60,
        space={
            "num_leaves": SearchRangeSpec(low=7, high=31, integer=True),
            "learning_rate": SearchRangeSpec(low=0.05, high=0.2, log=True),
        },
    )
    stage = spec.model["scorer"].model_copy(update={"tuning": tuning})
    return spec.model_copy(update={"model": {"scorer": stage}}).with_path(spec.path)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def test_scorer_registers_as_champion_and_a_worse_run_is_not_promoted(tmp_path: Path) -> None:
    spec = _tuned(_fraud())
    instance = dg.DagsterInstance.ephemeral()
    first = _run(spec, tmp_path, instance=instance)
    assert first.success
    assert _checks(first)["promotion_gate"]
    (event,) = [
        e
        for e in first.get_asset_materialization_events()
        if e.asset_key.path[-2:] == ["models", "scorer_model"]
    ]
    metadata = event.materialization.metadata
    # a small world: ranking quality well above chance, calibration sane
    assert metadata["metric/auc"].value > 0.75, metadata["evaluation"].value
    assert metadata["metric/ece"].value < 0.05, metadata["evaluation"].value
    assert "bands_on_test" in metadata and metadata["model_version"].value == "1"
    floats = [v.value for v in metadata.values() if isinstance(v, dg.FloatMetadataValue)]
    assert floats and all(v == round_float(v) for v in floats)  # the UI shows 4 digits, not 16

    registry = MLflowResource(home=str(tmp_path))
    assert registry.version_by_alias("fraud.scorer", "champion") == "1"
    tags = registry.version_tags("fraud.scorer", "1")
    assert tags.get("playbook.training_set") == "fraud/training_sets/scorer_training_set"
    # the search's trials are nested runs under the training run, the best params were used
    parent = metadata["mlflow_run_id"].value
    children = registry.client().search_runs(
        [registry.experiment_id("playbook/fraud")],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
    )
    assert len(children) == 2 and all("num_leaves" in r.data.params for r in children)
    assert "num_leaves=" in metadata["tuned_params"].value

    # a crippled learner: one tree, no depth; it must be registered but not promoted
    stage = spec.model["scorer"].model_copy(
        update={"params": {"num_iterations": 1, "num_leaves": 2, "learning_rate": 0.001}}
    )
    worse = spec.model_copy(update={"model": {"scorer": stage}}).with_path(spec.path)
    second = _run(worse, tmp_path, select="scorer_model", instance=instance, raise_on_error=False)
    models = [e for e in second.get_asset_check_evaluations() if e.asset_key.path[-2] == "models"]
    gate = next(c for c in models if c.check_name == "promotion_gate")
    assert not gate.passed
    assert registry.version_by_alias("fraud.scorer", "champion") == "1"
    assert registry.version_by_alias("fraud.scorer", "challenger") == "2"

    from dagster_project.report import as_json, model_reports

    (report,) = as_json(model_reports(worse, instance, registry))
    assert report["aliases"] == {"champion": "1", "challenger": "2"}
    assert report["versions"] == ["1", "2"] and report["gate_passed"] is False
    pr_auc = next(row for row in report["metrics"] if row["metric"] == "pr_auc")
    assert {"model", "baseline", "delta"} <= set(pr_auc)


def test_bad_learner_param_fails_clearly_and_registers_nothing(tmp_path: Path) -> None:
    from configs import CONFIG_DIR

    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    spec = _small(spec)
    stage = spec.model["scorer"].model_copy(update={"params": {"num_leafs": 31}})
    spec = spec.model_copy(update={"model": {"scorer": stage}}).with_path(spec.path)
    result = _run(spec, tmp_path, raise_on_error=False)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert "num_leafs" in error.message
    registry = MLflowResource(home=str(tmp_path))
    assert registry.version_by_alias("fraud.scorer", "champion") is None


def test_feed_retriever_index_and_funnel(
    tmp_path: Path,
) -> None:
    from configs import CONFIG_DIR
    from runtime.ann_index import BuiltIndex

    (spec,) = load_use_cases([CONFIG_DIR / "feed.yaml"])
    source = spec.source.model_copy(update={"days": 7})  # full-size world, one week
    # promotion by the offline gate alone: the served load test (slo) has its own tests, and on
    # busy test cores it would keep the retriever challenger, with no champion to index
    update = {"source": source, "slo": None}
    spec = spec.model_copy(update=update).with_path(spec.path)
    instance = dg.DagsterInstance.ephemeral()
    result = _run(spec, tmp_path, instance=instance)
    assert result.success
    checks = {
        (c.asset_key.path[-2], c.asset_key.path[-1], c.check_name): c
        for c in result.get_asset_check_evaluations()
    }
    beats = checks[("models", "retrieval_model", "beats_baseline")]
    assert beats.passed, beats.metadata
    assert checks[("indices", "retrieval_index", "index_recall")].passed
    index = BuiltIndex.load(tmp_path / "indices" / "feed" / "retrieval")
    embeddings = pd.read_parquet(
        tmp_path / "tables" / "feed" / "models" / "retrieval_model.parquet"
    )
    vectors = np.stack(embeddings.embedding.to_numpy()).astype("float32")
    found, _ = index.search(vectors[:5], 1)
    assert found[:, 0].tolist() == embeddings.item_id.head(5).tolist()  # each finds itself
    funnel = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "funnel_evaluation"
    ][0].materialization.metadata
    recall, ceiling = funnel["metric/recall@20"].value, funnel["metric/candidate_recall@500"].value
    assert 0 < recall <= ceiling <= 1  # the final list can only keep what retrieval found
    requests = pd.read_parquet(tmp_path / "tables" / "feed" / "funnel_evaluation.parquet")
    assert requests.final.map(len).max() <= 20
    registry = MLflowResource(home=str(tmp_path))
    model = registry.load_model("feed.retrieval", "champion")
    assert model.unwrap_python_model().model.item_embeddings()[1].shape[1] == 32
