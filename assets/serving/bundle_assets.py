"""Asset factory for ``<use case>/serving_bundle``: what the service of a use case loads.

For every experiment arm (just ``champion`` without an experiment) it resolves each model's
registry alias to a version, takes those versions from MLflow, and writes them with the FAISS
index, the validated spec and the Feast config into ``<home>/serving/<use case>/bundle``
(``serving.bundle``). The folder is staged and swapped in only once complete and loadable, so a
failed build keeps the previous bundle and a running service never sees half of one.
"""

import shutil
import uuid

import dagster as dg

from assets.metadata import asset_identity
from assets.models.assets import model_key, registered_name
from configs.schema.usecase import UseCaseSpec
from resources.feature_store import FeatureStoreResource
from resources.home import HomeResource
from resources.mlflow_registry import MLflowResource
from serving.bundle import load_bundle, write_bundle
from serving.routing import Arm

CHAMPION = "champion"


def serving_bundle_key(spec: UseCaseSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "serving_bundle"])


def _arms(spec: UseCaseSpec, mlflow: MLflowResource) -> list[Arm]:
    """Each arm's version of every model: its alias, else the champion (an arm naming an alias
    a model lacks, e.g. ``challenger`` on a model trained once, serves that model's champion)."""
    wanted = (
        [(a.name, a.weight, a.model_alias) for a in spec.experiment.arms]
        if spec.experiment
        else [(CHAMPION, 1.0, CHAMPION)]
    )
    arms = []
    for name, weight, alias in wanted:
        versions = {}
        for model in spec.model:
            registered = registered_name(spec, model)
            version = (
                alias
                if alias.isdigit()
                else mlflow.version_by_alias(registered, alias)
                or mlflow.version_by_alias(registered, CHAMPION)
            )
            if version is None:
                raise dg.Failure(
                    f"{spec.name}: model {model!r} ({registered}) has no {alias!r} or"
                    " champion version in the registry; materialize the model assets first"
                )
            versions[model] = version
        arms.append(Arm(name, weight, versions))
    return arms


def serving_bundle_asset(spec: UseCaseSpec) -> dg.AssetsDefinition | None:
    if spec.serving is None or not spec.model:
        return None
    retrievers = [m for m, s in spec.model.items() if s.problem == "two_tower"]
    deps = [model_key(spec, m) for m in spec.model]
    deps += [dg.AssetKey([spec.name, "indices", m]) for m in retrievers]
    if spec.features:
        deps.append(dg.AssetKey([spec.name, "feature_store"]))

    @dg.asset(
        key=serving_bundle_key(spec),
        deps=deps,
        **asset_identity(spec, "serving"),
        kinds={"bentoml", "mlflow"},
        description=(
            f"Everything the {spec.serving.endpoint!r} service loads: each experiment arm's"
            " registry versions of every model, the FAISS index, the spec and the Feast config."
        ),
    )
    def serving_bundle(
        context: dg.AssetExecutionContext,
        home: HomeResource,
        mlflow: MLflowResource,
        feature_store: FeatureStoreResource,
    ) -> dg.MaterializeResult:
        arms = _arms(spec, mlflow)
        models: dict[str, dict[str, object]] = {}
        for arm in arms:
            for model, version in arm.versions.items():
                if version not in models.setdefault(model, {}):
                    loaded = mlflow.load_model(registered_name(spec, model), version)
                    models[model][version] = loaded.unwrap_python_model().model
        indices = {}
        for model in retrievers:
            folder = home.folder("indices", spec.name) / model
            version = mlflow.latest_version(registered_name(spec, model))
            if (folder / "index.json").exists() and version is not None:
                indices[model] = (version, str(folder))  # built from the latest run's embeddings
        config = feature_store.repo_path(spec.name) / "feature_store.yaml"
        base = home.folder("serving", spec.name)
        staging = base / f".bundle-{uuid.uuid4().hex}"
        try:
            manifest = write_bundle(
                staging,
                spec,
                arms,
                models,
                {m: registered_name(spec, m) for m in spec.model},
                indices,
                config if config.exists() else None,
                salt=(spec.experiment.salt or spec.experiment.name) if spec.experiment else "",
                unit=spec.experiment.unit if spec.experiment else None,
            )
            load_bundle(staging)  # must load before it replaces the served one
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        final = base / "bundle"
        retired = base / f".retired-{uuid.uuid4().hex}"
        if final.exists():
            final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
        context.log.info(f"serving bundle written to {final}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(final)),
                "endpoint": spec.serving.endpoint,
                "arms": dg.MetadataValue.json(
                    [{"name": a.name, "weight": a.weight, "versions": a.versions} for a in arms]
                ),
                "indexed_versions": dg.MetadataValue.json(manifest.index_versions),
            }
        )

    return serving_bundle
