"""Asset factory for ``<use case>/triton_repository``: the champions as a Triton model repository.

Every model of the use case is loaded from MLflow at its ``champion`` alias and exported: the
two-tower towers to ONNX (checked against PyTorch with ONNX Runtime; the asset fails past 1e-4),
LightGBM boosters to LightGBM text for the FIL backend (raw margins; checked against the served
booster). Both repository variants are written (``serving.triton.repository``):

* ``<home>/triton/<use case>/gpu``: ONNX Runtime and FIL backends on GPU instances;
* ``<home>/triton/<use case>/cpu``: the same files under the Python backend on CPU instances;

with ``manifest.json`` beside them. The folder is published with ``runtime.publish`` (staged,
swapped in only once complete and checked), so a failed build keeps the previous repository and a server polling
the folder never sees half of one. Nothing is downloaded: only the registry and local files.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.metadata import asset_identity, rounded_metadata
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.publish import publishing
from serving.triton.config import CONFIG_FILE
from serving.triton.onnx_export import PARITY_TOLERANCE, ParityError
from serving.triton.repository import ExportedModel, export_model, write_repository

# Why a sequence retriever is left out of the repository, shown on the asset.
SEQUENCE_SKIPPED = (
    "not exported: the Triton export (serving.triton.repository) knows two-tower towers and"
    " LightGBM boosters only; the sequence encoder (GRU / transformer over item ids) is served"
    " by the funnel in PyTorch"
)


def _champions(spec: UseCaseSpec, mlflow: MLflowResource) -> dict[str, tuple[str, object]]:
    """``{registered name: (champion version, served model object)}`` for every exported
    model (sequence retrievers are not: :data:`SEQUENCE_SKIPPED`)."""
    out = {}
    for model in spec.model:
        if spec.model[model].problem == "sequence":
            continue
        name = layout.registered_model_name(spec.name, model)
        version = mlflow.version_by_alias(name, layout.CHAMPION)
        if version is None:
            raise dg.Failure(
                f"{spec.name}: model {model!r} ({name}) has no {layout.CHAMPION!r} version in the"
                " registry; materialize its model asset first"
            )
        out[name] = (version, mlflow.load_model(name, version).unwrap_python_model().model)
    return out


def _export(champions: dict[str, tuple[str, object]]) -> list[ExportedModel]:
    exported = []
    for name, (version, served) in champions.items():
        try:
            exported += export_model(name, version, served)
        except (ParityError, ValueError, TypeError) as error:
            raise dg.Failure(f"{name} version {version}: export failed: {error}") from None
    return exported


def _models_table(models: list[ExportedModel]) -> str:
    rows = [
        {
            "triton model": m.name,
            "source": f"{m.source} v{m.version}",
            "format": m.format,
            "inputs": ", ".join(f"{s.name} {s.dtype}{list(s.dims)}" for s in m.inputs),
            "outputs": ", ".join(f"{s.name} {s.dtype}{list(s.dims)}" for s in m.outputs),
            "parity max |diff|": f"{m.parity_max_abs_diff:.2e}",
        }
        for m in models
    ]
    return pd.DataFrame(rows).to_markdown(index=False)


def _formats(spec: UseCaseSpec) -> set[str]:
    """The export formats the use case's models need (the asset's kinds in the UI)."""
    problems = {stage.problem for stage in spec.model.values()} - {"sequence"}
    return {"onnx" if problem == "two_tower" else "lightgbm" for problem in problems}


def triton_repository_asset(spec: UseCaseSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey(layout.triton_repository_key(spec.name))

    @dg.asset(
        key=key,
        deps=[dg.AssetKey(layout.model_key(spec.name, m)) for m in spec.model],
        **asset_identity(spec, "serving"),
        kinds={"triton", *_formats(spec)},
        description=(
            f"Triton model repository of the {spec.name} champions: towers as ONNX (parity with"
            f" PyTorch <= {PARITY_TOLERANCE:g}), LightGBM as FIL text serving raw margins; a GPU"
            " variant (ONNX Runtime, FIL) and a CPU variant (Python backend, same files)."
        ),
    )
    def triton_repository(
        context: dg.AssetExecutionContext, mlflow: MLflowResource, home: HomeResource
    ) -> dg.MaterializeResult:
        champions = _champions(spec, mlflow)
        models = _export(champions)
        folder = home.layout.triton(spec.name)
        if folder.protocol not in ("", "file", "local"):
            raise dg.Failure(f"the Triton repository is written to a local home, not {folder}")
        final = Path(folder.path)
        with publishing(final) as staging:
            write_repository(models, staging)
        context.log.info(f"{len(models)} Triton models written to {final}")
        onnx = [m.parity_max_abs_diff for m in models if m.format == "onnx"]
        config = (final / "gpu" / models[0].name / CONFIG_FILE).read_text(encoding="utf-8")
        return dg.MaterializeResult(
            metadata=rounded_metadata(
                {
                    "models": dg.MetadataValue.md(_models_table(models)),
                    "versions": dg.MetadataValue.json(
                        {name: version for name, (version, _) in champions.items()}
                    ),
                    "triton_models": len(models),
                    "onnx_parity_max_abs_diff": float(max(onnx, default=0.0)),
                    "path": dg.MetadataValue.path(str(final)),
                    "gpu_repository": dg.MetadataValue.path(str(final / "gpu")),
                    "cpu_repository": dg.MetadataValue.path(str(final / "cpu")),
                    "skipped": dg.MetadataValue.json(
                        {
                            m: SEQUENCE_SKIPPED
                            for m, s in spec.model.items()
                            if s.problem == "sequence"
                        }
                    ),
                    "config_sample": dg.MetadataValue.md(
                        f"`{models[0].name}/config.pbtxt` (gpu)\n\n```\n{config}```"
                    ),
                }
            )
        )

    return triton_repository


# Why a multiclass classifier has no Triton model: the export serves one raw margin per row (the
# binary classifier's and rankers' booster output), a softmax booster has one per class, and the
# per-class calibration and review band live in the pyfunc; ``/score`` serves it in-process.
MULTICLASS_SKIPPED = (
    "not exported: a LightGBM multiclass booster has one margin per class and the FIL export"
    " (serving.triton.lightgbm_export) serves one; /score serves it with its calibration"
)


def triton_repository_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    """One ``<use case>/triton_repository`` asset for a use case with exported models, else
    none (multiclass classifiers are not exported: :data:`MULTICLASS_SKIPPED`)."""
    exported = {m: s for m, s in spec.model.items() if s.problem != "multiclass_classification"}
    if not exported:
        return []
    if len(exported) < len(spec.model):
        spec = spec.model_copy(update={"model": exported})
    return [triton_repository_asset(spec)]
