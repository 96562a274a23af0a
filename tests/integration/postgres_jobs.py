"""A reconstructable job for the Postgres-instance tests: small fraud, raw to features, multiprocess.

The multiprocess executor runs every step in a fresh process, which must rebuild the job from
something importable: :func:`fraud_stages_job` is that module-level factory, named to
``dg.build_reconstructable_job`` with plain arguments (the home folder, the number of days) so
every step process builds the same job. The executor uses ``forkserver`` with this module
(and Great Expectations) preloaded, so the imports are paid once per run rather than once per
step: on two cores, about 30 s once instead of 30 s for each of the eight steps.
"""

from __future__ import annotations

import dagster as dg
from upath import UPath

from configs import CONFIG_DIR
from configs.schema import UseCaseSpec
from dagster_project.loader import load_use_cases, resources, use_case_assets
from dagster_project.materialize import RANGE_END, RANGE_START
from tests.integration.test_raw_assets import _small

JOB_NAME = "fraud_raw_to_features"
MAX_CONCURRENT = 2  # the CI machine's cores
# imported once in the forkserver: this module (the project) and what the quality checks import
# lazily (Great Expectations, ~10 s per process otherwise)
PRELOAD = [__name__, "great_expectations"]


def small_fraud(days: int) -> UseCaseSpec:
    """The shipped fraud use case over ``days`` days of a smaller world."""
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    return _small(spec, days=days)


def stage_keys(spec: UseCaseSpec) -> list[dg.AssetKey]:
    """The raw tables, the split plan and the feature tables (not the Feast repo, not beyond)."""
    return [
        key
        for asset in use_case_assets(spec)
        for key in asset.keys
        if key.path[1].startswith("raw_") or key.path[1] in ("split_plan", "features")
    ]


def partition_range_tags(spec: UseCaseSpec) -> dict[str, str]:
    """Tags that make one run cover every daily partition (as ``playbook materialize`` does)."""
    (partitions,) = {a.partitions_def for a in use_case_assets(spec) if a.partitions_def}
    keys = partitions.get_partition_keys()
    return {RANGE_START: keys[0], RANGE_END: keys[-1]}


def fraud_stages_job(home: str, days: int) -> dg.JobDefinition:
    """The job, rebuilt identically in the launching process and in every step process."""
    spec = small_fraud(days)
    executor = dg.multiprocess_executor.configured(
        {
            "max_concurrent": MAX_CONCURRENT,
            "start_method": {"forkserver": {"preload_modules": PRELOAD}},
        }
    )
    job = dg.define_asset_job(
        JOB_NAME, selection=dg.AssetSelection.assets(*stage_keys(spec)), executor_def=executor
    )
    defs = dg.Definitions(
        assets=use_case_assets(spec), jobs=[job], resources=resources(UPath(home))
    )
    return defs.resolve_job_def(JOB_NAME)
