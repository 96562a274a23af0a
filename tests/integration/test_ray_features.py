# ruff: noqa: E402  (Ray reads its settings at first import: they are set before the imports)
"""The fraud feature stage on a real 2-node Ray cluster on 127.0.0.1, against the local run.

The module starts a head and a second node with Ray's own multi-node helper
(``ray.cluster_utils.Cluster``, 1 CPU and 1 GiB of object store each, every address 127.0.0.1:
plain ``ray start`` would leave loopback), materializes the fraud aggregate tables once without
and once with ``RAY_ADDRESS`` pointing at it, and compares. Bad settings fail before any work
with one line naming the setting.
"""

from __future__ import annotations

import os

# Read by Ray once, when first imported (here, before anything imports it): no telemetry, and
# 127.0.0.1 kept as the address a driver connects to instead of the machine's own
from pathlib import Path

import pandas as pd
import pytest

from assets.features.views import feature_tables
from configs.schema.execution import ExecutionSpec
from dagster_project.use_case_files import load_use_cases
from runtime.shards import ExecutionError, resolve_execution
from tests.integration.test_raw_assets import _run, _small
from tests.ray_cluster import RAY_ENV, free_port, loopback_cluster
from tests.unit.test_feature_shards import assert_same_table

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    """Head plus one worker node, both on 127.0.0.1, 1 CPU each; shut down by this process."""
    with loopback_cluster() as started:
        yield started


@pytest.fixture(scope="module")
def fraud(tmp_path_factory, shipped_configs_module):
    """The small fraud world's raw events and its aggregate tables from the local engine."""
    (spec,) = load_use_cases([p for p in shipped_configs_module if p.stem == "fraud"])
    spec = _small(spec)
    home = tmp_path_factory.mktemp("fraud")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        assert _run(spec, home, select="raw_events").success
        tables = [t for t in feature_tables(spec) if t.kind == "aggregates"]
        local = {}
        for table in tables:
            result = _run(spec, home, select=table.name)
            (event,) = result.get_asset_materialization_events()
            metadata = event.materialization.metadata
            assert metadata["execution"].value == "local, 1 shard"
            local[table.name] = _table(home, table.name)
    return spec, home, tables, local


@pytest.fixture(scope="module")
def shipped_configs_module():
    from configs import CONFIG_DIR

    return sorted(CONFIG_DIR.glob("*.yaml"))


def _table(home: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(home / "tables" / "fraud" / "features" / f"{name}.parquet")


def _without_created(frame: pd.DataFrame) -> pd.DataFrame:
    assert frame.created_timestamp.nunique() == 1  # one stamp per run, differs between runs
    return frame.drop(columns="created_timestamp")


def test_feature_tables_on_two_ray_nodes_equal_the_local_run(cluster, fraud, monkeypatch) -> None:
    spec, home, tables, local = fraud
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    on_ray = spec.model_copy(update={"execution": ExecutionSpec(shards=4)})
    nodes = {n.node_id for n in [cluster.head_node, *cluster.worker_nodes]}
    for table in tables:
        result = _run(on_ray, home, select=table.name)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        metadata = event.materialization.metadata
        assert metadata["execution"].value == "ray, 4 shards on 2 node(s)"
        assert set(metadata["shard_nodes"].value) == nodes, "tasks ran on both nodes"
        order = [*table.keys, "event_timestamp"]
        expected = local[table.name].sort_values(order, ignore_index=True)
        # shards are written one after the other: the same rows, in (keys, time) order per shard
        written = _table(home, table.name).sort_values(order, ignore_index=True)
        assert_same_table(_without_created(written), _without_created(expected))
    assert not list((home / "shards").rglob("*.parquet")), "shard files are cleaned up"


def test_unreachable_ray_address_fails_before_any_output(fraud, monkeypatch) -> None:
    spec, home, tables, _ = fraud
    table = tables[0]
    target = home / "tables" / "fraud" / "features" / f"{table.name}.parquet"
    before = (target.stat().st_mtime_ns, target.read_bytes())
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ExecutionError) as caught:
        _run(spec, home, select=table.name)
    message = str(caught.value)
    assert message.startswith(f"RAY_ADDRESS={address!r}: no Ray cluster answers there")
    assert "\n" not in message
    assert (target.stat().st_mtime_ns, target.read_bytes()) == before, "earlier table kept"
    assert not (home / "shards").exists() or not list((home / "shards").rglob("*.parquet"))


def test_workers_that_cannot_import_a_module_are_named(cluster, tmp_path, monkeypatch) -> None:
    from runtime.ray_engine import ray_engine

    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    execution = resolve_execution(
        ExecutionSpec(address=cluster.address), tmp_path, environ=os.environ
    )
    with pytest.raises(ExecutionError) as caught:
        with ray_engine(execution, ["assets.features.aggregates", "playbook_module_not_there"]):
            pass
    message = str(caught.value)
    assert message.startswith(f"execution.address={cluster.address!r}: node ")
    assert "cannot import playbook_module_not_there" in message
    assert "install the project on every node" in message
