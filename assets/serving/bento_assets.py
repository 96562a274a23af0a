"""Asset factory for ``<use case>/bento``: ``bentoml build`` of the use case's service.

The build context is assembled in a temporary folder: the ``serving``, ``runtime`` and
``configs`` packages, whole, and the serving bundle, so the Bento runs with no access to this
repository, the registry or Dagster. The Bento is named ``playbook-<use case>``, lives in the BentoML store under ``<home>/bentoml``
(``BENTOML_HOME``) and is labelled with every model version it packs, per experiment arm. The
build runs the real ``bentoml build`` CLI in a subprocess, with package versions pinned to the
ones installed here and no lock step (no network).

A Bento holds no host path and no secret: the bundle names the Feast repo relative to the home,
and the build fails if the bundle holds the home's absolute path anyway. Where the service runs,
it finds the home (the one holding it, else ``PLAYBOOK_HOME``) and reads the online store's
settings from the environment (``PLAYBOOK_REDIS`` for Redis), as :mod:`runtime.bundle` says.

:func:`build_bento` is also what the SLO check builds its candidate Bento with, into a store of
its own, so the Bento it measures is built exactly as the one deployed.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import dagster as dg
import yaml

import configs
import runtime
import serving
from assets.metadata import asset_identity, rounded_metadata
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from runtime import layout
from runtime.bundle import Bundle, load_bundle
from serving.service import BUNDLE_ENV, SERVICES

# What the service imports at run time, pinned to this environment's versions.
RUNTIME_PACKAGES = (
    "bentoml",
    "pandas",
    "numpy",
    "pyarrow",
    "pydantic",
    "pyyaml",
    "scikit-learn",
    "lightgbm",
    "torch",
    "faiss-cpu",
    "feast",
    "orjson",
)
# The packages a service imports, packed whole: the service, the shared runtime, the schema.
SERVED_PACKAGES = (serving, runtime, configs)
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def bentoml_home(home: HomeResource) -> Path:
    return Path(str(home.created(home.layout.bentoml())))


def _pinned() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def _build_context(target: Path, bundle: Path) -> None:
    """Copy the served packages, whole, and the bundle into a fresh build folder."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for package in SERVED_PACKAGES:
        shutil.copytree(Path(package.__file__).parent, target / package.__name__, ignore=_IGNORE)
    shutil.copytree(bundle, target / "bundle")


def _check_no_home_path(bundle: Path, home: Path) -> None:
    """Fail if a file of ``bundle`` names ``home`` by its absolute path: a Bento is built to run
    elsewhere, and a host path in it would read or write this machine's home."""
    needle = str(home).encode()
    found = [
        str(path.relative_to(bundle))
        for path in sorted(bundle.rglob("*"))
        if path.is_file() and needle in path.read_bytes()
    ]
    if found:
        raise dg.Failure(f"the serving bundle names the home {home} in {', '.join(found)}")


def _bentofile(spec: UseCaseSpec, service_class: str, bundle: Bundle) -> dict:
    labels = {"use_case": spec.name, "endpoint": spec.serving.endpoint}
    labels.update(bundle.manifest.tag_labels())
    return {
        "service": f"serving.service:{service_class}",
        "name": f"playbook-{spec.name}",
        "description": spec.description or f"Playbook service of {spec.name}",
        "labels": labels,
        "include": [*(f"{p.__name__}/**/*.py" for p in SERVED_PACKAGES), "bundle/**"],
        "python": {"packages": _pinned(), "lock_packages": False},
        "envs": [{"name": BUNDLE_ENV, "value": "bundle"}],
    }


def _bentoml_build(spec: UseCaseSpec, build: Path, store: Path) -> str:
    """Run the ``bentoml build`` CLI on ``build`` into the store at ``store``; the new tag."""
    env = {**os.environ, "BENTOML_HOME": str(store), "BENTOML_DO_NOT_TRACK": "True"}
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(build), "--output", "tag"],
        cwd=build,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise dg.Failure(
            f"bentoml build failed for {spec.name} (exit {result.returncode})",
            metadata={"stderr": dg.MetadataValue.text(result.stderr[-4000:])},
        )
    return result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


def build_bento(
    spec: UseCaseSpec, bundle_folder: Path, store: Path, home: Path
) -> tuple[str, dict]:
    """``bentoml build`` of the bundle in ``bundle_folder`` into the BentoML store ``store``;
    the new tag and the bentofile it was built from. Fails if the bundle names ``home``."""
    if spec.serving is None:
        raise dg.Failure(f"{spec.name}: a Bento serves the serving section, and there is none")
    bundle = load_bundle(bundle_folder)
    _check_no_home_path(bundle.path, home)
    bentofile = _bentofile(spec, SERVICES[spec.serving.endpoint].inner.__name__, bundle)
    # BentoML refuses a build context under a hidden folder (the default home is
    # ./.playbook), so the context is assembled in a temporary folder
    with tempfile.TemporaryDirectory(prefix=f"playbook-bento-{spec.name}-") as scratch:
        build = Path(scratch) / "build"
        _build_context(build, bundle.path)
        (build / "bentofile.yaml").write_text(yaml.safe_dump(bentofile), encoding="utf-8")
        return _bentoml_build(spec, build, store), bentofile


def bento_asset(spec: UseCaseSpec) -> dg.AssetsDefinition | None:
    if spec.serving is None or not spec.model:
        return None
    service = SERVICES[spec.serving.endpoint].inner.__name__

    @dg.asset(
        key=dg.AssetKey(layout.bento_key(spec.name)),
        deps=[dg.AssetKey(layout.serving_bundle_key(spec.name))],
        **asset_identity(spec, "serving"),
        kinds={"bentoml"},
        description=(
            f"Deployable Bento 'playbook-{spec.name}' of {service}"
            f" (POST /{spec.serving.endpoint}, /health), labelled with the model versions it packs."
        ),
    )
    def bento(context: dg.AssetExecutionContext, home: HomeResource) -> dg.MaterializeResult:
        store = bentoml_home(home)
        tag, bentofile = build_bento(
            spec, Path(str(home.layout.bundle(spec.name))), store, Path(str(home.layout.root))
        )
        context.log.info(f"built Bento {tag}")
        return dg.MaterializeResult(
            metadata=rounded_metadata(
                {
                    "tag": tag,
                    "bentoml_home": dg.MetadataValue.path(str(store)),
                    "labels": dg.MetadataValue.json(bentofile["labels"]),
                    "serve": f"BENTOML_HOME={store} bentoml serve {tag}",
                    "containerize": f"BENTOML_HOME={store} bentoml containerize {tag}",
                    "packages": dg.MetadataValue.json(_pinned()),
                }
            )
        )

    return bento
