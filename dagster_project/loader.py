"""Turn ``configs/*.yaml`` into Dagster Definitions: one asset group per use case.

Why plain pydantic and asset factories rather than ``dg.Component``: the schema must be importable
without Dagster (a BentoML service reads its ``serving`` section), it lives beside the YAML in
``configs/`` rather than in a ``defs/`` tree, and one YAML file drives many stages' assets. The
factories give the same result Components would — YAML in, Definitions out, unknown keys rejected —
while keeping that one-way import rule. Adding a YAML file adds a use case with no Python change.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

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
from assets.raw.source_checks import file_source_problems
from assets.serving.bento_assets import bento_asset
from assets.serving.bundle_assets import serving_bundle_asset
from assets.serving.triton_assets import triton_repository_assets
from assets.split.split_plan_assets import split_plan_asset
from assets.training.training_set_assets import training_set_assets
from configs import CONFIG_DIR
from configs.schema import UseCaseSpec, load_specs
from dagster_project.schedules import retrain_job, retrain_schedule
from dagster_project.sensors import drift_sensor, volume_sensor
from resources.feature_store import FeatureStoreResource
from resources.home import HomeResource, playbook_home
from resources.mlflow_resource import MLflowResource
from resources.parquet_io import ParquetIOManager
from runtime.layout import HomeLayout

CONFIGS_ENV = "PLAYBOOK_CONFIGS"
REDIS_ENV = "PLAYBOOK_REDIS"  # host:port of the Redis online store, for use cases that pick it


def config_dir() -> Path:
    """The folder of use-case YAML files: ``PLAYBOOK_CONFIGS`` or the shipped ``configs/``."""
    return Path(os.environ.get(CONFIGS_ENV, CONFIG_DIR))


def config_paths(paths: Iterable[str | Path] | None = None) -> list[Path]:
    """YAML files named directly or found in folders (default: the configs folder)."""
    found: list[Path] = []
    for path in (Path(p) for p in (paths or [config_dir()])):
        found.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    return found


def load_use_cases(paths: Iterable[str | Path] | None = None) -> list[UseCaseSpec]:
    """Validate every config, file-system checks included; all or nothing (raises SpecError)."""
    return load_specs(config_paths(paths), extra_checks=[file_source_problems])


def use_case_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    """Every asset of one use case, in dependency order."""
    store = feature_store_asset(spec)
    return [
        *raw_assets(spec),
        split_plan_asset(spec),
        *feature_assets(spec),
        *([store] if store is not None else []),
        *training_set_assets(spec),
        *model_assets(spec),
        *index_assets(spec),
        *([funnel] if (funnel := funnel_asset(spec)) is not None else []),
        *([bundle] if (bundle := serving_bundle_asset(spec)) is not None else []),
        *([bento] if (bento := bento_asset(spec)) is not None else []),
        *triton_repository_assets(spec),
        *experiment_assets(spec),
        *([drift] if (drift := drift_report_asset(spec)) is not None else []),
        *performance_assets(spec),
    ]


def resources(home: UPath) -> dict[str, object]:
    places = HomeLayout(home)
    return {
        "io_manager": ParquetIOManager(base_path=str(places.tables())),
        "home": HomeResource(path=str(home)),
        "mlflow": MLflowResource(home=str(home)),
        "feature_store": FeatureStoreResource(
            root=str(places.feast()),
            redis_connection=os.environ.get(REDIS_ENV, "127.0.0.1:6379"),
        ),
    }


def build_definitions(
    specs: Sequence[UseCaseSpec] | None = None, home: str | os.PathLike[str] | None = None
) -> dg.Definitions:
    """Definitions for the given specs (default: every config) with storage under ``home``."""
    specs = load_use_cases() if specs is None else specs
    assets = [asset for spec in specs for asset in use_case_assets(spec)]
    jobs = {spec.name: retrain_job(spec) for spec in specs}
    schedules = [s for spec in specs if (s := retrain_schedule(spec, jobs[spec.name])) is not None]
    sensors = [drift_sensor(spec, jobs[spec.name]) for spec in specs]
    sensors += [s for spec in specs if (s := volume_sensor(spec, jobs[spec.name])) is not None]
    return dg.Definitions(
        assets=assets,
        jobs=list(jobs.values()),
        schedules=schedules,
        sensors=sensors,
        resources=resources(playbook_home(home)),
    )
