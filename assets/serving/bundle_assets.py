"""Asset factory for ``<use case>/serving_bundle``: what the service of a use case loads.

For every experiment arm (just ``champion`` without an experiment) it resolves each model's
registry alias to a version, takes those versions from MLflow, and writes them with the FAISS
index, the validated spec and where the Feast repo is in the home (``feast/<use case>``, never a
host path: the service finds the home when it starts) into ``<home>/serving/<use case>/bundle``
(``runtime.bundle``). The folder is published with ``runtime.publish``: staged, loaded back, and
swapped in only then, so a failed build keeps the previous bundle and a running service never
sees half of one.

With an ``slo`` section the asset also waits for ``<use case>/slo_check``, which builds a
candidate bundle with the same function (:func:`write_serving_bundle`), the versions awaiting the
SLO standing in for ``champion``, into its own folder; this asset then builds from ``champion``
as the check left it.
"""

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from assets.metadata import asset_identity, rounded_metadata
from configs.schema.model_stage import RETRIEVERS
from configs.schema.usecase import UseCaseSpec
from resources.feature_store import FeatureStoreResource
from resources.home import HomeResource
from resources.mlflow_resource import MLflowResource
from runtime import layout
from runtime.bundle import Manifest, load_bundle, write_bundle
from runtime.publish import publishing
from runtime.routing import Arm


def _arms(
    spec: UseCaseSpec, mlflow: MLflowResource, champions: Mapping[str, str] | None = None
) -> list[Arm]:
    """Each arm's version of every model: its alias, else the champion (an arm naming an alias
    a model lacks, e.g. ``challenger`` on a model trained once, serves that model's champion).
    ``champions`` (model -> version) stand in for the registry's ``champion`` alias."""
    wanted = (
        [(a.name, a.weight, a.model_alias) for a in spec.experiment.arms]
        if spec.experiment
        else [(layout.CHAMPION, 1.0, layout.CHAMPION)]
    )
    champions = champions or {}

    def resolve(registered: str, model: str, alias: str) -> str | None:
        if alias == layout.CHAMPION and model in champions:
            return champions[model]
        return mlflow.version_by_alias(registered, alias)

    arms = []
    for name, weight, alias in wanted:
        versions = {}
        for model in spec.model:
            registered = layout.registered_model_name(spec.name, model)
            version = (
                alias
                if alias.isdigit()
                else resolve(registered, model, alias)
                or resolve(registered, model, layout.CHAMPION)
            )
            if version is None:
                raise dg.Failure(
                    f"{spec.name}: model {model!r} ({registered}) has no {alias!r} or"
                    " champion version in the registry; materialize the model assets first"
                )
            versions[model] = version
        arms.append(Arm(name, weight, versions))
    return arms


def _feature_repo(
    spec: UseCaseSpec, home: HomeResource, feature_store: FeatureStoreResource
) -> str | None:
    """The use case's Feast repo folder relative to the home, None without a repo."""
    if not spec.features:
        return None
    repo = feature_store.repo_path(spec.name)
    if not (repo / "feature_store.yaml").exists():
        return None
    root = Path(str(home.layout.root)).resolve()
    if not repo.is_relative_to(root):
        raise dg.Failure(
            f"{spec.name}: the Feast repo {repo} is outside the home {root}; a bundle names it"
            " relative to the home (set the feature store's root inside it, or serve with"
            " PLAYBOOK_FEATURE_REPO)"
        )
    return repo.relative_to(root).as_posix()


def write_serving_bundle(
    spec: UseCaseSpec,
    home: HomeResource,
    mlflow: MLflowResource,
    feature_store: FeatureStoreResource,
    final: Path,
    champions: Mapping[str, str] | None = None,
) -> tuple[list[Arm], Manifest]:
    """Write the bundle of ``spec`` into ``final``, published only once it loads back.

    Every arm's versions come from the registry, ``champions`` (model -> version) standing in
    for the ``champion`` alias where given; each retriever's FAISS index is packed when it was
    built from the latest version's embeddings.
    """
    arms = _arms(spec, mlflow, champions)
    models: dict[str, dict[str, object]] = {}
    for arm in arms:
        for model, version in arm.versions.items():
            if version not in models.setdefault(model, {}):
                loaded = mlflow.load_model(layout.registered_model_name(spec.name, model), version)
                models[model][version] = loaded.unwrap_python_model().model
    indices = {}
    for model, stage in spec.model.items():
        if stage.problem not in RETRIEVERS:
            continue
        folder = home.layout.index(spec.name, model)
        version = mlflow.latest_version(layout.registered_model_name(spec.name, model))
        if (folder / "index.json").exists() and version is not None:
            indices[model] = (version, str(folder))  # built from the latest run's embeddings
    feature_repo = _feature_repo(spec, home, feature_store)
    # must load before it replaces the served one
    with publishing(final, verify=load_bundle) as staging:
        manifest = write_bundle(
            staging,
            spec,
            arms,
            models,
            {m: layout.registered_model_name(spec.name, m) for m in spec.model},
            indices,
            feature_repo,
            salt=(spec.experiment.salt or spec.experiment.name) if spec.experiment else "",
            unit=spec.experiment.unit if spec.experiment else None,
        )
    return arms, manifest


def serving_bundle_asset(
    spec: UseCaseSpec, slo_check: dg.AssetKey | None = None
) -> dg.AssetsDefinition | None:
    """The bundle asset; ``slo_check`` is the SLO check's key when the use case has one."""
    if spec.serving is None or not spec.model:
        return None
    retrievers = [m for m, s in spec.model.items() if s.problem in RETRIEVERS]
    deps = [dg.AssetKey(layout.model_key(spec.name, m)) for m in spec.model]
    deps += [dg.AssetKey(layout.index_key(spec.name, m)) for m in retrievers]
    if spec.features:
        deps.append(dg.AssetKey(layout.feature_store_key(spec.name)))
    if slo_check is not None:
        deps.append(slo_check)

    @dg.asset(
        key=dg.AssetKey(layout.serving_bundle_key(spec.name)),
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
        final = Path(str(home.layout.bundle(spec.name)))
        arms, manifest = write_serving_bundle(spec, home, mlflow, feature_store, final)
        context.log.info(f"serving bundle written to {final}")
        return dg.MaterializeResult(
            metadata=rounded_metadata(
                {
                    "path": dg.MetadataValue.path(str(final)),
                    "endpoint": spec.serving.endpoint,
                    "arms": dg.MetadataValue.json(
                        [{"name": a.name, "weight": a.weight, "versions": a.versions} for a in arms]
                    ),
                    "indexed_versions": dg.MetadataValue.json(manifest.index_versions),
                }
            )
        )

    return serving_bundle
