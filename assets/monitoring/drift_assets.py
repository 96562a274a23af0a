"""Asset factory for ``<use case>/drift_report``: PSI of the raw log and of every model.

Events: the training split's period of the raw log (the split plan's train window) is the
reference, the most recent days holding at least ``monitoring.min_window_rows`` rows the window;
both read from the log's files, only their rows and the columns drift looks at, the reference
one file at a time (:mod:`assets.monitoring.drift_events`).
Models: each tabular model's features and its champion's score, the validation split (the newest
rows the model learned from) against the test split (the newest labelled rows), read from the
training set's file by split (the train rows are never loaded). Beside them, rows per day and
each binary label's rate (where already known), window against reference. One table with a row
per (source, feature), plots of the features that warn or alert, and a warning check that fails
on any alert.
"""

import math

import dagster as dg
import pandas as pd

from assets.metadata import asset_identity, rounded_metadata, table_metadata
from assets.monitoring.drift import ALERT, event_drift, model_drift, shifts
from assets.monitoring.drift_events import drift_periods
from assets.monitoring.plots import drift_plots
from assets.raw.event_log import log_files
from assets.training.build import SPLIT
from assets.training.set_splits import read_split
from assets.upstream import home_table_file
from configs.schema.model_stage import TABULAR
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout

ALERT_CHECK = "no_drift_alert"
# The model's reference rows: validation, the newest rows it learned from (early stopping,
# calibration). The train split starts at the start of the data, where windowed aggregates are
# still filling up (a 7-day count is small on day 2), which would read as drift by itself.
REFERENCE_SPLIT = "validation"


def drift_report_asset(spec: UseCaseSpec) -> dg.AssetsDefinition | None:
    if spec.events.timestamp is None:
        return None
    tabular = [m for m, s in spec.model.items() if s.problem in TABULAR]
    key = dg.AssetKey(layout.drift_report_key(spec.name))
    ins = {"split_plan": dg.AssetIn(key=dg.AssetKey(layout.split_plan_key(spec.name)))}
    sets = {m: dg.AssetKey(layout.training_set_key(spec.name, m)) for m in tabular}
    monitoring = spec.monitoring

    @dg.asset(
        key=key,
        ins=ins,
        deps=[
            dg.AssetKey(layout.raw_events_key(spec.name)),  # read by file: two periods only
            *sets.values(),  # read by file: the validation and test splits only
            *[dg.AssetKey(layout.model_key(spec.name, m)) for m in tabular],
        ],
        **asset_identity(spec, "monitoring"),
        kinds={"pandas"},
        description=(
            "PSI of the raw log's columns (recent days vs the training period) and of every"
            " model's features and champion score (test vs validation split); warn at"
            f" {monitoring.psi_warn}, alert at {monitoring.psi_alert}, windows of at least"
            f" {monitoring.min_window_rows} rows."
        ),
        check_specs=[
            dg.AssetCheckSpec(ALERT_CHECK, asset=key, description="No PSI at the alert level.")
        ],
    )
    def drift_report(
        context: dg.AssetExecutionContext, mlflow: MLflowResource, home: HomeResource, **inputs
    ):
        files = log_files(spec, home.layout)
        reference, window = drift_periods(spec, files, inputs["split_plan"])
        drifts = [event_drift(spec, reference, window)]
        changes = shifts(spec, reference, window)
        for model in tabular:
            path = home_table_file(home.layout, sets[model])
            name = layout.registered_model_name(spec.name, model)
            champion = (
                mlflow.load_model(name, layout.CHAMPION).unwrap_python_model().model
                if mlflow.version_by_alias(name, layout.CHAMPION)
                else None
            )
            features = list(champion.feature_columns) if champion is not None else []
            drifts.append(
                model_drift(
                    spec,
                    model,
                    read_split(path, REFERENCE_SPLIT, SPLIT),
                    read_split(path, "test", SPLIT),
                    features,
                    champion.predict if champion is not None else None,
                )
            )
        table = pd.concat([d.table for d in drifts], ignore_index=True)
        table = table[["source", *[c for c in table.columns if c != "source"]]]
        alerted = [f"{r.source}:{r.feature}" for r in table[table["status"] == ALERT].itertuples()]
        worst = table["psi"].max(skipna=True)
        context.log.info(f"drift: {len(alerted)} alerts, max PSI {worst:.3f}")
        yield dg.Output(
            table,
            metadata=rounded_metadata(
                {
                    **table_metadata(table.round(4)),
                    "window_rows": len(window),
                    "max_psi": float(worst) if not math.isnan(worst) else 0.0,
                    "alerts": ", ".join(alerted) or "none",
                    "shifts": dg.MetadataValue.md(changes.round(4).to_markdown(index=False)),
                    **{
                        f"shift/{row.metric}": float(row.relative_change)
                        for row in changes.itertuples()
                        if pd.notna(row.relative_change)
                    },
                    "plots": dg.MetadataValue.md(drift_plots(drifts)),
                }
            ),
        )
        yield dg.AssetCheckResult(
            check_name=ALERT_CHECK,
            passed=not alerted,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=rounded_metadata({"alerts": ", ".join(alerted) or "none"}),
        )

    return drift_report
