"""One asset job per use case and stage (``fraud__models``), the jobs ``playbook materialize`` runs.

Why named jobs rather than ``dg.materialize``: a run of Dagster's implicit
``__ephemeral_asset_job__`` names a job that no code location defines, so the UI shows it without
a target and cannot re-execute it. A run of ``fraud__models`` names a job the ``playbook`` code
location defines under the same name (same assets, same resources, hence the same snapshot when
the home is the same), so the UI finds it, shows it under the job, and re-executes it.

Why per stage and not one job per use case: the runs list then reads as the pipeline does
(``fraud__raw``, ``fraud__features``, ``fraud__models``...), a stage can be launched on its own
from the UI, and only the raw stage carries the daily partitions (a whole-use-case job would ask
for a partition even to retrain a model). The CLI still runs one asset per run, as a subset of
its stage's job (the run's asset selection), so a failure stops only what depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from configs.schema.usecase import UseCaseSpec
from dagster_project.schedules import AssetJob
from runtime.layout import USE_CASE_RUN_TAG, stage_job_name  # noqa: F401 (re-exported)

STAGE_TAG = "stage"  # the asset tag every factory sets (``assets.metadata.asset_identity``)
STAGE_RUN_TAG = "playbook/stage"


def asset_stage(asset: dg.AssetsDefinition) -> str:
    """The ``stage`` tag of an asset (every key of one definition shares it)."""
    key = next(iter(asset.keys))
    return asset.tags_by_key.get(key, {}).get(STAGE_TAG, "other")


def stages(assets: Sequence[dg.AssetsDefinition]) -> list[str]:
    """The stages of ``assets`` in the order they first appear (the dependency order)."""
    return list(dict.fromkeys(asset_stage(a) for a in assets))


def stage_jobs(spec: UseCaseSpec, assets: Sequence[dg.AssetsDefinition]) -> list[AssetJob]:
    """One asset job per stage of the use case, selecting its assets by key.

    Keys rather than a tag selection: the job then holds exactly the assets the CLI iterates
    over, whatever tags a user adds to the YAML.
    """
    jobs = []
    for stage in stages(assets):
        keys = [key for a in assets if asset_stage(a) == stage for key in a.keys]
        jobs.append(
            dg.define_asset_job(
                stage_job_name(spec.name, stage),
                selection=dg.AssetSelection.assets(*keys),
                description=(
                    f"The {stage} stage of {spec.name}: {', '.join('/'.join(k.path[1:]) for k in keys)}."
                    " `playbook materialize` runs one asset of it per run."
                ),
                tags={USE_CASE_RUN_TAG: spec.name, STAGE_RUN_TAG: stage},
            )
        )
    return jobs
