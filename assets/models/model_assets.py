"""Asset factory for ``<use case>/models/<model>``: train, evaluate, log to MLflow, gate.

Each run trains on the point-in-time training set, evaluates on its temporal test split beside
the named baseline, logs params, metrics and the model (with signature and input example) to
MLflow with the training set's materialization as lineage, registers a new version and runs the
promotion gate: the version gets the ``challenger`` alias and becomes ``champion`` only if it is
not worse than the current champion, on the same test rows, by more than ``promotion_margin``.
The output is the test split with the model's scores, for reports and monitoring.
"""

import math

import dagster as dg
import pandas as pd

from assets.metadata import asset_identity, rounded_metadata, table_metadata
from assets.models.plots import Plots, markdown_image, plot_files
from assets.models.retrieval import train_retrieval
from assets.models.retrieval_splits import first_rows_per
from assets.models.sequence import train_sequence_retrieval
from assets.models.split_chunks import streamed_splits
from assets.models.train import TABULAR, TrainedModel, model_input, train_tabular
from assets.models.tuning import tune
from assets.training.build import SPLIT
from assets.training.model_views import label_columns
from assets.training.set_splits import SetSplits
from assets.upstream import home_table_file
from configs.schema.sequence import SequenceSpec
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from resources.mlflow_dataset import TrainingData
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.funnel_roles import retrieval_keys
from runtime.shards import resolve_execution
from runtime.training_engine import open_training

GATE_CHECK = "promotion_gate"
BASELINE_CHECK = "beats_baseline"


def _finite(metrics: dict) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)
    }


def _mlflow_names(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """MLflow metric names allow no ``@``: ``ndcg@10`` is logged as ``ndcg_at_10``."""
    return {prefix + name.replace("@", "_at_"): value for name, value in metrics.items()}


def _lineage(context: dg.AssetExecutionContext, spec: UseCaseSpec, model: str) -> dict[str, str]:
    key = dg.AssetKey(layout.training_set_key(spec.name, model))
    event = context.instance.get_latest_materialization_event(key)
    return {
        "playbook.use_case": spec.name,
        "playbook.training_set": key.to_user_string(),
        "playbook.training_set_run": event.run_id if event else "unknown",
        "playbook.dagster_run": context.run_id,
    }


def _training_data(
    context: dg.AssetExecutionContext,
    spec: UseCaseSpec,
    model: str,
    frame: pd.DataFrame | SetSplits,
) -> TrainingData:
    """The training set as the run's MLflow dataset input: its asset key, Parquet path, labels
    (of a set read by split, the set in its order a chunk at a time: the whole set's digest
    and schema)."""
    key = dg.AssetKey(layout.training_set_key(spec.name, model))
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    path = materialization.metadata.get("path") if materialization else None
    return TrainingData(
        frame=frame.table if isinstance(frame, SetSplits) else frame,
        name=key.to_user_string(),
        source=str(path.value) if path is not None else None,
        targets=tuple(label_columns(spec, model).values()),
        tags={"playbook.training_set_run": event.run_id if event else "unknown"},
    )


def _params(spec: UseCaseSpec, model: str, trained: TrainedModel) -> dict:
    stage = spec.model[model]
    params = {f"lgb.{k}": v for k, v in stage.params.items()}
    params.update(
        problem=stage.problem,
        labels=",".join(stage.labels),
        baseline=stage.baseline_name,
        features=len(trained.features),
        promotion_margin=stage.promotion_margin,
    )
    return params


def _metadata(trained: TrainedModel, version, verdict) -> dict:
    metadata: dict = {f"metric/{name}": value for name, value in _finite(trained.metrics).items()}
    metadata.update(
        {
            "primary_metric": trained.primary,
            "evaluation": dg.MetadataValue.md(trained.comparison.to_markdown(index=False)),
            "mlflow_model": version.model_uri,
            "mlflow_run_id": version.run_id,
            "model_version": version.version,
            "gate": verdict.reason,
        }
    )
    plots: Plots = trained.extra.get("plots", Plots({}))
    if plots.preview:  # the main curve, small enough for the UI to show inline
        metadata["curve"] = dg.MetadataValue.md(plots.preview)
    if plots:  # every plot in one entry, each as its own image
        images = (markdown_image(png, name) for name, png in plots.items())
        metadata["plots"] = dg.MetadataValue.md("\n\n".join(images))
    if version.run_url:
        metadata["mlflow_run"] = dg.MetadataValue.url(version.run_url)
    metadata.update(trained.extra.get("metadata", {}))  # a trainer's own tables (per class...)
    if "bands_on_test" in trained.extra:
        bands = trained.extra["bands"]
        metadata["bands/approve_below"] = float(bands.approve_below)
        metadata["bands/decline_at_or_above"] = float(bands.decline_at_or_above)
        summary = pd.DataFrame([trained.extra["bands_on_test"]]).round(4)
        metadata["bands_on_test"] = dg.MetadataValue.md(summary.to_markdown(index=False))
    return metadata


def _check_specs(key: dg.AssetKey, baseline_description: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(GATE_CHECK, asset=key, description="The new version became champion."),
        dg.AssetCheckSpec(BASELINE_CHECK, asset=key, description=baseline_description),
    ]


def register_and_gate(
    context: dg.AssetExecutionContext,
    mlflow: MLflowResource,
    spec: UseCaseSpec,
    model: str,
    trained,
    params: dict,
    input_example: pd.DataFrame,
    evaluate,
    training_set: pd.DataFrame | SetSplits,
):
    """Log the run, register the version and run the gate; returns (version, verdict)."""
    name = layout.registered_model_name(spec.name, model)
    version = mlflow.log_training_run(
        experiment=f"playbook/{spec.name}",
        run_name=model,
        params=params,
        metrics={
            **_mlflow_names(_finite(trained.metrics)),
            **_mlflow_names(_finite(trained.baseline_metrics), "baseline."),
        },
        model=trained.model,
        input_example=input_example,
        lineage=_lineage(context, spec, model),
        artifacts=plot_files(trained.extra.get("plots", Plots({}))),
        registered_name=name,
        training_data=_training_data(context, spec, model, training_set),
    )
    verdict = mlflow.run_gate(
        name,
        version.version,
        evaluate,
        trained.higher_is_better,
        spec.model[model].promotion_margin,
        hold_for_slo=spec.slo is not None,  # then the SLO check promotes (slo_check_assets)
    )
    return version, verdict


def check_results(trained, version, verdict) -> list[dg.AssetCheckResult]:
    """The gate's verdict and the baseline comparison as (warning) asset checks."""
    primary = trained.metrics.get(trained.primary, math.nan)
    baseline = trained.baseline_metrics.get(trained.primary, math.nan)
    better = primary > baseline if trained.higher_is_better else primary < baseline
    return [
        dg.AssetCheckResult(
            check_name=GATE_CHECK,
            passed=verdict.promote,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=rounded_metadata(
                {
                    "reason": verdict.reason,
                    "challenger_version": version.version,
                    "champion_version": str(verdict.champion_version or "none"),
                    "delta": float(verdict.delta) if verdict.delta is not None else 0.0,
                }
            ),
        ),
        dg.AssetCheckResult(
            check_name=BASELINE_CHECK,
            passed=bool(better),
            severity=dg.AssetCheckSeverity.WARN,
            metadata=rounded_metadata(
                {
                    "metric": trained.primary,
                    "model": float(primary),
                    "baseline": float(baseline),
                }
            ),
        ),
    ]


def model_asset(spec: UseCaseSpec, model: str) -> dg.AssetsDefinition:
    """Train, evaluate, register and gate one tabular model of a use case."""
    key = dg.AssetKey(layout.model_key(spec.name, model))
    stage = spec.model[model]

    set_key = dg.AssetKey(layout.training_set_key(spec.name, model))

    @dg.asset(
        key=key,
        deps=[set_key],  # read by split from its file: never the whole frame and its splits
        **asset_identity(spec, "models"),
        kinds={"lightgbm", "mlflow"},
        description=(
            f"{stage.problem} model {model!r} on labels {', '.join(stage.labels)}: trained on the"
            f" train split, early-stopped and calibrated on validation, evaluated on test against"
            f" the {stage.baseline or 'random'} baseline, registered in MLflow as"
            f" {layout.registered_model_name(spec.name, model)!r} and promoted by the gate."
        ),
        check_specs=_check_specs(key, "The primary metric beats the baseline's."),
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        mlflow: MLflowResource,
        home: HomeResource,
    ):
        path = home_table_file(home.layout, set_key)
        try:
            training_set = SetSplits.read(path, SPLIT, streamed=streamed_splits(stage))
        except ValueError as error:
            raise dg.Failure(f"{set_key.to_user_string()}: {error}") from None
        tuned = None
        # a Ray cluster (execution section or RAY_ADDRESS) is checked here, before any training;
        # tuning trials then run on it as Ray Tune trials, the final fit through Ray Train
        execution = resolve_execution(spec.execution, str(home.layout.root))
        with open_training(execution) as training:
            try:
                if stage.tuning is not None:
                    tuned = tune(spec, model, training_set, training)
                with training.active():
                    best = tuned.best_params if tuned else None
                    trained = train_tabular(spec, model, training_set, best)
            except ValueError as error:
                raise dg.Failure(str(error)) from None
        params = _params(spec, model, trained)
        if tuned is not None:
            params.update({f"lgb.{k}": v for k, v in tuned.best_params.items()})
            params["tuning_trials"] = len(tuned.trials)
        version, verdict = register_and_gate(
            context,
            mlflow,
            spec,
            model,
            trained,
            params,
            model_input(training_set.head(5), trained.features),
            trained.evaluate,
            training_set,
        )
        metadata = {**table_metadata(trained.predictions), **_metadata(trained, version, verdict)}
        metadata.update(training.metadata())  # where the boosters trained, when not here
        if tuned is not None:
            mlflow.log_trials(f"playbook/{spec.name}", version.run_id, tuned.trials, tuned.metric)
            trials = pd.DataFrame(
                [{**t["params"], "validation " + tuned.metric: t["score"]} for t in tuned.trials]
            )
            metadata["tuning"] = dg.MetadataValue.md(trials.round(5).to_markdown(index=False))
            metadata["tuned_params"] = ", ".join(f"{k}={v:g}" for k, v in tuned.best_params.items())
            metadata.update(tuned.metadata())  # where the trials ran, when not here
        yield dg.Output(trained.predictions, metadata=rounded_metadata(metadata))
        yield from check_results(trained, version, verdict)

    return trained_model


def _request_example(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Request rows in plain types for the signature: lists as lists, the rest as model_input."""
    columns = [c for c in columns if c in frame]
    lists = [
        c
        for c in columns
        if frame[c].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any()
    ]
    plain = model_input(frame, [c for c in columns if c not in lists])
    for column in lists:
        plain[column] = [[int(x) for x in v] if v is not None else [] for v in frame[column]]
    return plain[columns]


def _unwrap(candidate):
    """The Python model inside an MLflow pyfunc model (the two-tower object itself)."""
    return candidate.unwrap_python_model().model


def retrieval_asset(spec: UseCaseSpec, model: str) -> dg.AssetsDefinition:
    """Train, evaluate, register and gate one two-tower retriever; output its item embeddings."""
    key = dg.AssetKey(layout.model_key(spec.name, model))
    stage = spec.model[model]
    _, item_key, item_entity = retrieval_keys(spec, model)
    set_key = dg.AssetKey(layout.training_set_key(spec.name, model))
    ins = {}
    table = spec.entities[item_entity].table
    if table:
        ins["catalog"] = dg.AssetIn(key=dg.AssetKey(layout.raw_table_key(spec.name, table)))

    sequence = stage.problem == "sequence"
    trainer = train_sequence_retrieval if sequence else train_retrieval
    learner = (
        f"Next-item retriever {model!r}: a {(stage.sequence or SequenceSpec()).encoder} encoder"
        f" over the user's recent {item_entity} ids, {(stage.sequence or SequenceSpec()).negatives}"
        " sampled softmax"
        if sequence
        else f"Two-tower retriever {model!r}: user and {item_entity} towers over ids and content,"
        " in-batch negatives with logQ correction plus sampled negatives"
    )

    @dg.asset(
        key=key,
        ins=ins,
        deps=[set_key],  # read by split from its file, train and validation a chunk at a time
        **asset_identity(spec, "models"),
        kinds={"pytorch", "mlflow"},
        description=(
            f"{learner}; evaluated by full"
            " ranking of the catalog on future clicks against popularity; registered in MLflow"
            f" as {layout.registered_model_name(spec.name, model)!r} and promoted by the gate. Output: the"
            f" {item_entity} embeddings."
        ),
        check_specs=_check_specs(key, "recall@k beats the popularity ranking."),
    )
    def retriever(
        context: dg.AssetExecutionContext,
        mlflow: MLflowResource,
        home: HomeResource,
        catalog: pd.DataFrame | None = None,
    ):
        path = home_table_file(home.layout, set_key)
        try:
            training_set = SetSplits.read(path, SPLIT, streamed=streamed_splits(stage))
        except ValueError as error:
            raise dg.Failure(f"{set_key.to_user_string()}: {error}") from None
        # a Ray cluster (execution section or RAY_ADDRESS) is checked here, before any training;
        # the retrievers (two-tower, sequence) then train on it through Ray Train's TorchTrainer
        execution = resolve_execution(spec.execution, str(home.layout.root))
        with open_training(execution) as training:
            try:
                with training.active():
                    trained = trainer(spec, model, training_set, catalog)
            except ValueError as error:
                raise dg.Failure(str(error)) from None
        example = first_rows_per(training_set, trained.user_key, 5)
        version, verdict = register_and_gate(
            context,
            mlflow,
            spec,
            model,
            trained,
            {
                "problem": stage.problem,
                "embedding_dim": stage.embedding_dim,
                "epochs": stage.epochs,
                "promotion_margin": stage.promotion_margin,
                **((stage.sequence or SequenceSpec()).model_dump() if sequence else {}),
            },
            _request_example(example, trained.model.user_columns),
            lambda candidate: trained.evaluate(_unwrap(candidate)),
            training_set,
        )
        embeddings = pd.DataFrame(
            {item_key: trained.item_ids, "embedding": list(trained.item_vectors.astype("float32"))}
        )
        metadata = {
            "dagster/row_count": len(embeddings),
            **_metadata(trained, version, verdict),
            "embedding_dim": int(trained.item_vectors.shape[1]),
            "train_seconds": float(trained.model.train_seconds),
            "examples_per_second": float(trained.model.examples_per_second),
        }
        metadata.update(training.metadata())  # where the towers trained, when not here
        yield dg.Output(embeddings, metadata=rounded_metadata(metadata))
        yield from check_results(trained, version, verdict)

    return retriever


def model_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    """One asset per model: tabular learners and two-tower retrievers."""
    return [
        model_asset(spec, m) if stage.problem in TABULAR else retrieval_asset(spec, m)
        for m, stage in spec.model.items()
    ]
