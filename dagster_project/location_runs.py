"""Runs that belong to the ``playbook`` code location, executed in this process.

Why not ``JobDefinition.execute_in_process`` (or ``dg.materialize``): the run it records names
no code location, and the Dagster UI's "Re-execute" (GraphQL ``launchPipelineReexecution`` with
``reexecutionParams``) starts from the parent run's ``remote_job_origin``:
``dagster_graphql/implementation/execution/launch_execution.py`` does
``check.not_none(parent_run.remote_job_origin)`` and fails with ``CheckError: Expected non-None
value`` for every in-process run, even when a job of that name exists. It also runs an ephemeral
copy of the job (its executor swapped for an in-process one), whose snapshot matches nothing
the location serves, so the UI can only match the run by job name, with a warning.

So this module takes the same steps ``execute_in_process`` takes -- create the run, execute it
here -- with two differences: the run names the ``playbook`` location (``__repository__``, the
repository a ``Definitions`` becomes) as its origin, and it runs the location's own job, subset
to the asset, with the in-process executor picked by run config (which the default
``multi_or_in_process`` executor accepts). The UI then finds the run's job and snapshot in the
location and re-executes it like a run it launched itself.

The price is a handful of Dagster internals (``dagster._core``), kept here and nowhere else;
``tests/integration/test_materialize_jobs.py`` re-executes such a run through the GraphQL
mutation the UI sends, so a Dagster upgrade that moves them fails there, not in front of a user.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.repository_definition.valid_definitions import (
    SINGLETON_REPOSITORY_NAME,
)
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from resources.run_workers import worker_tags

# What workspace.yaml's ``location_name`` and pyproject's [tool.dagster] ``code_location_name``
# say (a test holds them together): the UI matches a run to its job by this name.
LOCATION_NAME = "playbook"
DEFINITIONS_MODULE = "dagster_project.definitions"
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def location_job_origin(job_name: str) -> RemoteJobOrigin:
    """The origin a run of ``job_name`` launched from the ``playbook`` location would carry.

    The UI and the re-execution mutation look only at the location and repository names; the
    loadable target (this interpreter, the definitions module) is what ``workspace.yaml``
    declares, for the UI's "code location" details.
    """
    code_location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=DEFINITIONS_MODULE,
            working_directory=os.getcwd(),
        ),
        location_name=LOCATION_NAME,
    )
    repository = RemoteRepositoryOrigin(code_location, SINGLETON_REPOSITORY_NAME)
    return RemoteJobOrigin(repository, job_name)


def execute_asset_in_location(
    job: dg.JobDefinition,
    asset_key: dg.AssetKey,
    instance: dg.DagsterInstance,
    run_config: Mapping[str, object],
    tags: Mapping[str, str],
) -> dg.JobExecutionResult:
    """One run of ``job`` (a job of the location's Definitions) materializing ``asset_key``
    and its checks, in this process; never raises for a failure inside the run.

    The run is tagged with this process (:func:`resources.run_workers.worker_tags`), so that
    should the process die mid-run, the next ``playbook`` command or the daemon marks the run
    failed rather than leaving it started for ever.
    """
    config = {**run_config, **IN_PROCESS}
    run_id = str(uuid.uuid4())  # Dagster's own run ids are uuid4 too
    # the whole stage job goes in: the instance subsets it and records it as the subset's
    # parent, whose snapshot is the one the location serves
    run = instance.create_run_for_job(
        job_def=job,
        run_id=run_id,
        run_config=config,
        tags={**job.run_tags, **tags, **worker_tags(run_id)},
        asset_selection=frozenset({asset_key}),
        remote_job_origin=location_job_origin(job.name),
    )
    return execute_run(InMemoryJob(job), run, instance, raise_on_error=False)
