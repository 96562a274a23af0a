"""The serving bundle: everything a service loads, in one folder, with no MLflow or Dagster needed.

Written by the ``<use case>/serving_bundle`` asset from the registry, packed into the Bento by the
``<use case>/bento`` asset, and read by the services (``serving.service``) at start-up::

    manifest.json        use case, endpoint, model versions per experiment arm, files below
    spec.json            the validated use-case spec (the YAML as the pipeline read it)
    models/<m>-v<n>.pkl  each served model version (objects from ``runtime.models``)
    indices/<m>/         the FAISS index of each retriever, with its id map

Why a folder and not registry look-ups at start-up: a Bento must run where the registry is not
reachable, and the versions it serves must be the ones it was built and tagged with. The online
store is the exception: features must stay live, so the service reads the Feast repo the
pipeline materializes into. The manifest names it relative to the home (``feast/<use case>``),
never by a host path, and :attr:`Bundle.feature_repo` finds it when the service starts:
``PLAYBOOK_FEATURE_REPO`` (a Feast repo folder) if set, else in the home that holds the bundle
(a bundle or Bento store inside a home), else in ``$PLAYBOOK_HOME`` (``./.playbook``): a
containerised Bento is given the home mounted and ``PLAYBOOK_HOME`` pointing at it. The repo's
own settings from the environment (a Redis connection string: ``PLAYBOOK_REDIS``) are checked
then, so a missing one is named at start-up (:mod:`runtime.feast_settings`). Bundles written
before carry a ``feature_repo/feature_store.yaml`` of their own, which is still read.
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
from runtime import feast_settings, legacy
from runtime.ann_index import BuiltIndex
from runtime.layout import home_location
from runtime.relocate import recorded, relocate_feast_repo
from runtime.routing import Arm

MANIFEST = "manifest.json"
SPEC = "spec.json"
FEATURE_REPO = "feature_repo"  # a bundle's own copy of feature_store.yaml, in older bundles
FEATURE_REPO_ENV = "PLAYBOOK_FEATURE_REPO"
FEATURE_STORE_YAML = "feature_store.yaml"


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
    feature_repo: str = ""  # the Feast repo folder, relative to the home ("feast/<use case>")

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
    feature_repo: str | None,
    salt: str,
    unit: str | None,
) -> Manifest:
    """Write a bundle into ``folder`` (which must not exist yet: callers stage and swap).

    ``feature_repo`` is the use case's Feast repo folder relative to the home (``feast/fraud``),
    or None without one; an absolute path is refused, as no host path may enter a bundle.
    """
    if feature_repo is not None and (Path(feature_repo).is_absolute() or ".." in feature_repo):
        raise ValueError(f"feature_repo {feature_repo!r}: expected a folder relative to the home")
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
        feature_repo=Path(feature_repo).as_posix() if feature_repo else "",
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
        """The Feast repo to read online features from, None for a use case without one.

        Found as the module docstring says and checked: a repo that is not where the manifest
        says, or that reads an unset variable, raises an error naming what to set. A repo in a
        home that was moved or copied is re-rooted first (:mod:`runtime.relocate`).
        """
        owner = self.manifest.use_case
        override = os.environ.get(FEATURE_REPO_ENV)
        if override:
            repo = Path(override)
            if not (repo / FEATURE_STORE_YAML).is_file():
                raise FileNotFoundError(
                    f"{owner}: {FEATURE_REPO_ENV}={override} has no {FEATURE_STORE_YAML}"
                )
        elif self.manifest.feature_repo:
            home = self._feature_home()
            repo = home / self.manifest.feature_repo
            try:
                relocate_feast_repo(repo, home)
            except OSError as error:  # e.g. a home mounted read-only somewhere else
                raise RuntimeError(
                    f"{owner}: the Feast repo {repo} was written in the home {recorded(repo)} and"
                    f" cannot be re-rooted here ({error}): run `python -m runtime.relocate"
                    f" {home}` where the home is writable, or mount it at its old path"
                ) from error
        elif (self.path / FEATURE_REPO / FEATURE_STORE_YAML).is_file():
            repo = self.path / FEATURE_REPO  # a bundle written before: its own copy
        else:
            return None
        feast_settings.check(repo, owner)
        return repo

    def _feature_home(self) -> Path:
        """The home holding the manifest's Feast repo: the nearest folder above the bundle
        that has it, else ``$PLAYBOOK_HOME`` (``./.playbook``)."""
        wanted = Path(self.manifest.feature_repo) / FEATURE_STORE_YAML
        above = self.path.resolve().parents
        found = next((folder for folder in above if (folder / wanted).is_file()), None)
        if found is not None:
            return found
        home = Path(home_location())
        if (home / wanted).is_file():
            return home
        raise FileNotFoundError(
            f"{self.manifest.use_case}: the service reads online features from the Feast repo"
            f" {self.manifest.feature_repo}/ of a Playbook home, and found none above the"
            f" bundle ({self.path}) nor in the home {home} ($PLAYBOOK_HOME, else ./.playbook):"
            f" set PLAYBOOK_HOME to the home (mounted, for a container), or {FEATURE_REPO_ENV}"
            " to a Feast repo folder"
        )

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
