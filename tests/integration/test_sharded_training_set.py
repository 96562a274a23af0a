# ruff: noqa: E402, F811  (Ray reads its settings at first import; pytest fixtures come imported)
"""Training sets built in shards, here and on a real 2-node Ray cluster, against one pass.

The small fraud world (a week, ~10k transactions, every join view: the card's aggregates and
attributes on ``card_id``, the merchant's on ``merchant_id``) is built once in one pass; then
with ``execution.shards: 4`` on the local engine, through the functions and through the Dagster
asset, and with ``RAY_ADDRESS`` pointing at the two-node cluster of
:mod:`tests.integration.test_ray_features` (its fixtures, imported). Every result must be the
one-pass frame exactly: rows, order, index, columns, dtypes, values. The feed's retrieval set
adds sampled negatives, drawn in the same shards: they too must be the one-pass draws.
"""

from __future__ import annotations

import os

from tests.ray_cluster import RAY_ENV

os.environ.update(RAY_ENV)
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from upath import UPath

from assets.features.views import compute_aggregate_table, compute_attribute_table, feature_tables
from assets.raw.event_log import log_columns, log_files, read_events
from assets.raw.tables import all_events, entity_table
from assets.split.plan import plan_split
from assets.training.build import TrainingSet, build_training_set
from assets.training.label_rows import label_event_columns, label_rows
from assets.training.sharded_join import SHARD_MODULES, plan_sharding
from assets.training.sharded_labels import EventFiles, sharded_label_rows
from configs.schema.execution import ExecutionSpec
from configs.schema.usecase import UseCaseSpec
from dagster_project.use_case_files import load_use_cases
from runtime import layout
from runtime.shards import LocalEngine, open_engine, resolve_execution
from tests.integration.test_raw_assets import _run, _small
from tests.integration.test_ray_features import cluster, shipped_configs_module  # noqa: F401

pytestmark = pytest.mark.integration

CREATED = pd.Timestamp("2025-03-01")
MODEL = "scorer"
FEED_MODEL = "retrieval"


def _with_prior_label_filter(spec: UseCaseSpec) -> UseCaseSpec:
    """Fraud's scorer judged without cards whose chargeback was known: the label rows then carry
    a per-card flag, which only a shard of whole cards computes right."""
    stage = spec.model[MODEL]
    evaluation = stage.evaluation.model_copy(
        update={
            "filter": stage.evaluation.filter.model_copy(
                update={"drop_units_with_prior_label": "fraud"}
            )
        }
    )
    model = {**spec.model, MODEL: stage.model_copy(update={"evaluation": evaluation})}
    return spec.model_copy(update={"model": model}).with_path(spec.path)


def _feature_files(spec: UseCaseSpec, events: pd.DataFrame, folder: Path) -> dict[str, str]:
    """Every feature table of ``spec`` computed in one pass, written to ``folder``."""
    paths = {}
    for table in feature_tables(spec):
        if table.kind == "aggregates":
            frame = compute_aggregate_table(spec, table, events, CREATED)
        else:
            entity = spec.entities[table.entities[0]]
            frame = compute_attribute_table(spec, table, entity_table(spec, entity.table), CREATED)
        paths[table.name] = str(folder / f"{table.name}.parquet")
        frame.to_parquet(paths[table.name], index=False)
    return paths


def _split_plan(spec: UseCaseSpec, events: pd.DataFrame) -> pd.DataFrame:
    labels = {name: label.column for name, label in spec.labels.items()}
    return plan_split(events, spec.split, spec.events.timestamp, spec.events.group, labels)


@pytest.fixture(scope="module")
def world(shipped_configs_module, tmp_path_factory):
    """The small fraud world's events, split plan and feature tables, and its one-pass set."""
    (spec,) = load_use_cases([p for p in shipped_configs_module if p.stem == "fraud"])
    spec = _with_prior_label_filter(_small(spec))
    events = all_events(spec)
    paths = _feature_files(spec, events, tmp_path_factory.mktemp("fraud_tables"))
    plan = _split_plan(spec, events)
    expected = build_training_set(spec, MODEL, events, plan, paths)
    return spec, events, plan, paths, expected


@pytest.fixture(scope="module")
def feed_world(shipped_configs_module, tmp_path_factory):
    """The small feed world and its retrieval set in one pass: positives (clicks) and 4
    popularity-sampled negatives each, joined to the user's and the item's views."""
    (spec,) = load_use_cases([p for p in shipped_configs_module if p.stem == "feed"])
    spec = _small(spec)
    events = all_events(spec)
    paths = _feature_files(spec, events, tmp_path_factory.mktemp("feed_tables"))
    plan = _split_plan(spec, events)
    catalog = entity_table(spec, spec.entities["item"].table)
    expected = build_training_set(spec, FEED_MODEL, events, plan, paths, catalog)
    return spec, events, plan, paths, catalog, expected


def _engine(tmp_path: Path, shards: int) -> LocalEngine:
    execution = ExecutionSpec(shards=shards, storage=str(tmp_path / "shared"))
    return LocalEngine(resolve_execution(execution, tmp_path, environ={}))


def _assert_same_set(got: TrainingSet, expected: TrainingSet) -> None:
    pd.testing.assert_frame_equal(got.frame, expected.frame, check_exact=True)
    assert got.feature_columns == expected.feature_columns
    assert (got.dropped_immature, got.dropped_gap) == (
        expected.dropped_immature,
        expected.dropped_gap,
    )


def test_world_exercises_every_join_view(world) -> None:
    """Guard the data: both entities' views, nulls from no history, a prior-positive flag."""
    spec, events, _, _, expected = world
    frame = expected.frame
    assert len(frame) > 3_000 and frame.is_fraud.sum() > 10
    assert {"card_velocity__events_count_1d", "merchant_risk__events_count_7d"} <= set(
        frame.columns
    )
    assert {"card_velocity_attributes__home_country", "merchant_risk_attributes__mcc"} <= set(frame)
    assert frame["card_velocity__amount_mean_30d"].isna().any()  # a card's first transaction
    assert frame["prior_positive_is_fraud"].any()
    assert expected.dropped_immature > 0 and events.card_id.nunique() > 100


def test_fraud_training_set_in_four_local_shards_equals_one_pass(world, tmp_path) -> None:
    spec, events, plan, paths, expected = world
    got = build_training_set(spec, MODEL, events, plan, paths, engine=_engine(tmp_path, 4))
    _assert_same_set(got, expected)
    assert got.shards == 4
    # label rows by card (4 shards), the join by card and by merchant (4 shards each)
    assert len(got.shard_results) == 12 and {r.node for r in got.shard_results} == {"local"}
    assert sum(r.rows for r in got.shard_results[:4]) == len(expected.frame) + expected.dropped_gap
    assert not list((tmp_path / "shared").rglob("*.parquet")), "shard files are removed"


def _log_files(events: pd.DataFrame, time: str, folder: Path, days: int) -> EventFiles:
    """``events`` as ``days`` Parquet files read end to end, as the asset finds the log."""
    folder.mkdir()
    files = []
    for n, part in enumerate(np.array_split(np.arange(len(events)), days)):
        files.append(UPath(folder / f"day-{n}.parquet"))
        events.iloc[part].to_parquet(files[-1], index=False)
    return EventFiles(tuple(files), tuple(events.columns), len(events), events[time].max())


def test_label_rows_in_shards_keep_the_log_order(world, tmp_path) -> None:
    """Streamed from several files into 3 shards of cards, the label rows come back in the
    log's order, typed as the one-pass frame, with the same rows left out."""
    spec, events, *_ = world
    shuffled = events.sample(frac=1.0, random_state=3).reset_index(drop=True)
    expected = label_rows(spec, MODEL, shuffled)
    sharding = plan_sharding(_engine(tmp_path, 3), len(events), "fraud/label_rows")
    log = _log_files(shuffled, spec.events.timestamp, tmp_path / "log", 5)
    got = sharded_label_rows(spec, MODEL, log, sharding, tmp_path / "work")
    frame = pd.concat(list(got.labels.batches(997)))
    pd.testing.assert_frame_equal(frame, expected.frame, check_exact=True)
    assert got.dropped_immature == expected.dropped_immature
    assert len(got.shard_results) == 3 and got.negatives == 0


def test_one_local_shard_is_the_one_pass_path(world, tmp_path) -> None:
    spec, events, plan, paths, expected = world
    engine = LocalEngine(resolve_execution(ExecutionSpec(), tmp_path, environ={}))
    assert plan_sharding(engine, len(events), "t") is None
    got = build_training_set(spec, MODEL, events, plan, paths, engine=engine)
    _assert_same_set(got, expected)
    assert got.shard_results == () and not (tmp_path / "shards").exists()


def test_feed_negatives_in_four_local_shards_equal_one_pass(feed_world, tmp_path) -> None:
    spec, events, plan, paths, catalog, expected = feed_world
    frame = expected.frame
    assert expected.negatives > 3 * frame["clicked"].sum() > 1_000, "the world samples negatives"
    assert 0.9 * expected.negatives < frame["sampled_negative"].sum() <= expected.negatives
    engine = _engine(tmp_path, 4)
    got = build_training_set(spec, FEED_MODEL, events, plan, paths, catalog, engine)
    _assert_same_set(got, expected)
    assert got.negatives == expected.negatives
    # label rows, negatives, the join by user and by item: 4 shards each
    assert len(got.shard_results) == 16
    drawn = got.shard_results[4:8]
    assert sum(r.rows for r in drawn) == expected.negatives and all(r.rows for r in drawn)
    assert not list((tmp_path / "shared").rglob("*.parquet")), "shard files are removed"


def test_feed_negatives_without_a_catalog_in_shards_equal_one_pass(feed_world, tmp_path) -> None:
    """Without the item table the catalog is the items the log shows, in first-seen order,
    gathered as the files stream by: the draws are still the one-pass draws."""
    spec, events, plan, paths, _, _ = feed_world
    expected = build_training_set(spec, FEED_MODEL, events, plan, paths)
    assert expected.negatives > 1_000
    got = build_training_set(spec, FEED_MODEL, events, plan, paths, engine=_engine(tmp_path, 3))
    _assert_same_set(got, expected)
    assert got.negatives == expected.negatives


def test_feed_negatives_on_two_ray_nodes_equal_one_pass(cluster, feed_world, tmp_path) -> None:
    spec, events, plan, paths, catalog, expected = feed_world
    execution = resolve_execution(
        ExecutionSpec(shards=4, storage=str(tmp_path / "shared")),
        tmp_path,
        environ={"RAY_ADDRESS": cluster.address},
    )
    with open_engine(execution, SHARD_MODULES) as engine:
        got = build_training_set(spec, FEED_MODEL, events, plan, paths, catalog, engine)
    _assert_same_set(got, expected)
    nodes = {n.node_id for n in [cluster.head_node, *cluster.worker_nodes]}
    assert {r.node for r in got.shard_results[4:8]} == nodes, "negatives drawn on both nodes"


@pytest.fixture(scope="module")
def materialized(world, tmp_path_factory):
    """The world materialized by Dagster in one instance: raw tables, features, split plan and
    the training set, the last with the default engine (no ``execution``, no ``RAY_ADDRESS``)."""
    spec = world[0]
    home = tmp_path_factory.mktemp("fraud_home")
    instance = dg.DagsterInstance.ephemeral()
    names = ["raw_events", *(f"raw_{t}" for t in spec.entity_tables())]
    names += [t.name for t in feature_tables(spec)] + ["split_plan"]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        for name in names:
            assert _run(spec, home, select=name, instance=instance).success, name
        local = _materialize(spec, home, instance)
        assert local["execution"] == "local, 1 shard"
    return spec, home, instance, _training_set(home)


def _materialize(spec: UseCaseSpec, home: Path, instance: dg.DagsterInstance) -> dict:
    result = _run(spec, home, select=f"{MODEL}_training_set", instance=instance)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    (check,) = result.get_asset_check_evaluations()
    assert check.passed, check.metadata
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _training_set(home: Path) -> pd.DataFrame:
    key = layout.training_set_key("fraud", MODEL)
    return pd.read_parquet(home / "tables" / Path(*key).with_suffix(".parquet"))


def test_asset_reads_the_label_columns_only_and_equals_the_whole_log(materialized, tmp_path):
    """The asset reads the event files by column (not ``raw_events`` whole through the IO
    manager): its set is the one the whole log gives, through the same functions."""
    spec, home, _, got = materialized
    places = layout.HomeLayout(home)
    files = log_files(spec, places)
    everything = log_columns(files)
    read = label_event_columns(spec, MODEL, everything)
    assert {"mcc", "channel", "hour"}.isdisjoint(read), read  # never loaded
    assert {"card_id", "merchant_id", "event_time", "is_fraud", "label_time"} <= set(read)
    paths = {
        t.name: str(places.table_file(layout.feature_table_key(spec.name, t.name)))
        for t in feature_tables(spec)
    }
    plan = pd.read_parquet(places.table_file(layout.split_plan_key(spec.name)))
    whole = build_training_set(spec, MODEL, read_events(files, everything), plan, paths).frame
    whole.to_parquet(tmp_path / "whole.parquet")  # as the IO manager writes and reads it
    pd.testing.assert_frame_equal(
        got, pd.read_parquet(tmp_path / "whole.parquet"), check_exact=True
    )


def test_asset_in_four_local_shards_equals_the_default_run(materialized, monkeypatch) -> None:
    spec, home, instance, expected = materialized
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    sharded = spec.model_copy(update={"execution": ExecutionSpec(shards=4)})
    metadata = _materialize(sharded, home, instance)
    assert metadata["execution"] == "local, 4 shards on 1 node(s)"
    pd.testing.assert_frame_equal(_training_set(home), expected, check_exact=True)


def test_asset_on_two_ray_nodes_equals_the_default_run(cluster, materialized, monkeypatch) -> None:
    spec, home, instance, expected = materialized
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    on_ray = spec.model_copy(update={"execution": ExecutionSpec(shards=4)})
    metadata = _materialize(on_ray, home, instance)
    assert metadata["execution"] == "ray, 4 shards on 2 node(s)"
    nodes = {n.node_id for n in [cluster.head_node, *cluster.worker_nodes]}
    assert set(metadata["shard_nodes"]) == nodes, "tasks ran on both nodes"
    assert metadata["shard_tasks"] == 12
    pd.testing.assert_frame_equal(_training_set(home), expected, check_exact=True)
    assert not list((home / "shards").rglob("*.parquet")), "shard files are cleaned up"
