"""Asset factory for ``<use case>/predictions``: batch serving (``serving.mode: batch``).

Each partition is one scoring window of ``serving.schedule`` (an hourly cron gives hourly
windows): a ``TimeWindowPartitionsDefinition`` on the same cron, so the schedule built from the
partitioned job (:mod:`dagster_project.schedules`) runs exactly the window that just closed, and
a backfill scores past windows the same way. The windows span the data's days (the raw log's
partitions), open-ended for a live source.

A window's run loads the registry's ``champion`` of the model, reads every entity's features as
of just before the window closed through the training sets' own point-in-time join over the
feature tables (the offline store at the window's time, not the online store: a backfilled or
re-run window then sees what was known then, and scores are the model's on exactly the features
a training row at that moment would get; for the latest window both hold the same values), scores
every entity seen by then, writes the window's Parquet file
(``tables/<use case>/predictions/<window>.parquet``) and loads it into the online store as the
Feast view ``<use case>_predictions`` (:mod:`resources.feast_predictions`). A run over several
windows (``playbook materialize``, a backfill) does one join and one model call for all of them.

The ``prediction_drift`` check (a warning) is the PSI of the last window's predictions against
the window before it, with bins fixed on that earlier window, judged by ``monitoring.psi_warn``
/ ``psi_alert`` and ``min_window_rows`` (:mod:`assets.monitoring.prediction_drift`).

No Bento, serving bundle, SLO check or Triton repository is built in batch mode: nothing is
scored per request, and a reader needs only the online store.
"""

import uuid
from datetime import datetime, time

import dagster as dg
import duckdb
import pandas as pd

from assets.features.feature_store_assets import use_case_store
from assets.metadata import asset_identity, rounded_metadata, shard_metadata
from assets.monitoring.prediction_drift import prediction_drift
from assets.raw.tables import partition_range
from assets.serving.batch_shards import SCORING_MODULES, score_in_shards
from assets.training.build import join_features
from assets.training.model_views import model_tables
from assets.upstream import materialized_path
from configs.schema.batch import batch_entity, batch_model, batch_problems, is_batch
from configs.schema.usecase import UseCaseSpec
from resources.feast_definitions import EntityDef
from resources.feast_predictions import predictions_repo, publish_predictions
from resources.feature_store import FeatureStoreResource
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.batch_predictions import (
    EVENT_TIMESTAMP,
    PREDICTION,
    WINDOW,
    output_columns,
    prediction_table,
    scores,
    scoring_rows,
)
from runtime.shards import ShardEngine, ShardResult, open_engine, resolve_execution

# the stage (and its job, ``<use case>__batch_scoring``): not "predictions", the asset's own
# name, since a job may not share its name with the op Dagster makes of ``<use case>/predictions``
PREDICTIONS_STAGE = "batch_scoring"
DRIFT_CHECK = "prediction_drift"
WINDOW_FORMAT = "%Y-%m-%d-%H%M"


def scoring_partitions(spec: UseCaseSpec) -> dg.TimeWindowPartitionsDefinition:
    """The scoring windows: ``serving.schedule``'s cron, UTC, over the data's days."""
    assert spec.serving is not None and spec.serving.schedule is not None
    bounds = partition_range(spec)
    first = bounds[0] if bounds else getattr(spec.source, "start_date", None)
    if first is None:
        raise ValueError(
            f"{spec.name}: batch serving's windows start with the data: set source.start_date"
        )
    last = bounds[1] if bounds else None
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=spec.serving.schedule,
        start=datetime.combine(first, time()),
        end=datetime.combine(last, time()) + pd.Timedelta(days=1) if last else None,
        fmt=WINDOW_FORMAT,
        timezone="UTC",
    )


def _first_seen(paths: list[str], key: str) -> pd.DataFrame:
    """Each entity's earliest stored feature row, over the model's feature tables."""
    union = " UNION ALL ".join(
        f"SELECT {key}, {EVENT_TIMESTAMP} FROM read_parquet('{path}')" for path in paths
    )
    return duckdb.sql(
        f"SELECT {key}, min({EVENT_TIMESTAMP}) AS first_seen FROM ({union}) GROUP BY {key}"
    ).df()


def _write(path, frame: pd.DataFrame) -> None:
    """Write ``frame`` beside ``path`` and rename it over: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with staging.open("wb") as handle:
        frame.to_parquet(handle, index=False)
    staging.rename(path)


def _score_windows(
    spec: UseCaseSpec,
    model: str,
    scorer: object,
    version: str,
    key: str,
    paths: dict[str, str],
    closes: dict[str, pd.Timestamp],
    outputs: tuple[tuple[str, str], ...],
    engine: ShardEngine,
) -> tuple[pd.DataFrame, list[ShardResult]]:
    """Every entity known before each window closed, scored on its features as of then: one
    point-in-time join and one model call for all the windows, or one of each per shard of
    entities when the use case's execution shards (:mod:`assets.serving.batch_shards`)."""
    windows = list(closes)
    rows = scoring_rows(_first_seen(list(paths.values()), key), key, list(closes.values()), windows)
    registered = layout.registered_model_name(spec.name, model)
    names = [name for name, _ in outputs]
    results: list[ShardResult] = []
    try:
        sharded = score_in_shards(spec, model, scorer, rows, key, paths, names, engine)
        if sharded is None:
            joined, _ = join_features(spec, model, rows, paths)
            values = scores(scorer, joined, names)
        else:
            values, results = sharded
    except ValueError as exc:
        raise dg.Failure(f"{registered} v{version}: {exc}") from None
    created = pd.Timestamp.now(tz="UTC")
    return prediction_table(rows, key, values, closes, version, created), results


def predictions_asset(spec: UseCaseSpec) -> dg.AssetsDefinition | None:
    """The batch predictions asset, None unless ``serving.mode`` is batch."""
    if not is_batch(spec):
        return None
    problems = [f"{'.'.join(map(str, loc))}: {message}" for loc, message in batch_problems(spec)]
    if problems:  # validate reports these with their lines; never build a half-valid asset
        raise ValueError(f"{spec.name}: " + "; ".join(problems))
    model, entity_name = batch_model(spec), batch_entity(spec)
    assert model is not None and entity_name is not None  # batch_problems said otherwise
    entity = spec.entities[entity_name]
    key = entity.key
    tables = {
        t.name: dg.AssetKey(layout.feature_table_key(spec.name, t.name))
        for t in model_tables(spec, model)
    }
    asset_key = dg.AssetKey(layout.predictions_key(spec.name))
    partitions = scoring_partitions(spec)
    registered = layout.registered_model_name(spec.name, model)
    view = layout.predictions_view(spec.name)
    stage = spec.model[model]
    interval = stage.regression is not None and stage.regression.interval is not None
    outputs = output_columns(stage.problem, interval)

    @dg.asset(
        key=asset_key,
        deps=[dg.AssetKey(layout.model_key(spec.name, model)), *tables.values()],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec(
                DRIFT_CHECK,
                asset=asset_key,
                description="PSI of the latest window's predictions against the window before.",
            )
        ],
        **asset_identity(spec, PREDICTIONS_STAGE),
        kinds={"feast", "mlflow", "parquet"},
        description=(
            f"Every {entity_name} scored by the champion of {model} each window of"
            f" {spec.serving.schedule!r} (UTC), written to Parquet and loaded into the online"
            f" store as Feast view {view!r}: an online read is the whole serving path."
        ),
    )
    def predictions(
        context: dg.AssetExecutionContext,
        home: HomeResource,
        mlflow: MLflowResource,
        feature_store: FeatureStoreResource,
    ) -> dg.MaterializeResult:
        version = mlflow.version_by_alias(registered, layout.CHAMPION)
        if version is None:
            raise dg.Failure(f"{registered} has no champion: materialize the model assets first")
        scorer = mlflow.load_model(registered, version).unwrap_python_model().model
        windows = sorted(context.partition_keys)
        closes = {w: pd.Timestamp(partitions.time_window_for_partition_key(w).end) for w in windows}
        paths = {name: materialized_path(context, k) for name, k in tables.items()}
        # a Ray cluster (execution section or RAY_ADDRESS) is checked before anything is scored
        execution = resolve_execution(spec.execution, str(home.layout.root))
        with open_engine(execution, SCORING_MODULES) as engine:
            frame, shards = _score_windows(
                spec, model, scorer, version, key, paths, closes, outputs, engine
            )
        places = home.layout
        for window in windows:  # a window before any entity existed gets its empty file too
            part = frame[frame[WINDOW] == window]
            _write(places.table_file(layout.predictions_key(spec.name), window), part)
        folder = places.table_file(layout.predictions_key(spec.name), windows[0]).parent
        repo = predictions_repo(
            spec.name,
            EntityDef(entity_name, key, entity.dtype),
            str(folder),
            outputs,
            origin=str(spec.path) if spec.path else "",
        )
        store = use_case_store(spec, feature_store)
        loaded = publish_predictions(store, repo, closes[windows[0]].to_pydatetime())
        last = frame[frame[WINDOW] == windows[-1]][PREDICTION]
        reference = _reference(frame, windows, places, spec.name, partitions)
        drift = prediction_drift(reference, last, spec.monitoring)
        context.log.info(
            f"scored {len(frame)} rows ({frame[key].nunique()} {entity_name}s, {len(windows)}"
            f" windows) with {registered} v{version}; online until {loaded['loaded_until']}"
        )
        return dg.MaterializeResult(
            metadata=rounded_metadata(
                {
                    "dagster/row_count": len(frame),
                    "path": dg.MetadataValue.path(str(folder)),
                    "windows": len(windows),
                    "entities_scored": int(frame[key].nunique()),
                    "model": registered,
                    "model_version": version,
                    "feast_view": view,
                    "feast_repo": dg.MetadataValue.path(str(loaded["repo_path"])),
                    "online_until": str(loaded["loaded_until"]),
                    "prediction_mean": float(last.mean()) if len(last) else float("nan"),
                    **shard_metadata(shards),
                    "preview": dg.MetadataValue.md(
                        frame.tail(10).drop(columns=[WINDOW]).to_markdown(index=False)
                    ),
                }
            ),
            check_results=[
                dg.AssetCheckResult(
                    check_name=DRIFT_CHECK,
                    passed=drift.passed,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=drift.summary,
                    metadata=rounded_metadata(drift.metadata()),
                )
            ],
        )

    return predictions


def _reference(
    frame: pd.DataFrame,
    windows: list[str],
    places: layout.HomeLayout,
    use_case: str,
    partitions: dg.TimeWindowPartitionsDefinition,
) -> pd.Series | None:
    """The predictions of the window before the last one scored: from this run, else its file."""
    if len(windows) > 1:
        return frame[frame[WINDOW] == windows[-2]][PREDICTION]
    previous = partitions.get_prev_partition_window(
        partitions.time_window_for_partition_key(windows[-1]).start
    )
    if previous is None:
        return None
    name = previous.start.strftime(WINDOW_FORMAT)
    path = places.table_file(layout.predictions_key(use_case), name)
    if not path.exists():
        return None
    with path.open("rb") as handle:
        return pd.read_parquet(handle, columns=[PREDICTION])[PREDICTION]
