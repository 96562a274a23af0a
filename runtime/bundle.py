"""The serving bundle: everything a service loads, in one folder, with no MLflow or Dagster needed.

Written by the ``<use case>/serving_bundle`` asset from the registry, packed into the Bento by the
``<use case>/bento`` asset, and read by the services (``serving.service``) at start-up::

    manifest.json        use case, endpoint, model versions per experiment arm, files below
    spec.json            the validated use-case spec (the YAML as the pipeline read it)
    models/<m>-v<n>.pkl  each served model version (objects from ``runtime.models``)
    indices/<m>/         the FAISS index of each retriever, with its id map
    feature_repo/        ``feature_store.yaml`` of the use case's Feast repo (the online store)

Why a folder and not registry look-ups at start-up: a Bento must run where the registry is not
reachable, and the versions it serves must be the ones it was built and tagged with. The online
store is the exception: features must stay live, so the Feast config points at the store the
pipeline materializes into (``PLAYBOOK_FEATURE_REPO`` overrides it in a deployment).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from configs.schema.usecase import UseCaseSpec
from runtime import legacy
from runtime.ann_index import BuiltIndex
from runtime.routing import Arm

MANIFEST = "manifest.json"
SPEC = "spec.json"
FEATURE_REPO = "feature_repo"
FEATURE_REPO_ENV = "PLAYBOOK_FEATURE_REPO"


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds; ``arms`` always has at least one arm (``champion`` without an
    experiment), each mapping every model to the registry version it serves."""

    use_case: str
    endpoint: str
    arms: list[dict[str, Any]]
    salt: str
    unit: str | None
    models: dict[str, dict[str, str]]  # model -> version -> file under models/
    registered: dict[str, str]  # model -> registered model name
    indices: dict[str, str] = field(default_factory=dict)  # model -> folder under indices/
    index_versions: dict[str, str] = field(default_factory=dict)  # model -> indexed version
    created_at: str = ""

    def arm_objects(self) -> list[Arm]:
        return [Arm(a["name"], float(a["weight"]), dict(a["versions"])) for a in self.arms]

    def tag_labels(self) -> dict[str, str]:
        """``<model>_<arm>: v<version>`` for every arm: the labels a Bento is tagged with."""
        return {
            f"{model}_{arm['name']}": f"v{version}"
            for arm in self.arms
            for model, version in arm["versions"].items()
        }


def write_bundle(
    folder: str | Path,
    spec: UseCaseSpec,
    arms: list[Arm],
    models: Mapping[str, Mapping[str, Any]],
    registered: Mapping[str, str],
    indices: Mapping[str, tuple[str, str | Path]],
    feature_store_yaml: str | Path | None,
    salt: str,
    unit: str | None,
) -> Manifest:
    """Write a bundle into ``folder`` (which must not exist yet: callers stage and swap)."""
    if spec.serving is None:
        raise ValueError(f"{spec.name}: a serving bundle needs a serving section")
    root = Path(folder)
    (root / "models").mkdir(parents=True)
    files: dict[str, dict[str, str]] = {}
    for model, versions in models.items():
        for version, obj in versions.items():
            name = f"models/{model}-v{version}.pkl"
            with open(root / name, "wb") as handle:
                pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
            files.setdefault(model, {})[str(version)] = name
    index_dirs, index_versions = {}, {}
    for model, (version, source) in indices.items():
        shutil.copytree(source, root / "indices" / model)
        index_dirs[model] = f"indices/{model}"
        index_versions[model] = str(version)
    if feature_store_yaml is not None:
        (root / FEATURE_REPO).mkdir()
        shutil.copy2(feature_store_yaml, root / FEATURE_REPO / "feature_store.yaml")
    (root / SPEC).write_text(spec.model_dump_json(indent=1), encoding="utf-8")
    manifest = Manifest(
        use_case=spec.name,
        endpoint=spec.serving.endpoint,
        arms=[asdict(arm) for arm in arms],
        salt=salt,
        unit=unit,
        models=files,
        registered=dict(registered),
        indices=index_dirs,
        index_versions=index_versions,
        created_at=datetime.now(UTC).isoformat(),
    )
    (root / MANIFEST).write_text(json.dumps(asdict(manifest), indent=1), encoding="utf-8")
    return manifest


@dataclass
class Bundle:
    """A loaded bundle: spec, manifest, model objects by (model, version), indices by model."""

    path: Path
    spec: UseCaseSpec
    manifest: Manifest
    models: dict[tuple[str, str], Any]
    indices: dict[str, BuiltIndex]

    @property
    def feature_repo(self) -> Path | None:
        """The Feast repo to read online features from (``PLAYBOOK_FEATURE_REPO`` wins)."""
        override = os.environ.get(FEATURE_REPO_ENV)
        if override:
            return Path(override)
        repo = self.path / FEATURE_REPO
        return repo if (repo / "feature_store.yaml").exists() else None

    def model(self, name: str, version: str) -> Any:
        return self.models[(name, version)]


def load_bundle(folder: str | Path) -> Bundle:
    """Read a bundle written by :func:`write_bundle`; errors name the missing file."""
    root = Path(folder)
    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        raise FileNotFoundError(
            f"{manifest_file} not found: materialize the use case's serving_bundle asset first"
        )
    manifest = Manifest(**json.loads(manifest_file.read_text(encoding="utf-8")))
    spec = UseCaseSpec.model_validate_json((root / SPEC).read_text(encoding="utf-8"))
    models = {}
    legacy.install()  # bundles written before the runtime layer name serving.models
    for model, versions in manifest.models.items():
        for version, name in versions.items():
            with open(root / name, "rb") as handle:
                models[(model, version)] = pickle.load(handle)  # noqa: S301 - our own files
    indices = {model: BuiltIndex.load(root / sub) for model, sub in manifest.indices.items()}
    return Bundle(root, spec, manifest, models, indices)
