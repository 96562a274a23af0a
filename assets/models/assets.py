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

from assets.metadata import table_metadata
from assets.models.train import TABULAR, TrainedModel, model_input, train_tabular
from assets.training.assets import training_set_key
from configs.schema.usecase import UseCaseSpec
from resources.mlflow_registry import MLflowResource

GATE_CHECK = "promotion_gate"
BASELINE_CHECK = "beats_baseline"


def model_key(spec: UseCaseSpec, model: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "models", model])


def registered_name(spec: UseCaseSpec, model: str) -> str:
    return f"{spec.name}.{model}"


def _finite(metrics: dict) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)
    }


def _mlflow_names(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """MLflow metric names allow no ``@``: ``ndcg@10`` is logged as ``ndcg_at_10``."""
    return {prefix + name.replace("@", "_at_"): value for name, value in metrics.items()}


def _lineage(context: dg.AssetExecutionContext, spec: UseCaseSpec, model: str) -> dict[str, str]:
    key = training_set_key(spec, model)
    event = context.instance.get_latest_materialization_event(key)
    return {
        "playbook.use_case": spec.name,
        "playbook.training_set": key.to_user_string(),
        "playbook.training_set_run": event.run_id if event else "unknown",
        "playbook.dagster_run": context.run_id,
    }


def _params(spec: UseCaseSpec, model: str, trained: TrainedModel) -> dict:
    stage = spec.model[model]
    params = {f"lgb.{k}": v for k, v in stage.params.items()}
    params.update(
        problem=stage.problem,
        labels=",".join(stage.labels),
        baseline=stage.baseline or "random",
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
    if version.run_url:
        metadata["mlflow_run"] = dg.MetadataValue.url(version.run_url)
    if "bands_on_test" in trained.extra:
        bands = trained.extra["bands"]
        metadata["bands/approve_below"] = float(bands.approve_below)
        metadata["bands/decline_at_or_above"] = float(bands.decline_at_or_above)
        summary = pd.DataFrame([trained.extra["bands_on_test"]]).round(4)
        metadata["bands_on_test"] = dg.MetadataValue.md(summary.to_markdown(index=False))
    return metadata


def model_asset(spec: UseCaseSpec, model: str) -> dg.AssetsDefinition:
    """Train, evaluate, register and gate one tabular model of a use case."""
    key = model_key(spec, model)
    stage = spec.model[model]

    @dg.asset(
        key=key,
        ins={"training_set": dg.AssetIn(key=training_set_key(spec, model))},
        group_name=spec.name,
        owners=spec.owners,
        tags={**spec.tags, "stage": "models"},
        kinds={"lightgbm", "mlflow"},
        description=(
            f"{stage.problem} model {model!r} on labels {', '.join(stage.labels)}: trained on the"
            f" train split, early-stopped and calibrated on validation, evaluated on test against"
            f" the {stage.baseline or 'random'} baseline, registered in MLflow as"
            f" {registered_name(spec, model)!r} and promoted by the gate."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                GATE_CHECK, asset=key, description="The new version became champion."
            ),
            dg.AssetCheckSpec(
                BASELINE_CHECK, asset=key, description="The primary metric beats the baseline's."
            ),
        ],
    )
    def trained_model(
        context: dg.AssetExecutionContext, training_set: pd.DataFrame, mlflow: MLflowResource
    ):
        try:
            trained = train_tabular(spec, model, training_set)
        except ValueError as error:
            raise dg.Failure(str(error)) from None
        name = registered_name(spec, model)
        version = mlflow.log_training_run(
            experiment=f"playbook/{spec.name}",
            run_name=model,
            params=_params(spec, model, trained),
            metrics={
                **_mlflow_names(_finite(trained.metrics)),
                **_mlflow_names(_finite(trained.baseline_metrics), "baseline."),
            },
            model=trained.model,
            input_example=model_input(training_set.head(5), trained.features),
            lineage=_lineage(context, spec, model),
            artifacts={},
            registered_name=name,
        )
        verdict = mlflow.run_gate(
            name,
            version.version,
            lambda candidate: trained.evaluate(candidate),
            trained.higher_is_better,
            stage.promotion_margin,
        )
        primary = trained.metrics.get(trained.primary, math.nan)
        baseline = trained.baseline_metrics.get(trained.primary, math.nan)
        better = primary > baseline if trained.higher_is_better else primary < baseline
        metadata = {**table_metadata(trained.predictions), **_metadata(trained, version, verdict)}
        yield dg.Output(trained.predictions, metadata=metadata)
        yield dg.AssetCheckResult(
            check_name=GATE_CHECK,
            passed=verdict.promote,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "reason": verdict.reason,
                "challenger_version": version.version,
                "champion_version": str(verdict.champion_version or "none"),
                "delta": float(verdict.delta) if verdict.delta is not None else 0.0,
            },
        )
        yield dg.AssetCheckResult(
            check_name=BASELINE_CHECK,
            passed=bool(better),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "metric": trained.primary,
                "model": float(primary),
                "baseline": float(baseline),
            },
        )

    return trained_model


def model_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    return [model_asset(spec, m) for m, stage in spec.model.items() if stage.problem in TABULAR]
