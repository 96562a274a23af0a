"""What ``playbook report`` shows: each model's latest evaluation, baseline, registry and gate.

Read from the two sources of truth without training anything: the Dagster instance under the
home (the latest materialization of each ``models/<m>`` asset: metrics beside the baseline's and
the gate's verdict) and the MLflow registry (every version and which holds ``champion`` and
``challenger``).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from configs.schema.usecase import UseCaseSpec
from resources.mlflow_resource import MLflowResource
from runtime import layout


@dataclass
class ModelReport:
    """One model's latest state: evaluation vs baseline, gate verdict, registry aliases."""

    model: str
    problem: str
    materialized: bool
    primary_metric: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)  # metric, model, baseline, delta
    gate: str | None = None
    gate_passed: bool | None = None
    version: str | None = None
    versions: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)


def _evaluation(metadata: dict) -> list[dict[str, Any]]:
    rows = []
    for name, value in metadata.items():
        if name.startswith("metric/"):
            rows.append({"metric": name.removeprefix("metric/"), "model": float(value.value)})
    table = metadata.get("evaluation")
    if table is not None:  # the markdown comparison table: | metric | model | baseline | ...
        baseline = {}
        for line in table.value.splitlines()[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) >= 4:
                baseline[cells[0]] = (float(cells[2]), float(cells[3]))
        for row in rows:
            if row["metric"] in baseline:
                row["baseline"], row["delta"] = baseline[row["metric"]]
    return rows


def _gate(instance: dg.DagsterInstance, key: dg.AssetKey) -> bool | None:
    record = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, "promotion_gate"), limit=1
    )
    if not record or record[0].event is None:
        return None
    return bool(record[0].event.dagster_event.event_specific_data.passed)


def _latest_model_event(
    instance: dg.DagsterInstance, use_case: str, model: str
) -> tuple[dg.AssetKey, dg.EventLogEntry | None]:
    """The model asset's key and latest materialization, under today's key or, for a home
    materialized before asset names were made distinct, the previous one."""
    for path in (layout.model_key(use_case, model), layout.previous_model_key(use_case, model)):
        key = dg.AssetKey(path)
        event = instance.get_latest_materialization_event(key)
        if event is not None:
            return key, event
    return dg.AssetKey(layout.model_key(use_case, model)), None


def model_reports(
    spec: UseCaseSpec, instance: dg.DagsterInstance, registry: MLflowResource
) -> list[ModelReport]:
    """The report of every model of ``spec``."""
    reports = []
    warnings.filterwarnings("ignore", module="mlflow")  # SQLAlchemy deprecations from its store
    client = registry.client()
    for model, stage in spec.model.items():
        key, event = _latest_model_event(instance, spec.name, model)
        report = ModelReport(model, stage.problem, event is not None)
        if event is not None and event.asset_materialization is not None:
            metadata = dict(event.asset_materialization.metadata)
            report.primary_metric = metadata["primary_metric"].value
            report.metrics = _evaluation(metadata)
            report.gate = metadata["gate"].value
            report.version = metadata["model_version"].value
            report.gate_passed = _gate(instance, key)
        name = layout.registered_model_name(spec.name, model)
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except Exception:  # noqa: BLE001 - no registered model yet
            versions = []
        report.versions = sorted((str(v.version) for v in versions), key=int)
        for alias in (layout.CHAMPION, layout.CHALLENGER):
            found = registry.version_by_alias(name, alias)
            if found is not None:
                report.aliases[alias] = found
        reports.append(report)
    return reports


def as_json(reports: list[ModelReport]) -> list[dict[str, Any]]:
    return [asdict(report) for report in reports]
