"""Batch scoring as Ray tasks on a real 2-node cluster on 127.0.0.1 equals the one-pass scores.

The card-risk world (:mod:`tests.batch_serving_world`) is materialized up to its model in this
process; one hourly window is scored in one pass, then again with ``RAY_ADDRESS`` set: the
scoring rows are cut into shards of whole cards, each shard joined to the feature tables and
scored by a Ray task (:mod:`assets.serving.batch_shards`), and the window's file must hold the
same predictions, row for row, with tasks on both nodes.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from configs.schema.execution import ExecutionSpec
from dagster_project.loader import resources, use_case_assets
from dagster_project.use_case_files import load_use_cases
from tests.batch_serving_world import write_card_risk
from tests.integration.test_raw_assets import _run
from tests.ray_cluster import loopback_cluster

pytestmark = pytest.mark.integration
WINDOW = "2025-01-06-1000"


def _score(spec, home: Path, instance: dg.DagsterInstance) -> dg.ExecuteInJobResult:
    assets = use_case_assets(spec)
    (predictions,) = [a for a in assets if a.key.path[-1] == "predictions"]
    return dg.materialize(
        assets,
        selection=[predictions.key],
        resources=resources(UPath(home)),
        instance=instance,
        partition_key=WINDOW,
    )


def _window(home: Path) -> pd.DataFrame:
    frame = pd.read_parquet(home / "tables" / "card_risk" / "predictions" / f"{WINDOW}.parquet")
    return frame.drop(columns=["created_timestamp"])  # one stamp per run


def test_batch_scoring_on_two_ray_nodes_equals_one_pass(tmp_path: Path, monkeypatch) -> None:
    (spec,) = load_use_cases([write_card_risk(tmp_path)])
    home = tmp_path / "home"
    instance = dg.DagsterInstance.ephemeral()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert _run(spec, home, instance=instance, stages_to_skip=("predictions",)).success
    assert _score(spec, home, instance).success
    one_pass = _window(home)
    assert len(one_pass) > 200

    with loopback_cluster() as cluster:
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        on_ray = spec.model_copy(update={"execution": ExecutionSpec(shards=4)})
        result = _score(on_ray.with_path(spec.path), home, instance)
        nodes = {n.node_id for n in [cluster.head_node, *cluster.worker_nodes]}
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["execution"].value == "ray, 4 shards on 2 node(s)"
    assert set(metadata["shard_nodes"].value) == nodes, "tasks ran on both nodes"
    pd.testing.assert_frame_equal(_window(home), one_pass)
    assert not list((home / "shards").rglob("*.parquet")), "shard files are cleaned up"
