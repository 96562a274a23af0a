"""Asset factory for ``<use case>/performance/<model>``: delayed-label metrics of served versions.

The request log the service writes (``<home>/serving/<use case>/request_log.sqlite``) is joined
with the raw events' labels as known now (``assets.monitoring.performance``): one row per model
version and day of the prediction with counts, precision and recall of the served decision, AUC
and PR-AUC. An absent or empty log gives an empty table, not a failure: nothing was served yet.

The ``rollback`` check (warning) hands the registry to :func:`assets.monitoring.rollback.
check_rollback`, which applies the rollback rule to the champion and the version it replaced
(``playbook.previous_champion``, tagged by the promotion gate) on the use case's primary metric
with the model's ``promotion_margin``; when it says so, ``MLflowResource.rollback`` moves
``champion`` back, tags both versions and the registered model and logs a ``rollback`` run, and
the check fails with the event in its metadata. The serving bundle takes the champion at its
next build (the retrain job, or materializing it). The plot is drawn by
:mod:`assets.monitoring.plots`; this module only wires.

Classifier endpoints (fraud ``/score``) are judged on their delayed label; ranking endpoints
(feed ``/recommend``, ``/search``) on whether each served item was clicked within the session
(``session_clicks``), where AUC among served items is the metric the rollback rule compares.

The log is read by :func:`runtime.request_log.load_request_log`: a row it cannot read (broken
JSON, ``Infinity``, an id beyond int64, a field of the wrong type, a time that is not one) is
skipped, counted in the metadata (``unreadable_log_rows``) and fails the warning check
``request_log_rows`` (:mod:`assets.log_rows`); the metrics come from the readable rows.
"""

import dagster as dg
import pandas as pd

from assets.log_rows import log_rows_check, log_rows_check_spec, log_rows_metadata
from assets.metadata import asset_identity, rounded_metadata, table_metadata
from assets.models.plots import markdown_image
from assets.monitoring.performance import (
    METRICS,
    TABLE_COLUMNS,
    classifier_target,
    join_labels,
    logged_predictions,
    performance_table,
    prediction_needs,
    version_summary,
)
from assets.monitoring.plots import metric_by_day_plot
from assets.monitoring.rollback import RollbackOutcome, check_rollback, rollback_metric
from assets.monitoring.session_clicks import (
    SessionTarget,
    join_session_clicks,
    logged_slates,
    session_target,
    slate_needs,
)
from assets.raw.event_log import log_files, read_events
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.request_log import declared_types, load_request_log, served

ROLLBACK_CHECK = "rollback"


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
        metadata=rounded_metadata(metadata),
    )


def _rollback_check(
    context: dg.AssetExecutionContext, outcome: RollbackOutcome
) -> dg.AssetCheckResult:
    """The check's result: passes unless ``champion`` was moved back (then a logged warning)."""
    if outcome.event is not None:
        event = outcome.event
        context.log.warning(
            f"{outcome.registered_model}: champion rolled back"
            f" v{event.from_version} -> v{event.to_version}"
        )
    return _check(not outcome.rolled_back, **outcome.metadata())


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
    needs = slate_needs(target) if session else prediction_needs(target)
    types = declared_types(spec)
    key = dg.AssetKey(layout.performance_key(spec.name, target.model))
    metric = rollback_metric(spec)
    known = target.known if session else target.available_at or "event time + maturity"

    @dg.asset(
        key=key,
        deps=[
            dg.AssetKey(layout.raw_events_key(spec.name)),  # read by file: the join's columns
            dg.AssetKey(layout.serving_bundle_key(spec.name)),
        ],
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
            ),
            log_rows_check_spec(key),
        ],
    )
    def performance(
        context: dg.AssetExecutionContext,
        home: HomeResource,
        mlflow: MLflowResource,
    ):
        path = home.layout.request_log(spec.name)
        rows = load_request_log(str(path), types, needs, target.endpoint)
        predictions = predictions_of(served(rows.frame))
        if predictions.empty:
            note = f"no logged {target.endpoint!r} predictions in {path}"
            context.log.info(note)
            table = performance_table_empty()
            metadata = {**table_metadata(table), "note": note, **log_rows_metadata(rows)}
            yield dg.Output(table, metadata=rounded_metadata(metadata))
            yield _check(True, rolled_back=False, reason=note)
            yield log_rows_check(rows, context)
            return
        as_of = pd.Timestamp.now(tz="UTC").tz_localize(None)
        events = read_events(log_files(spec, home.layout), target.event_columns)
        joined = join(predictions, events, target, as_of)
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
            **log_rows_metadata(rows),
            "by_version": dg.MetadataValue.md(_markdown(summary)),
            "by_version_and_day": dg.MetadataValue.md(_markdown(table)),
            "plot": dg.MetadataValue.md(
                markdown_image(metric_by_day_plot(table, metric), f"{metric} per day")
            ),
        }
        yield dg.Output(table, metadata=rounded_metadata(metadata))
        outcome = check_rollback(
            mlflow,
            layout.registered_model_name(spec.name, target.model),
            summary,
            metric,
            spec.model[target.model].promotion_margin,
            experiment=f"playbook/{spec.name}",
        )
        yield _rollback_check(context, outcome)
        yield log_rows_check(rows, context)

    return [performance]
