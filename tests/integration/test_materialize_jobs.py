"""``playbook materialize`` runs are runs of the ``playbook`` code location's stage jobs.

What the UI needs to show a CLI run under its job and re-execute it: the run names a job the
location defines (``movies__raw``, not ``__ephemeral_asset_job__``), the run's origin is that
location (the re-execution mutation starts from it), and its snapshot is the job the location
serves. Checked here on a real persistent instance (a home's ``dagster_home``), with the
location loaded from ``workspace.yaml`` the way ``dagster dev`` loads it, and re-executed both
from Python (``execute_job`` with ``ReexecutionOptions``) and through the GraphQL mutation the
UI's "Re-execute all" button sends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget, get_origins_from_toml
from dagster_graphql.client.query import LAUNCH_PIPELINE_REEXECUTION_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql
from upath import UPath

from configs import CONFIGS_ENV
from configs.schema import UseCaseSpec
from dagster_project.definitions import defs
from dagster_project.location_runs import LOCATION_NAME
from dagster_project.materialize import RANGE_END, RANGE_START, materialize_use_case, reexecute
from dagster_project.use_case_files import load_use_cases
from resources.home import dagster_home
from runtime.layout import HOME_ENV
from tests.conftest import REPO

pytestmark = pytest.mark.integration

# runs launched from a workspace start at once, without the daemon's queue (``dagster dev``
# runs that daemon; this test does not)
DIRECT_LAUNCH = (
    "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
)
RUN_TIMEOUT_S = 300  # a run worker imports the whole project; CI has two shared cores


@pytest.fixture
def movies(
    ratings_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[UseCaseSpec, Path]:
    """The MovieLens-shaped use case as the only config of the code location, and its home."""
    home = tmp_path / "home"
    monkeypatch.setenv(CONFIGS_ENV, str(ratings_config.parent))
    monkeypatch.setenv(HOME_ENV, str(home))
    (spec,) = load_use_cases([ratings_config])
    return spec, home


@pytest.fixture
def instance(movies: tuple[UseCaseSpec, Path]) -> Iterator[dg.DagsterInstance]:
    """The home's persistent instance, as ``playbook materialize`` opens it."""
    folder = dagster_home(UPath(movies[1]))
    with (folder / "dagster.yaml").open("a") as config:
        config.write(DIRECT_LAUNCH)
    with dg.DagsterInstance.from_config(str(folder)) as opened:
        yield opened


def _by_asset(steps) -> dict[str, str]:
    return {step.asset: step.run_id for step in steps}


def test_cli_runs_are_runs_of_the_locations_stage_jobs_and_reexecute(
    movies: tuple[UseCaseSpec, Path], instance: dg.DagsterInstance
) -> None:
    spec, home = movies
    steps = materialize_use_case(spec, instance, str(home))
    assert [(s.asset, s.status, s.job) for s in steps] == [
        ("movies/raw_events", "ok", "movies__raw"),
        ("movies/split_plan", "ok", "movies__split"),
        ("movies/drift_report", "ok", "movies__monitoring"),
    ]
    assert steps[0].check_severity == {"schema": "blocking"}
    location = defs()  # what the ``playbook`` code location loads
    for step in steps:
        run = instance.get_run_by_id(step.run_id)
        assert run is not None and run.job_name == step.job != "__ephemeral_asset_job__"
        assert run.asset_selection == {dg.AssetKey.from_user_string(step.asset)}
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == LOCATION_NAME
        assert run.tags["playbook/stage"] == step.job.split("__")[1]
        job = location.resolve_job_def(run.job_name)
        # the run is a subset of the very job the location serves: the UI matches it exactly
        lineage = instance.get_job_snapshot(run.job_snapshot_id).lineage_snapshot
        assert lineage.parent_snapshot_id == job.get_job_snapshot_id()

    runs = _by_asset(steps)
    raw = instance.get_run_by_id(runs["movies/raw_events"])
    again = reexecute(raw.run_id, instance)
    assert again.success
    child = instance.get_run_by_id(again.run_id)
    assert child.job_name == "movies__raw" and child.parent_run_id == raw.run_id
    assert child.asset_selection == raw.asset_selection
    # the re-execution covers the same days in one run, as the CLI's run did
    assert {k: child.tags[k] for k in (RANGE_START, RANGE_END)} == {
        RANGE_START: "2024-03-01",
        RANGE_END: "2024-03-05",
    }
    partitions = {e.partition for e in again.get_asset_materialization_events()}
    assert len(partitions) == 5
    split = reexecute(runs["movies/split_plan"], instance)
    assert split.success and {c.check_name for c in split.get_asset_check_evaluations()} == {
        "splits_not_empty"
    }


def test_a_failed_asset_skips_what_depends_on_it(
    movies: tuple[UseCaseSpec, Path], instance: dg.DagsterInstance, ratings_config: Path
) -> None:
    spec, home = movies
    (ratings_config.parent / "ratings.csv").unlink()  # the spec was checked; the file is gone
    steps = materialize_use_case(spec, instance, str(home))
    assert [(s.asset, s.status) for s in steps] == [
        ("movies/raw_events", "failed"),
        ("movies/split_plan", "skipped"),
        ("movies/drift_report", "skipped"),
    ]
    assert all(s.stops_the_run for s in steps)
    assert steps[0].run_id is not None and steps[1].run_id is None
    assert instance.get_run_by_id(steps[0].run_id).job_name == "movies__raw"


def _wait_for(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish in {RUN_TIMEOUT_S} s")


def test_the_ui_reexecutes_a_cli_run(
    movies: tuple[UseCaseSpec, Path], instance: dg.DagsterInstance
) -> None:
    spec, home = movies
    steps = materialize_use_case(spec, instance, str(home), select=["raw_events", "split_plan"])
    parent = _by_asset(steps)["movies/split_plan"]
    target = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])
    with WorkspaceProcessContext(instance, target) as workspace:
        context = workspace.create_request_context()
        entries = context.get_code_location_entries()
        assert list(entries) == [LOCATION_NAME], entries
        assert all(entry.load_error is None for entry in entries.values())
        repository = context.get_code_location(LOCATION_NAME).get_repository("__repository__")
        assert {step.job for step in steps} <= {job.name for job in repository.get_all_jobs()}
        # what the run page's "Re-execute all" sends
        result = execute_dagster_graphql(
            context,
            LAUNCH_PIPELINE_REEXECUTION_MUTATION,
            {"reexecutionParams": {"parentRunId": parent, "strategy": "ALL_STEPS"}},
        )
        launched = result.data["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        assert launched["run"]["pipeline"]["name"] == "movies__split"
        assert launched["run"]["parentRunId"] == parent
        run = _wait_for(instance, launched["run"]["runId"])
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.asset_selection == {dg.AssetKey(["movies", "split_plan"])}


def test_the_code_location_is_called_playbook() -> None:
    """Both ways Dagster finds the location name it the same; ``dagster definitions validate``
    printing that name is checked in ``test_cli.py``, which runs the command once."""
    (from_pyproject,) = get_origins_from_toml(str(REPO / "pyproject.toml"))
    (from_workspace,) = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")]).create_origins()
    assert from_pyproject.location_name == from_workspace.location_name == LOCATION_NAME
