"""Sensors that request retraining: on drift in new raw-log partitions, and on new data volume.

Both watch the materialized partitions of ``<use case>/raw_events`` in the Dagster instance and
keep the partitions they have already judged in their cursor, so the same data never triggers
twice (the run key repeats that guarantee on the instance side). Each run they request is the
use case's retraining job (``dagster_project.schedules``), tagged with why.

* **Drift**: the new partitions (once they hold ``monitoring.min_window_rows`` rows) are compared
  with up to ``REFERENCE_DAYS`` partitions judged before them, column by column
  (``assets.monitoring.drift.event_drift``); a PSI at ``monitoring.psi_alert`` requests a
  retrain tagged with the drifted columns. Judged partitions join the reference either way, so
  after a retrain the new normal is the reference.
* **Volume**: ``monitoring.retrain_after_rows`` new rows since the last request trigger one.
"""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from assets.monitoring.drift import event_drift
from configs.schema.usecase import UseCaseSpec
from dagster_project.schedules import AssetJob
from resources.home import HomeResource
from runtime import layout

REFERENCE_DAYS = 28
ALERT = "alert"


def _partition_file(home: HomeResource, spec: UseCaseSpec, partition: str) -> Path:
    return Path(str(home.layout.table_file(layout.raw_events_key(spec.name), partition)))


def _read(home: HomeResource, spec: UseCaseSpec, partitions: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(_partition_file(home, spec, p)) for p in partitions]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _new_partitions(
    context: dg.SensorEvaluationContext, spec: UseCaseSpec, seen: list[str]
) -> list[str]:
    done = context.instance.get_materialized_partitions(
        dg.AssetKey(layout.raw_events_key(spec.name))
    )
    return sorted(set(done) - set(seen))


def drift_sensor(spec: UseCaseSpec, job: AssetJob) -> dg.SensorDefinition:
    """Retrain when new raw partitions drift from the ones before them."""

    @dg.sensor(
        name=f"{spec.name}_drift_sensor",
        job=job,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"PSI of new {spec.name} raw-log partitions against earlier ones; a retrain when any"
            f" column reaches {spec.monitoring.psi_alert}."
        ),
    )
    def sensor(context: dg.SensorEvaluationContext, home: HomeResource):
        seen: list[str] = json.loads(context.cursor)["seen"] if context.cursor else []
        new = _new_partitions(context, spec, seen)
        if not new:
            return dg.SkipReason("no new raw partitions")
        if not seen:  # first look: what exists is the reference
            context.update_cursor(json.dumps({"seen": new}))
            return dg.SkipReason(f"{len(new)} partitions taken as the reference")
        window = _read(home, spec, new)
        if len(window) < spec.monitoring.min_window_rows:
            return dg.SkipReason(
                f"{len(window)} new rows, waiting for {spec.monitoring.min_window_rows}"
            )
        reference = _read(home, spec, sorted(seen)[-REFERENCE_DAYS:])
        table = event_drift(spec, reference, window).table
        context.update_cursor(json.dumps({"seen": sorted(set(seen) | set(new))}))
        drifted = table[table["status"] == ALERT].sort_values("psi", ascending=False)
        span = f"{new[0]}..{new[-1]}"
        if drifted.empty:
            worst = float(table["psi"].max()) if len(table) else 0.0
            return dg.SkipReason(f"no drift in {span}: max PSI {worst:.3f}")
        summary = ",".join(f"{r.feature}={r.psi:.3f}" for r in drifted.itertuples())
        context.log.info(f"drift in {span}: {summary}")
        return dg.RunRequest(
            run_key=f"drift:{span}",
            tags={
                layout.USE_CASE_RUN_TAG: spec.name,
                "playbook/reason": "drift",
                "playbook/drifted_features": summary,
                "playbook/window": span,
            },
        )

    return sensor


def volume_sensor(spec: UseCaseSpec, job: AssetJob) -> dg.SensorDefinition:
    """Retrain once ``monitoring.retrain_after_rows`` new raw rows have arrived.

    Every use case gets one (the field has a default): the README promises three triggers per
    use case, and a sensor starts stopped, so having it costs nothing until someone turns it on.
    """
    threshold = spec.monitoring.retrain_after_rows

    @dg.sensor(
        name=f"{spec.name}_new_data_sensor",
        job=job,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"A retrain of {spec.name} after every {threshold:,} new raw-log rows.",
    )
    def sensor(context: dg.SensorEvaluationContext, home: HomeResource):
        state = json.loads(context.cursor) if context.cursor else {"seen": [], "rows": 0}
        new = _new_partitions(context, spec, state["seen"])
        if not state["seen"]:
            context.update_cursor(json.dumps({"seen": new, "rows": 0}))
            return dg.SkipReason(f"{len(new)} partitions taken as the starting point")
        rows = state["rows"] + sum(
            pq.ParquetFile(_partition_file(home, spec, p)).metadata.num_rows for p in new
        )
        seen = sorted(set(state["seen"]) | set(new))
        if rows < threshold:
            context.update_cursor(json.dumps({"seen": seen, "rows": rows}))
            return dg.SkipReason(f"{rows:,} new rows of {threshold:,}")
        context.update_cursor(json.dumps({"seen": seen, "rows": 0}))
        return dg.RunRequest(
            run_key=f"volume:{seen[-1]}",
            tags={
                layout.USE_CASE_RUN_TAG: spec.name,
                "playbook/reason": "new data",
                "playbook/new_rows": str(rows),
            },
        )

    return sensor
