"""Turn ``configs/*.yaml`` into Dagster Definitions: one asset group per use case.

Why plain pydantic and asset factories rather than ``dg.Component``: the schema must be importable
without Dagster (a BentoML service reads its ``serving`` section), it lives beside the YAML in
``configs/`` rather than in a ``defs/`` tree, and one YAML file drives many stages' assets. The
factories give the same result Components would — YAML in, Definitions out, unknown keys rejected —
while keeping that one-way import rule. Adding a YAML file adds a use case with no Python change.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import dagster as dg
from upath import UPath

from assets.experiments.experiment_analysis_assets import experiment_assets
from assets.features.feature_store_assets import feature_store_asset
from assets.features.feature_table_assets import feature_assets
from assets.funnel.funnel_evaluation_assets import funnel_asset
from assets.indexing.index_assets import index_assets
from assets.models.model_assets import model_assets
from assets.monitoring.drift_assets import drift_report_asset
from assets.monitoring.performance_assets import performance_assets
from assets.raw.raw_assets import raw_assets
from assets.serving.batch_predictions_assets import predictions_asset
from assets.serving.bento_assets import bento_asset
from assets.serving.bundle_assets import serving_bundle_asset
from assets.serving.slo_check_assets import slo_check_asset
from assets.serving.triton_assets import triton_repository_assets
from assets.split.split_plan_assets import split_plan_asset
from assets.training.training_set_assets import training_set_assets
from configs.schema import UseCaseSpec
from configs.schema.batch import is_batch
from dagster_project.jobs import stage_jobs
from dagster_project.schedules import batch_scoring_schedule, retrain_job, retrain_schedule
from dagster_project.sensors import drift_sensor, volume_sensor
from dagster_project.use_case_files import load_use_cases
from resources.feature_store import FeatureStoreResource
from resources.home import HomeResource, playbook_home
from resources.mlflow_resource import MLflowResource
from resources.parquet_io import ParquetIOManager
from runtime.feast_settings import REDIS_ENV
from runtime.layout import HomeLayout

# the Redis online store of use cases that pick it when $PLAYBOOK_REDIS (REDIS_ENV) is unset
LOCAL_REDIS = "127.0.0.1:6379"


def use_case_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    """Every asset of one use case, in dependency order.

    Batch serving (``serving.mode: batch``) scores on a schedule into the online store: it
    builds the ``predictions`` asset instead of an endpoint's bundle, Bento, SLO check and
    Triton repository, which would serve nothing.
    """
    store = feature_store_asset(spec)
    batch = is_batch(spec)
    slo = None if batch else slo_check_asset(spec)
    bundle = None if batch else serving_bundle_asset(spec, slo.key if slo is not None else None)
    return [
        *raw_assets(spec),
        split_plan_asset(spec),
        *feature_assets(spec),
        *([store] if store is not None else []),
        *training_set_assets(spec),
        *model_assets(spec),
        *index_assets(spec),
        # before the funnel evaluation: in `playbook materialize` order, it then reads the
        # champion the SLO check left
        *([slo] if slo is not None else []),
        *([funnel] if (funnel := funnel_asset(spec)) is not None else []),
        *([bundle] if bundle is not None else []),
        *([bento] if not batch and (bento := bento_asset(spec)) is not None else []),
        *([] if batch else triton_repository_assets(spec)),
        *([predictions] if (predictions := predictions_asset(spec)) is not None else []),
        *experiment_assets(spec),
        *([drift] if (drift := drift_report_asset(spec)) is not None else []),
        *performance_assets(spec),
    ]


def resources(home: UPath) -> dict[str, object]:
    """The resources every asset, sensor and job of a home uses."""
    places = HomeLayout(home)
    return {
        "io_manager": ParquetIOManager(base_path=str(places.tables())),
        "home": HomeResource(path=str(home)),
        "mlflow": MLflowResource(home=str(home)),
        "feature_store": FeatureStoreResource(
            root=str(places.feast()),
            # $PLAYBOOK_REDIS is read at run time, never put in the resource's config (the UI
            # shows that); without it, a Redis use case talks to a local passwordless Redis
            redis_connection=None if os.environ.get(REDIS_ENV) else LOCAL_REDIS,
        ),
    }


def use_case_definitions(
    built: Sequence[tuple[UseCaseSpec, Sequence[dg.AssetsDefinition]]],
    home: str | os.PathLike[str] | None = None,
) -> dg.Definitions:
    """Definitions for use cases whose assets are already built (``use_case_assets``).

    Per use case: its assets, one job per stage (what ``playbook materialize`` runs, so its
    runs can be re-executed from the UI), the ``<name>_retrain`` job and its three triggers
    (cron schedule, drift sensor, new-data sensor). ``materialize`` passes the assets it
    iterates over, so the jobs it resolves hold exactly those definitions.
    """
    assets = [asset for _, spec_assets in built for asset in spec_assets]
    jobs = [job for spec, spec_assets in built for job in stage_jobs(spec, spec_assets)]
    retrain = {spec.name: retrain_job(spec) for spec, _ in built}
    schedules = [
        s for spec, _ in built if (s := retrain_schedule(spec, retrain[spec.name])) is not None
    ]
    schedules += [s for spec, _ in built if (s := batch_scoring_schedule(spec, jobs)) is not None]
    sensors = [drift_sensor(spec, retrain[spec.name]) for spec, _ in built]
    sensors += [volume_sensor(spec, retrain[spec.name]) for spec, _ in built]
    return dg.Definitions(
        assets=assets,
        jobs=[*jobs, *retrain.values()],
        schedules=schedules,
        sensors=sensors,
        resources=resources(playbook_home(home)),
    )


def build_definitions(
    specs: Sequence[UseCaseSpec] | None = None, home: str | os.PathLike[str] | None = None
) -> dg.Definitions:
    """Definitions for the given specs (default: every config) with storage under ``home``."""
    specs = load_use_cases() if specs is None else specs
    return use_case_definitions([(spec, use_case_assets(spec)) for spec in specs], home)
