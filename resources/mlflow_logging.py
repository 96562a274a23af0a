"""The MLflow calls behind a training run, as plain functions over an ``MlflowClient``.

:class:`resources.mlflow_resource.MLflowResource` strings these together (log, register, verify,
undo on failure); each one does a single thing MLflow needs done a particular way here: the
store opened with its Default experiment under the home, params and metrics in one batch, plots
under stable names, the model as a pyfunc with a signature and pinned requirements, a registered
version loaded back before it counts, and MLflow's chatter on every call muted without hiding its
real warnings. The native flavours and the dataset input have their own modules,
:mod:`resources.mlflow_native` and :mod:`resources.mlflow_dataset`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.store.tracking.dbmodels.models import SqlExperiment
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from runtime import legacy
from runtime.promotion import GATE_TAG_PREFIX, GateVerdict
from runtime.pyfunc import PredictWrapper, pip_requirements

logger = logging.getLogger(__name__)

MODEL_NAME = "model"
# Loggers that announce schema migrations at INFO on a fresh database.
MIGRATION_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "alembic")
# Notices MLflow logs on every log_model call; nothing to act on here.
NOTICES = ("Passing a Python object as `python_model`", "Validating input example")
NOT_FOUND = {ErrorCode.Name(RESOURCE_DOES_NOT_EXIST), ErrorCode.Name(INVALID_PARAMETER_VALUE)}


def open_store(tracking_uri: str, artifact_root: Path | None) -> None:
    """Create or migrate a database store with its ``Default`` experiment under ``artifact_root``.

    MLflow adds experiment 0, ``Default``, when it first opens an empty database, with its
    artifacts at ``<the store's artifact root>/0``. A client has no artifact root to give, so a
    store first opened by a client puts Default under ``./mlruns``, resolved against the working
    directory of that moment. Opening it first as ``SqlAlchemyStore(uri, root)``, what
    ``mlflow server --default-artifact-root`` does, puts Default at ``<root>/0``; MLflow caches
    the engine per URI, so this costs one schema check.

    A store made before this (Default under some old ``mlruns``) has Default moved to
    ``<root>/0`` while Default holds nothing (no run, no logged model), the only state in which
    no artifact can be left behind; MLflow has no call to move an experiment, so this one update
    goes through the store's own session and table model. Otherwise Default stays and a warning
    says where it points. Nothing else: a tracking server decides its own locations.
    """
    if artifact_root is None or urlparse(tracking_uri).scheme.split("+")[0] not in DATABASE_ENGINES:
        return
    store = SqlAlchemyStore(tracking_uri, artifact_root.as_uri())
    default = store.get_experiment(SqlAlchemyStore.DEFAULT_EXPERIMENT_ID)
    wanted = f"{artifact_root.as_uri()}/{SqlAlchemyStore.DEFAULT_EXPERIMENT_ID}"
    if default.artifact_location.startswith((artifact_root.as_uri(), f"{artifact_root}/")):
        return
    empty = not store.search_runs(
        [default.experiment_id], None, ViewType.ALL, max_results=1
    ) and not store.search_logged_models([default.experiment_id], max_results=1)
    if not empty:
        logger.warning(
            "MLflow's Default experiment keeps its artifacts at %s, outside %s, and holds runs:"
            " left as it is (Playbook logs nothing there)",
            default.artifact_location,
            artifact_root,
        )
        return
    with store.ManagedSessionMaker() as session:
        session.query(SqlExperiment).filter(
            SqlExperiment.experiment_id == int(default.experiment_id)
        ).update({SqlExperiment.artifact_location: wanted})
    logger.info(
        "MLflow's empty Default experiment moved from %s to %s", default.artifact_location, wanted
    )


def tag_verdict(
    client: MlflowClient,
    name: str,
    version: str,
    verdict: GateVerdict,
    higher_is_better: bool,
    margin: float,
) -> None:
    """The gate's verdict as ``playbook.gate.*`` tags on the version it judged."""
    values = {
        "promote": verdict.promote,
        "reason": verdict.reason,
        "delta": verdict.delta,
        "challenger_metric": verdict.challenger_metric,
        "champion_metric": verdict.champion_metric,
        "champion_version": verdict.champion_version,
        "higher_is_better": higher_is_better,
        "margin": margin,
    }
    for key, value in values.items():
        client.set_model_version_tag(name, version, GATE_TAG_PREFIX + key, tag_text(value))


def tag_text(value: Any) -> str:
    """Tag text: booleans as ``true``/``false`` (as MLflow's UI filters them), None as empty."""
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def log_run_data(
    client: MlflowClient,
    run_id: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: Mapping[str, str | os.PathLike[str]],
) -> None:
    """Params, metrics and plots in one batch each (one DB round trip, not one per value)."""
    client.log_batch(
        run_id,
        metrics=[_metric(key, value) for key, value in metrics.items()],
        params=[mlflow.entities.Param(key, str(value)) for key, value in params.items()],
        synchronous=True,
    )
    if artifacts:
        _log_plots(client, run_id, artifacts)


def _metric(key: str, value: float) -> mlflow.entities.Metric:
    return mlflow.entities.Metric(key, float(value), int(time.time() * 1000), 0)


def _log_plots(
    client: MlflowClient, run_id: str, artifacts: Mapping[str, str | os.PathLike[str]]
) -> None:
    """Plots under ``plots/<key><suffix>``: the key names the file, whatever the source was."""
    with tempfile.TemporaryDirectory() as tmp:
        for key, source in artifacts.items():
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"artifact {key!r}: {path} is not a file")
            shutil.copyfile(path, Path(tmp) / f"{safe_name(key)}{path.suffix}")
        client.log_artifacts(run_id, tmp, artifact_path="plots")


def log_model(
    model: Any, input_example: pd.DataFrame, metadata: Mapping[str, Any] | None = None
) -> ModelInfo:
    """Log ``model`` as pyfunc in the active run with a signature (and ``metadata`` in MLmodel).

    The signature comes from the example and the model's own output on it, so serving rejects
    frames with missing or mistyped columns instead of predicting garbage. MLflow's notices on
    every call (cloudpickle caution, integer-column hint, "validating input example") are
    dropped; its real warnings are kept.
    """
    output = model.predict(input_example)
    with warnings.catch_warnings(), dropping(logging.getLogger("mlflow.pyfunc"), NOTICES):
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=PredictWrapper(model),
            signature=infer_signature(input_example, output),
            input_example=input_example,
            pip_requirements=pip_requirements(model),
            metadata=dict(metadata) if metadata else None,
        )


def verify_model(model_uri: str, input_example: pd.DataFrame) -> None:
    """Load the registered version back and predict on the example.

    Catches what logging cannot: a model that pickles but does not unpickle (e.g. it needs a
    module or file missing at load time). Registered versions must be loadable by serving.
    """
    legacy.install()
    mlflow.pyfunc.load_model(model_uri).predict(input_example)


def discard_registration(
    client: MlflowClient, name: str, version: str | None, existed: bool
) -> None:
    """Undo a registration; errors here are logged, the original one is what gets raised."""
    try:
        if version is not None:
            client.delete_model_version(name, version)
        if not existed and registered_model_exists(client, name):
            if not client.search_model_versions(f"name = '{name}'", max_results=1):
                client.delete_registered_model(name)
    except Exception:
        logger.exception("could not undo the registration of %s version %s", name, version)


def registered_model_exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code in NOT_FOUND:
            return False
        raise
    return True


def model_uri(name: str, alias_or_version: str | int) -> str:
    ref = str(alias_or_version)
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def safe_name(name: str) -> str:
    """A file-name-safe version of an experiment or artifact name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "default"


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


@contextmanager
def dropping(log: logging.Logger, prefixes: tuple[str, ...]) -> Iterator[None]:
    """Drop records of ``log`` whose message starts with one of ``prefixes``."""
    dropper = _DropMessages(prefixes)
    log.addFilter(dropper)
    try:
        yield
    finally:
        log.removeFilter(dropper)


@contextmanager
def quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Raise these loggers to WARNING for the duration."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
