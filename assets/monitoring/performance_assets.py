"""Asset factory for ``<use case>/performance/<model>``: delayed-label metrics of served versions.

The request log the service writes (``<home>/serving/<use case>/request_log.sqlite``) is joined
with the raw events' labels as known now (``assets.monitoring.performance``): one row per model
version and day of the prediction with counts, precision and recall of the served decision, AUC
and PR-AUC. An absent or empty log gives an empty table, not a failure: nothing was served yet.

The ``rollback`` check (warning) applies :func:`assets.monitoring.rollback.rollback_decision` to
the champion and the version it replaced (``playbook.previous_champion``, tagged by the promotion
gate) on the use case's primary metric with the model's ``promotion_margin``; when it says so,
``MLflowResource.rollback`` moves ``champion`` back, tags both versions and the registered model
and logs a ``rollback`` run, and the check fails with the event in its metadata. The serving
bundle takes the champion at its next build (the retrain job, or materializing it).

Classifier endpoints (fraud ``/score``) are judged on their delayed label; ranking endpoints
(feed ``/recommend``, ``/search``) on whether each served item was clicked within the session
(``session_clicks``), where AUC among served items is the metric the rollback rule compares.
"""

from io import BytesIO

import dagster as dg
import matplotlib.pyplot as plt
import pandas as pd

from assets.metadata import asset_identity, table_metadata
from assets.models.plots import markdown_image
from assets.monitoring.performance import (
    METRICS,
    TABLE_COLUMNS,
    ClassifierTarget,
    classifier_target,
    join_labels,
    logged_predictions,
    performance_table,
    summary_of,
    version_summary,
)
from assets.monitoring.rollback import MIN_LABELLED, MIN_POSITIVES, rollback_decision
from assets.monitoring.session_clicks import (
    SessionTarget,
    join_session_clicks,
    logged_slates,
    session_target,
)
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.promotion import PREVIOUS_CHAMPION_TAG
from runtime.request_log import read_request_log

ROLLBACK_CHECK = "rollback"
DEFAULT_METRIC = "auc"


def rollback_metric(spec: UseCaseSpec) -> str:
    """The use case's primary metric when it is one tracked on delayed labels, else AUC."""
    primary = spec.metrics.primary if spec.metrics else None
    return primary if primary in METRICS else DEFAULT_METRIC


def _metric_plot(table: pd.DataFrame, metric: str) -> bytes:
    """``metric`` per day, one line per model version."""
    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=90)
    for version, rows in table.groupby("version", sort=False):
        values = rows[metric].astype("float64")  # undefined (NA) -> a gap in the line
        axes.plot(rows["day"], values, marker="o", label=f"v{version}")
    axes.set_ylabel(f"{metric} (delayed labels)")
    axes.set_xlabel("day of the prediction (UTC)")
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _markdown(frame: pd.DataFrame) -> str:
    return frame.round(4).to_markdown(index=False) if not frame.empty else "_(empty)_"


def performance_table_empty() -> pd.DataFrame:
    """The table of a log without predictions: the columns, no rows."""
    frame = pd.DataFrame({c: pd.Series(dtype="int64") for c in TABLE_COLUMNS})
    frame["version"] = frame["version"].astype(object)
    frame["day"] = frame["day"].astype("datetime64[ns]")
    for column in METRICS:
        frame[column] = frame[column].astype("Float64")
    return frame


def _check(passed: bool, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=ROLLBACK_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def _rollback(
    context: dg.AssetExecutionContext,
    spec: UseCaseSpec,
    target: ClassifierTarget | SessionTarget,
    summary: pd.DataFrame,
    mlflow: MLflowResource,
) -> dg.AssetCheckResult:
    """Apply the rollback rule to the registry's champion and the version it replaced."""
    name = layout.registered_model_name(spec.name, target.model)
    champion = mlflow.version_by_alias(name, layout.CHAMPION)
    previous = (
        mlflow.version_tags(name, champion).get(PREVIOUS_CHAMPION_TAG) or None if champion else None
    )
    metric = rollback_metric(spec)
    margin = spec.model[target.model].promotion_margin
    decision = rollback_decision(
        champion,
        summary_of(summary, champion),
        previous,
        summary_of(summary, previous),
        metric,
        margin,
    )
    details = {
        "registered_model": name,
        "metric": metric,
        "margin": float(margin),
        "min_labelled": MIN_LABELLED,
        "min_positives": MIN_POSITIVES,
        "champion_version": champion or "none",
        "previous_champion": previous or "none",
        "reason": decision.reason,
    }
    if not decision.roll_back:
        return _check(True, rolled_back=False, **details)
    event = mlflow.rollback(name, previous, decision.reason, experiment=f"playbook/{spec.name}")
    context.log.warning(
        f"{name}: champion rolled back v{event.from_version} -> v{event.to_version}"
    )
    return _check(
        False,
        rolled_back=True,
        rolled_back_from=event.from_version,
        rolled_back_to=event.to_version,
        rolled_back_at=event.at,
        mlflow_run_id=event.run_id or "",
        champion_value=float(decision.champion_value),
        previous_value=float(decision.previous_value),
        champion_now=event.to_version,
        **details,
    )


def performance_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    """The delayed-label performance asset of the served classifier, or none (see module)."""
    target = classifier_target(spec) or session_target(spec)
    if target is None:
        return []
    session = isinstance(target, SessionTarget)
    predictions_of = (
        (lambda log: logged_slates(log, target))
        if session
        else (lambda log: logged_predictions(log, target))
    )
    join = join_session_clicks if session else join_labels
    key = dg.AssetKey(layout.performance_key(spec.name, target.model))
    metric = rollback_metric(spec)
    known = target.known if session else target.available_at or "event time + maturity"

    @dg.asset(
        key=key,
        ins={"raw_events": dg.AssetIn(key=dg.AssetKey(layout.raw_events_key(spec.name)))},
        deps=[dg.AssetKey(layout.serving_bundle_key(spec.name))],
        **asset_identity(spec, "monitoring"),
        kinds={"pandas", "mlflow"},
        description=(
            f"Precision, recall, AUC and PR-AUC of each served version of {target.model!r} per"
            f" day, on the {target.label!r} labels that have arrived"
            f" ({known}); a rollback of a champion"
            f" whose {metric} falls below its predecessor's by more than the promotion margin."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                ROLLBACK_CHECK,
                asset=key,
                description=(
                    f"The champion's delayed-label {metric} is not below the previous"
                    " champion's by more than the promotion margin (else it is rolled back)."
                ),
            )
        ],
    )
    def performance(
        context: dg.AssetExecutionContext,
        raw_events: pd.DataFrame,
        home: HomeResource,
        mlflow: MLflowResource,
    ):
        path = home.layout.request_log(spec.name)
        log = read_request_log(str(path)) if path.exists() else pd.DataFrame()
        predictions = predictions_of(log)
        if predictions.empty:
            note = f"no logged {target.endpoint!r} predictions in {path}"
            context.log.info(note)
            table = performance_table_empty()
            yield dg.Output(table, metadata={**table_metadata(table), "note": note})
            yield _check(True, rolled_back=False, reason=note)
            return
        as_of = pd.Timestamp.now(tz="UTC").tz_localize(None)
        joined = join(predictions, raw_events, target, as_of)
        table = performance_table(joined)
        summary = version_summary(joined)
        metadata = {
            **table_metadata(table),
            "request_log": dg.MetadataValue.path(str(path)),
            "as_of": str(as_of),
            "predictions": len(predictions),
            "labelled": joined.count("labelled"),
            "pending": joined.count("pending"),
            "unmatched": joined.count("unmatched"),
            "unkeyed": joined.unkeyed,
            "by_version": dg.MetadataValue.md(_markdown(summary)),
            "by_version_and_day": dg.MetadataValue.md(_markdown(table)),
            "plot": dg.MetadataValue.md(
                markdown_image(_metric_plot(table, metric), f"{metric} per day")
            ),
        }
        yield dg.Output(table, metadata=metadata)
        yield _rollback(context, spec, target, summary, mlflow)

    return [performance]
