"""The generated Feast repo under Feast's own CLI: ``feast plan`` finds nothing to change.

A repo folder with only ``feature_store.yaml`` and a registry reads to ``feast plan`` as an empty
repo (every entity, view and service "Deleted"), and ``feast apply`` would wipe the registry. The
feature store therefore writes the definitions it applies as ``<project>_repo.py``
(:mod:`resources.feast_repo_files`). These tests build the shared repos of
:mod:`tests.integration.feature_store_cases` on real Feast, materialize them, and then run what a
user runs in the folder: ``feast plan`` and ``feast apply`` as subprocesses (their output must
report no change, the registry's objects stay byte for byte the same on SQLite, and the online
reads and materialization intervals as before), and Feast's own ``parse_repo`` +
``FeatureStore.plan`` in process.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
from feast.data_format import ParquetFormat
from feast.diff.property_diff import TransitionType
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.repo_operations import parse_repo
from feast.types import Float64, Int64
from feast.value_type import ValueType

from resources.feast_definitions import feast_objects
from resources.feast_render import render_definitions
from resources.feast_repo_files import (
    check_round_trip,
    load_definitions,
    plan_spec,
    write_text_atomic,
)
from resources.feature_store import FeatureStoreResource
from tests.integration.feature_store_cases import (
    END,
    REQUEST,
    assert_latest_values,
    assert_same_as_sdk,
    full_repo,
    users_only_repo,
)

FEAST = Path(sys.executable).with_name("feast")
# What `feast plan` (and the plan half of `feast apply`) prints when nothing would change.
NO_CHANGES = ["No changes to registry", "No changes to infrastructure"]
CHANGES = ("Created ", "Deleted ", "Updated ")


def feast_cli(repo: Path, *args: str) -> list[str]:
    """Feast's CLI run on ``repo`` the way a user runs it; its non-empty stdout lines."""
    result = subprocess.run(
        [str(FEAST), "-c", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.rstrip() for line in result.stdout.splitlines() if line.strip()]


def registry_objects(repo: Path) -> RegistryProto:
    """The registry file's contents less what every commit restamps (its version and time)."""
    registry = RegistryProto()
    registry.ParseFromString((repo / "registry.db").read_bytes())
    registry.ClearField("version_id")
    registry.ClearField("last_updated")
    return registry


def registered_specs(repo: Path) -> dict[tuple[str, str], object]:
    """What ``feast plan`` compares of each registered object (:func:`plan_spec`: sources'
    times left out), and each view's materialization intervals, by (kind, name)."""
    store = FeatureStore(repo_path=str(repo))
    views = store.list_feature_views()
    objects = [
        *store.list_entities(),
        *store.list_data_sources(),
        *views,
        *store.list_feature_services(),
    ]
    specs: dict[tuple[str, str], object] = {
        (type(o).__name__, o.name): plan_spec(o).SerializeToString(deterministic=True)
        for o in objects
    }
    for view in views:
        specs[("intervals", view.name)] = [(i[0], i[1]) for i in view.materialization_intervals]
    return specs


@pytest.fixture
def forget_repo_module() -> Iterator[None]:
    """Drops the repo module :func:`plan_in_process` imported, so no other test sees it."""
    yield
    sys.modules.pop("shop_repo", None)


def plan_in_process(repo: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    """Feast's own ``parse_repo`` and ``FeatureStore.plan``, run in this process with the cwd
    and ``sys.path`` the CLI gives them: the changes to the registry and to the infrastructure
    they find, as (transition, kind, name) triples."""
    sys.modules.pop("shop_repo", None)
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo))
    contents = parse_repo(repo)
    registry_diff, infra_diff, _ = FeatureStore(repo_path=str(repo)).plan(contents)
    registry = [
        (d.transition_type, d.feast_object_type.value, d.name)
        for d in registry_diff.feast_object_diffs
        if d.transition_type != TransitionType.UNCHANGED
    ]
    infra = [
        (d.transition_type, d.infra_object_type, d.name)
        for d in infra_diff.infra_object_diffs
        if d.transition_type != TransitionType.UNCHANGED
    ]
    return registry, infra


def test_feast_plan_and_apply_in_the_repo_change_nothing(
    tmp_path: Path, sqlite_store: FeatureStoreResource
) -> None:
    repo = full_repo(tmp_path)
    summary = sqlite_store.apply(repo)
    sqlite_store.materialize(repo, end=END)
    folder = sqlite_store.repo_path("shop")
    assert summary["definitions"] == str(folder / "shop_repo.py")

    assert feast_cli(folder, "plan") == NO_CHANGES
    before = registry_objects(folder)
    applied = feast_cli(folder, "apply")
    assert applied == ["Applying changes for project shop", *NO_CHANGES]
    assert registry_objects(folder) == before  # materialization intervals included

    listed = feast_cli(folder, "feature-views", "list")
    assert [line.split()[0] for line in listed[1:]] == ["user_stats", "user_item"]
    # the same answers from a resource that opens the registry afresh, and from the old one
    fresh = FeatureStoreResource(root=sqlite_store.root)
    assert_latest_values(assert_same_as_sdk(fresh, repo, "ranking", REQUEST))
    assert_latest_values(assert_same_as_sdk(sqlite_store, repo, "ranking", REQUEST))
    # the views still know how far they were loaded: nothing is materialized twice
    assert fresh.materialize(repo, end=END)["rows_written_total"] == 0


@pytest.mark.slow  # CI keeps the SQLite repo's plan and apply, and Redis as a config choice
def test_redis_repo_plans_to_no_change_and_applies_without_changing_an_object(
    tmp_path: Path, redis_connection: str
) -> None:
    """With Redis, ``feast apply`` takes Feast's older path, ``FeatureStore.apply`` of every
    object, which restamps each view's source: every object stays the same but for those times
    (a later ``feast plan`` lists the views as updated, times only, as in any Feast Redis repo,
    until the asset applies again)."""
    resource = FeatureStoreResource(
        root=str(tmp_path / "feast"), online_store="redis", redis_connection=redis_connection
    )
    repo = full_repo(tmp_path)
    resource.apply(repo)
    resource.materialize(repo, end=END)
    folder = resource.repo_path("shop")
    assert feast_cli(folder, "plan") == NO_CHANGES
    before = registered_specs(folder)
    applied = feast_cli(folder, "apply")
    assert not [line for line in applied if line.startswith(CHANGES)], applied
    assert registered_specs(folder) == before
    fresh = FeatureStoreResource(
        root=resource.root, online_store="redis", redis_connection=redis_connection
    )
    assert_latest_values(assert_same_as_sdk(fresh, repo, "ranking", REQUEST))
    assert fresh.materialize(repo, end=END)["rows_written_total"] == 0
    resource.apply(repo)  # the asset's next run: the file follows the registry's new times
    assert feast_cli(folder, "plan") == NO_CHANGES


@pytest.mark.usefixtures("forget_repo_module")
def test_the_file_follows_the_yaml_and_parses_to_an_empty_plan(
    tmp_path: Path, sqlite_store: FeatureStoreResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = full_repo(tmp_path)
    sqlite_store.apply(repo)
    sqlite_store.materialize(repo, end=END)
    folder = sqlite_store.repo_path("shop")
    target = folder / "shop_repo.py"
    text = target.read_text(encoding="utf-8")
    assert text.startswith('"""Feast definitions of project \'shop\'. Generated by Playbook')
    assert "do not edit" in text and "edit the YAML" in text
    assert plan_in_process(folder, monkeypatch) == ([], [])

    # the same definitions again: the same bytes, and the file is not rewritten
    mtime = target.stat().st_mtime_ns
    sqlite_store.apply(repo)
    assert target.read_text(encoding="utf-8") == text
    assert target.stat().st_mtime_ns == mtime
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]

    # a view leaves the YAML: it leaves the registry and the file, and the plan stays empty
    sqlite_store.apply(users_only_repo(tmp_path))
    text = target.read_text(encoding="utf-8")
    assert "user_item" not in text and 'name="user_stats"' in text
    assert plan_in_process(folder, monkeypatch) == ([], [])


def test_the_file_holds_the_objects_the_resource_applies(tmp_path: Path) -> None:
    """Names, TTLs, schemas, tags, source paths and timestamp fields, and the YAML's order."""
    repo = dataclasses.replace(full_repo(tmp_path), origin="/configs/shop.yaml")
    objects = feast_objects(repo)
    text = render_definitions(objects, "shop", origin=repo.origin)
    assert "`/configs/shop.yaml`" in text.split('"""')[1]
    check_round_trip(text, objects)
    loaded = {(type(o).__name__, o.name): o for o in load_definitions(text)}
    view = loaded[("FeatureView", "user_stats")]
    assert view.ttl == timedelta(days=30) and view.tags == {"team": "recsys"}
    assert view.batch_source.path == str(tmp_path / "user_stats.parquet")
    assert view.batch_source.timestamp_field == "event_timestamp"
    assert view.batch_source.created_timestamp_column == "created_timestamp"
    service = loaded[("FeatureService", "ranking")]
    assert [p.name for p in service.feature_view_projections] == ["user_stats", "user_item"]
    order = [text.index(f'name="{name}"') for name in ("user", "item", "user_stats_source")]
    assert order == sorted(order)
    assert render_definitions(feast_objects(repo), "shop", origin=repo.origin) == text


def test_round_trip_names_what_the_file_would_get_wrong(tmp_path: Path) -> None:
    entity = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(
        name="s",
        path=str(tmp_path / "s.parquet"),
        timestamp_field="ts",
        file_format=ParquetFormat(),  # a field the renderer does not write
    )
    view = FeatureView(
        name="v", entities=[entity], schema=[Field(name="x", dtype=Float64)], source=source
    )
    objects = [entity, source, view]
    with pytest.raises(ValueError, match=r"source 's' differs in file_options"):
        check_round_trip(render_definitions(objects, "p"), objects)


def test_awkward_names_and_values_render_to_valid_python() -> None:
    """Names that are keywords, start with a digit, hold a dash or collide once made
    identifiers; quotes, tabs, newlines and non-ASCII text; a TTL of every unit, and none."""
    entity = Entity(name="class", join_keys=["id"], value_type=ValueType.INT64)
    source = FileSource(name="a-b_source", path='/x/ü "q".parquet', timestamp_field="ts")
    schema = [Field(name="id", dtype=Int64), Field(name="n", dtype=Int64)]
    dashed = FeatureView(
        name="a-b",
        entities=[entity],
        ttl=timedelta(days=1, hours=2, seconds=3, microseconds=4),
        schema=schema,
        source=source,
        tags={"quote": 'say "hi"', "tab": "a\tb"},
    )
    underscored = FeatureView(
        name="a_b", entities=[entity], ttl=timedelta(0), schema=schema[1:], source=source
    )
    service = FeatureService(name="1st", features=[dashed, underscored], description="línea\nnueva")
    objects = [entity, source, dashed, underscored, service]
    text = render_definitions(objects, "p")
    check_round_trip(text, objects)
    assert "class_entity = Entity(" in text and "_1st_service = FeatureService(" in text
    assert "a_b_view = FeatureView(" in text and "a_b_view_2 = FeatureView(" in text
    assert "timedelta(days=1, hours=2, seconds=3, microseconds=4)" in text


def test_atomic_write_replaces_and_reports_no_change(tmp_path: Path) -> None:
    target = tmp_path / "x_repo.py"
    assert write_text_atomic(target, "a = 1\n")
    assert not write_text_atomic(target, "a = 1\n")
    assert write_text_atomic(target, "a = 2\n") and target.read_text() == "a = 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x_repo.py"]
    assert target.stat().st_mode & 0o777 == 0o644
