# ruff: noqa: E402  (Ray reads its settings at first import: they are set before the imports)
"""A worker node of a real 2-node Ray cluster on 127.0.0.1 dies in the middle of a feature stage.

The cluster is this module's own (the tests kill one of its nodes and add one back). A shard
function that stalls on its first try on the victim node is put in place of the aggregate shard
function, so the kill lands exactly while a shard task runs there; a thread waits for that shard
to start, checks that the earlier materialization is still there, then kills the node without
warning (``Cluster.remove_node(..., allow_graceful=False)``: SIGKILL to its raylet and store).

* With Ray's task retries (``runtime.ray_engine.MAX_RETRIES``) the lost shard runs again on the
  surviving node and the table equals the single-process one.
* Without retries the run fails with one line naming the shard and the cause, the earlier table
  is untouched and no shard file is left; after a node is added back, a rerun succeeds.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.ray_cluster import NODE, RAY_ENV, agent_ports, loopback_cluster

os.environ.update(RAY_ENV)

import pandas as pd
import pytest
import ray
from ray import cloudpickle

import assets.features.aggregates as aggregates
import runtime.ray_engine as ray_engine
from assets.features.aggregates import aggregate_shard
from assets.features.views import feature_tables
from configs.schema.execution import ExecutionSpec
from dagster_project.use_case_files import load_use_cases
from runtime.shards import ExecutionError
from tests.integration.test_raw_assets import _run, _small
from tests.unit.test_feature_shards import assert_same_table

pytestmark = pytest.mark.integration

# A killed raylet is declared dead after a few failed health checks: ~1.5 s here instead of the
# default ~15 s, so a retried shard is placed on the survivor without a long wait
FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}
STALL_S = 120.0  # how long the victim's shard waits to be killed before giving up


@dataclass(frozen=True)
class StallOnNode:
    """``aggregate_shard`` everywhere, except that the first shard to start on ``node`` writes its
    input path to ``signal`` and waits to be killed with its node. Travels by value (below), so
    the workers need nothing from the tests."""

    node: str
    signal: str

    def __call__(self, source: str, target: str, **kwargs) -> int:
        if ray.get_runtime_context().get_node_id() == self.node:
            try:
                handle = os.open(self.signal, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:  # a later shard, or a retry: run normally
                pass
            else:
                os.write(handle, source.encode())
                os.close(handle)
                time.sleep(STALL_S)
                raise RuntimeError(f"the node running {source} was not killed")
        return aggregate_shard(source, target, **kwargs)


cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class Kill:
    """What the killer thread saw: the stalled shard, and the earlier table at that moment."""

    shard: str = ""
    table_then: bytes = b""
    error: BaseException | None = None


def _kill_when_stalled(cluster, victim, signal: Path, target: Path, seen: Kill) -> None:
    try:
        deadline = time.monotonic() + STALL_S
        while not signal.exists() or not signal.read_text():
            if time.monotonic() > deadline:
                raise TimeoutError("no shard started on the victim node")
            time.sleep(0.05)
        seen.shard = signal.read_text()
        seen.table_then = target.read_bytes()
        pd.read_parquet(target)  # the earlier materialization is readable mid-stage
        cluster.remove_node(victim, allow_graceful=False)
    except BaseException as error:  # reported by the test, never swallowed
        seen.error = error


@pytest.fixture(scope="module")
def cluster():
    """Head plus one worker node on 127.0.0.1, 1 CPU each, fast failure detection."""
    with loopback_cluster(FAST_FAILURE_DETECTION) as started:
        yield started


@pytest.fixture(scope="module")
def fraud(tmp_path_factory):
    """The small fraud world's raw events and one aggregate table from the local engine."""
    from configs import CONFIG_DIR

    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    spec = _small(spec)
    home = tmp_path_factory.mktemp("fraud")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        assert _run(spec, home, select="raw_events").success
        table = next(t for t in feature_tables(spec) if t.kind == "aggregates")
        assert _run(spec, home, select=table.name).success
    return spec, home, table, _without_created(pd.read_parquet(_target(home, table.name)))


def _target(home: Path, name: str) -> Path:
    return home / "tables" / "fraud" / "features" / f"{name}.parquet"


def _without_created(frame: pd.DataFrame) -> pd.DataFrame:
    assert frame.created_timestamp.nunique() == 1
    return frame.drop(columns="created_timestamp")


def _ensure_two_nodes(cluster) -> None:
    """Add a worker back if a test removed it, so every test starts from two nodes."""
    if not cluster.worker_nodes:
        cluster.add_node(**NODE, **agent_ports())
    cluster.wait_for_nodes()


def _kill_during_run(cluster, spec, home, table, tmp_path, monkeypatch):
    """Materialize ``table`` on Ray while the worker node is killed; the run's result (or the
    error it raised) and what the killer saw."""
    _ensure_two_nodes(cluster)
    (victim,) = cluster.worker_nodes
    signal = tmp_path / "stalled-shard"
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    monkeypatch.setattr(aggregates, "aggregate_shard", StallOnNode(victim.node_id, str(signal)))
    seen = Kill()
    killer = threading.Thread(
        target=_kill_when_stalled,
        args=(cluster, victim, signal, _target(home, table.name), seen),
        daemon=True,
    )
    killer.start()
    on_ray = spec.model_copy(update={"execution": ExecutionSpec(shards=4)})
    try:
        outcome = _run(on_ray, home, select=table.name)
    except ExecutionError as error:
        outcome = error
    finally:
        killer.join(timeout=STALL_S)
    if seen.error is not None:
        raise seen.error
    assert seen.shard, "the victim node was killed while one of its shards ran"
    assert victim not in cluster.worker_nodes
    return outcome, seen, victim


def test_a_killed_node_s_shard_is_retried_on_the_survivor(
    cluster, fraud, tmp_path, monkeypatch
) -> None:
    spec, home, table, local = fraud
    target = _target(home, table.name)
    before = target.read_bytes()
    result, seen, victim = _kill_during_run(cluster, spec, home, table, tmp_path, monkeypatch)
    assert seen.table_then == before, "the earlier table is unchanged while the stage runs"
    assert not isinstance(result, Exception), result
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    # the victim's only CPU was held by the stalled shard until it died: every shard, the stalled
    # one included, finished on the head
    assert metadata["execution"].value == "ray, 4 shards on 1 node(s)"
    assert metadata["shard_nodes"].value == [cluster.head_node.node_id]
    assert victim.node_id not in metadata["shard_nodes"].value
    assert target.read_bytes() != before, "the successful run replaced the table"
    order = [*table.keys, "event_timestamp"]
    written = pd.read_parquet(target).sort_values(order, ignore_index=True)  # shard by shard
    assert_same_table(_without_created(written), local.sort_values(order, ignore_index=True))
    assert not list((home / "shards").rglob("*.parquet")), "shard files are cleaned up"


@pytest.mark.slow  # CI keeps the node loss that Ray's retries absorb
def test_without_retries_the_run_fails_cleanly_and_a_rerun_succeeds(
    cluster, fraud, tmp_path, monkeypatch
) -> None:
    spec, home, table, local = fraud
    target = _target(home, table.name)
    before = target.read_bytes()
    monkeypatch.setattr(ray_engine, "MAX_RETRIES", 0)
    error, seen, _ = _kill_during_run(cluster, spec, home, table, tmp_path, monkeypatch)
    assert seen.table_then == before
    assert isinstance(error, ExecutionError), error
    message = str(error)
    shard = Path(seen.shard).name
    assert message.startswith(f"RAY_ADDRESS={cluster.address!r}: shard "), message
    assert shard in message and "retried 0 times" in message and "rerun" in message
    assert "\n" not in message
    assert target.read_bytes() == before, "the failed run left the earlier table as it was"
    assert not list((home / "shards").rglob("*.parquet")), "no shard file is left behind"

    _ensure_two_nodes(cluster)  # the node comes back; the same run succeeds
    rerun = _run(spec.model_copy(update={"execution": ExecutionSpec(shards=4)}), home, table.name)
    assert rerun.success
    (event,) = rerun.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["execution"].value == "ray, 4 shards on 2 node(s)"
    order = [*table.keys, "event_timestamp"]
    written = _without_created(pd.read_parquet(target).sort_values(order, ignore_index=True))
    assert_same_table(written, local.sort_values(order, ignore_index=True))
