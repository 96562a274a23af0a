"""MLflow tracking and model registry for trained models: log, register, alias, gate.

Training assets hand :class:`MLflowResource` a fitted model (any picklable object with
``predict(DataFrame)``) and get back a :class:`RegisteredVersion`. The resource owns everything
MLflow:

* where it keeps state: by default a SQLite store at ``<home>/mlflow/mlflow.db`` with artifacts
  under ``<home>/mlflow/artifacts/<experiment>`` (``Default`` too), never ``./mlruns``;
* logging a run atomically: params, metrics, lineage tags, plots, the training set as a dataset
  input (:mod:`resources.mlflow_dataset`), the model as an ``mlflow.pyfunc`` model with a
  signature and its boosters or towers in MLflow's own flavours (:mod:`resources.mlflow_native`);
  if anything fails the run ends ``FAILED`` and the model version it registered, if any, is
  deleted, so the registry never holds a model without a finished run behind it;
* aliases (``champion``, ``challenger``) rather than the deprecated stages;
* the promotion gate: :func:`runtime.promotion.promotion_gate` is the pure decision, and
  :meth:`MLflowResource.run_gate` evaluates challenger and champion on the same data, moves
  ``champion`` only on a pass (:meth:`MLflowResource.promote`, which tags it with the version it
  replaced, ``playbook.previous_champion``); with an SLO to meet, a pass leaves the version
  ``challenger``, tagged ``playbook.awaiting_slo``, for the SLO check to promote
  (:mod:`resources.mlflow_slo` keeps that check's verdict on the version and its run);
* rollback: :meth:`MLflowResource.rollback` moves ``champion`` back to an earlier version and
  records the event as tags on both versions and on the registered model, and as an MLflow run
  (:mod:`resources.mlflow_rollback`).

MLflow's fluent logging (``log_model``, ``register_model``) reads a process-wide tracking URI, so
those calls run inside :func:`_using`, which sets this resource's URIs under a lock and restores
the previous ones afterwards.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.telemetry import set_telemetry_client
from pydantic import PrivateAttr

from resources import mlflow_dataset, mlflow_logging, mlflow_native
from resources.home import playbook_home
from resources.mlflow_rollback import roll_back
from runtime.layout import CHALLENGER, CHAMPION, HomeLayout
from runtime.promotion import (
    AWAITING_SLO_TAG,
    PREVIOUS_CHAMPION_TAG,
    GateVerdict,
    RollbackEvent,
    promotion_gate,
)
from runtime.relocate import relocate_mlflow

# mlflow may have been imported before resources/__init__ set the switch: drop a started client.
set_telemetry_client()

logger = logging.getLogger(__name__)

REMOTE_SCHEMES = ("http://", "https://", "databricks")
_URI_LOCK = threading.RLock()


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version created by :meth:`MLflowResource.log_training_run`."""

    name: str
    version: str
    run_id: str
    model_uri: str  # models:/<name>/<version>, loadable by mlflow.pyfunc.load_model
    run_url: str | None = None  # only for a tracking server with a UI
    native_model_uris: dict[str, str] = field(default_factory=dict)  # part -> models:/<id>


class MLflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry (default: SQLite at ``<home>/mlflow/mlflow.db``).

    ``home`` defaults to :func:`resources.home.playbook_home`. ``artifact_root`` defaults to
    ``<home>/mlflow/artifacts`` unless the tracking URI is a server, which then decides.
    """

    home: str | None = None
    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_root: str | None = None

    _ready: bool = PrivateAttr(default=False)

    # -- locations ---------------------------------------------------------------------------

    def _folder(self) -> Path:
        home = playbook_home(self.home)
        if home.protocol not in ("", "file", "local"):
            raise ValueError(f"home {home} is not local: set tracking_uri to an MLflow server")
        return Path(str(HomeLayout(home).mlflow()))

    def resolved_tracking_uri(self) -> str:
        """The tracking URI in use (the default SQLite file's folder is created)."""
        if self.tracking_uri:
            return self.tracking_uri
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"

    def resolved_registry_uri(self) -> str:
        """The registry URI in use: the tracking URI unless set."""
        return self.registry_uri or self.resolved_tracking_uri()

    def resolved_artifact_root(self) -> Path | None:
        """The local folder experiments keep artifacts in; None when a server decides."""
        if self.artifact_root:
            return Path(self.artifact_root).expanduser().resolve()
        if self.resolved_tracking_uri().startswith(REMOTE_SCHEMES):
            return None
        return self._folder() / "artifacts"

    # -- clients -----------------------------------------------------------------------------

    def client(self) -> MlflowClient:
        """A client on this resource's stores; the first call creates or migrates the DB."""
        if not self._ready:
            self._initialize()
        return MlflowClient(self.resolved_tracking_uri(), self.resolved_registry_uri())

    def _initialize(self) -> None:
        """Open both stores once, with migration logging muted.

        A fresh SQLite file is created by running every Alembic migration (seconds, and INFO
        lines on stderr), Default under the artifact root. MLflow caches stores per URI.
        """
        start = time.perf_counter()
        if not self.tracking_uri and self.resolved_tracking_uri():  # a moved home: re-rooted
            relocate_mlflow(self._folder(), Path(str(playbook_home(self.home))))
        with mlflow_logging.quiet(mlflow_logging.MIGRATION_LOGGERS):
            mlflow_logging.open_store(self.resolved_tracking_uri(), self.resolved_artifact_root())
            client = MlflowClient(self.resolved_tracking_uri(), self.resolved_registry_uri())
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        logger.debug("MLflow stores ready in %.2fs", time.perf_counter() - start)
        self._ready = True

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created with its artifacts under the artifact root.

        An explicit location, because MLflow's default for a SQLite store is ``./mlruns``
        relative to whatever the working directory was when the store was opened.
        """
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":  # runs cannot start in a deleted experiment
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        root = self.resolved_artifact_root()
        location = (root / mlflow_logging.safe_name(name)).as_uri() if root is not None else None
        return client.create_experiment(name, artifact_location=location)

    # -- logging -----------------------------------------------------------------------------

    def log_training_run(
        self,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        model: Any,
        input_example: pd.DataFrame,
        lineage: Mapping[str, str],
        artifacts: Mapping[str, str | os.PathLike[str]],
        registered_name: str,
        training_data: mlflow_dataset.TrainingData | None = None,
    ) -> RegisteredVersion:
        """Log a training run and register its model as a new version of ``registered_name``.

        All or nothing: on any failure the run is marked ``FAILED``, a version created by this
        call is deleted (and the registered model too if this call created it), and the error is
        raised again. ``lineage`` (e.g. the training set's asset key and data version) becomes
        tags on both the run and the version, so a version leads back to its data, as does
        ``training_data``, the run's dataset input. Native models: :mod:`resources.mlflow_native`.

        Registration goes through the client, not ``mlflow.register_model``, which prints to
        stderr and, given a ``models:/<model_id>`` URI, leaves the version's run id empty.
        """
        experiment_id = self.experiment_id(experiment)
        client = self.client()
        existed = mlflow_logging.registered_model_exists(client, registered_name)
        tags = {**lineage, "playbook.registered_name": registered_name}
        created: str | None = None
        with self._using():
            run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
            run_id = run.info.run_id
            try:
                mlflow_logging.log_run_data(client, run_id, params, metrics, artifacts)
                if training_data is not None:
                    mlflow_dataset.log_training_set(training_data)
                info, natives = mlflow_native.log_models(model, input_example, registered_name)
                if not existed:
                    client.create_registered_model(registered_name)
                version = client.create_model_version(
                    registered_name,
                    source=info.model_uri,
                    run_id=run_id,
                    tags={**lineage, **mlflow_native.version_tags(natives)},
                    await_creation_for=0,
                    model_id=info.model_id,
                )
                created = str(version.version)
                mlflow_logging.verify_model(f"models:/{registered_name}/{created}", input_example)
            except BaseException:
                mlflow_logging.discard_registration(client, registered_name, created, existed)
                mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
                raise
            mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
        return RegisteredVersion(
            name=registered_name,
            version=str(created),  # set: the try block returned normally
            run_id=run_id,
            model_uri=f"models:/{registered_name}/{created}",
            run_url=self._run_url(experiment_id, run_id),
            native_model_uris={n.part: n.model_uri for n in natives},
        )

    def _run_url(self, experiment_id: str, run_id: str) -> str | None:
        uri = self.resolved_tracking_uri()
        if not uri.startswith(("http://", "https://")):
            return None
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    @contextmanager
    def _using(self) -> Iterator[None]:
        """This resource's URIs as MLflow's process-wide ones, restored on exit."""
        self.client()  # stores migrated before fluent calls open them
        with _URI_LOCK:
            tracking = mlflow.get_tracking_uri()
            registry = mlflow.get_registry_uri()
            mlflow.set_tracking_uri(self.resolved_tracking_uri())
            mlflow.set_registry_uri(self.resolved_registry_uri())
            try:
                yield
            finally:
                mlflow.set_tracking_uri(tracking)
                mlflow.set_registry_uri(registry)

    # -- registry ----------------------------------------------------------------------------

    def log_trials(
        self, experiment: str, parent_run_id: str, trials: Sequence[Mapping[str, Any]], metric: str
    ) -> list[str]:
        """Log tuning trials as runs nested under ``parent_run_id``; returns their run ids.

        Each trial is a mapping with ``params``, ``score`` and ``seconds``; MLflow's UI shows them
        as children of the training run through the ``mlflow.parentRunId`` tag.
        """
        client = self.client()
        experiment_id = self.experiment_id(experiment)
        ids = []
        for number, trial in enumerate(trials):
            run = client.create_run(
                experiment_id,
                tags={"mlflow.parentRunId": parent_run_id, "playbook.trial": str(number)},
                run_name=f"trial-{number}",
            )
            for name, value in trial["params"].items():
                client.log_param(run.info.run_id, name, value)
            client.log_metric(run.info.run_id, metric.replace("@", "_at_"), float(trial["score"]))
            client.log_metric(run.info.run_id, "seconds", float(trial["seconds"]))
            client.set_terminated(run.info.run_id)
            ids.append(run.info.run_id)
        return ids

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` of ``name`` at ``version`` (moving it if it pointed elsewhere)."""
        self.client().set_registered_model_alias(name, alias, str(version))

    def version_by_alias(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None (no such alias or registered model)."""
        try:
            return str(self.client().get_model_version_by_alias(name, alias).version)
        except MlflowException as error:
            if error.error_code in mlflow_logging.NOT_FOUND:
                return None
            raise

    def latest_version(self, name: str) -> str | None:
        """The highest registered version of ``name`` (the last training run's), or None."""
        versions = self.client().search_model_versions(f"name = '{name}'")
        return str(max(int(v.version) for v in versions)) if versions else None

    def load_model(self, name: str, alias_or_version: str | int) -> mlflow.pyfunc.PyFuncModel:
        """The pyfunc model of ``name`` at a version number or an alias."""
        with self._using():
            return mlflow.pyfunc.load_model(mlflow_logging.model_uri(name, alias_or_version))

    def load_native(self, name: str, alias_or_version: str | int, part: str | None = None) -> Any:
        """A version's ``lightgbm.Booster`` or ``torch.nn.Module``: what ``mlflow.lightgbm`` /
        ``mlflow.pytorch.load_model`` return for its ``playbook.native_model_uri.<part>`` tag;
        ``part`` may be left out when there is one (see :func:`resources.mlflow_native.pick`)."""
        client, ref = self.client(), str(alias_or_version)
        get = client.get_model_version if ref.isdigit() else client.get_model_version_by_alias
        natives = mlflow_native.from_version_tags(get(name, ref).tags)
        native = mlflow_native.pick(natives, part, f"{name} {ref}")
        with self._using():
            return mlflow_native.load(native)

    def version_tags(self, name: str, version: str | int) -> dict[str, str]:
        """The tags of one model version (lineage, run id, gate verdict)."""
        return dict(self.client().get_model_version(name, str(version)).tags)

    # -- promotion ---------------------------------------------------------------------------

    def run_gate(
        self,
        name: str,
        challenger_version: str | int,
        evaluate: Callable[[mlflow.pyfunc.PyFuncModel], float],
        higher_is_better: bool,
        margin: float,
        hold_for_slo: bool = False,
    ) -> GateVerdict:
        """Gate ``challenger_version`` against the current champion and promote on a pass.

        The version gets the ``challenger`` alias; ``evaluate`` scores both models on the same
        evaluation set (the callback owns the data, so both see identical rows); ``champion``
        moves only when :func:`promotion_gate` says so. The verdict is kept as tags on the
        version, so the registry shows why a version was or was not promoted. With
        ``hold_for_slo`` a pass tags the version ``playbook.awaiting_slo=true`` instead of
        promoting it: the SLO check serves it under load and promotes it if the SLO holds.
        """
        challenger = str(challenger_version)
        self.set_alias(name, CHALLENGER, challenger)
        champion = self.version_by_alias(name, CHAMPION)
        challenger_metric = float(evaluate(self.load_model(name, challenger)))
        if champion == challenger:
            verdict = GateVerdict(True, "already champion", 0.0, challenger_metric)
        else:
            champion_metric = (
                float(evaluate(self.load_model(name, champion))) if champion is not None else None
            )
            verdict = promotion_gate(challenger_metric, champion_metric, higher_is_better, margin)
            if verdict.promote and hold_for_slo:
                waits = "; stays challenger until the SLO check serves it and the SLO holds"
                verdict = replace(verdict, reason=verdict.reason + waits)
        verdict = replace(verdict, champion_version=champion)
        client = self.client()
        mlflow_logging.tag_verdict(client, name, challenger, verdict, higher_is_better, margin)
        if verdict.promote and champion != challenger:
            if hold_for_slo:
                client.set_model_version_tag(name, challenger, AWAITING_SLO_TAG, "true")
            else:
                self.promote(name, challenger)
        return verdict

    def promote(self, name: str, version: str | int) -> str | None:
        """Point ``champion`` at ``version``, tagging it with the version it replaced
        (``playbook.previous_champion``, what a rollback returns to); that version, or None.
        The version no longer awaits the SLO (a tag it had is removed)."""
        target, client = str(version), self.client()
        champion = self.version_by_alias(name, CHAMPION)
        if champion is not None and champion != target:
            client.set_model_version_tag(name, target, PREVIOUS_CHAMPION_TAG, champion)
        if AWAITING_SLO_TAG in self.version_tags(name, target):
            client.delete_model_version_tag(name, target, AWAITING_SLO_TAG)
        self.set_alias(name, CHAMPION, target)
        return champion

    def awaiting_slo(self, name: str) -> str | None:
        """The ``challenger`` version of ``name`` when it passed the gate and awaits the SLO."""
        challenger = self.version_by_alias(name, CHALLENGER)
        waits = challenger and self.version_tags(name, challenger).get(AWAITING_SLO_TAG) == "true"
        return challenger if waits and challenger != self.version_by_alias(name, CHAMPION) else None

    def rollback(
        self, name: str, to_version: str | int, reason: str, experiment: str | None = None
    ) -> RollbackEvent:
        """Move ``champion`` of ``name`` back to ``to_version`` and record why, with
        ``experiment`` as a ``rollback`` run too (:func:`resources.mlflow_rollback.roll_back`)."""
        experiment_id = self.experiment_id(experiment) if experiment is not None else None
        return roll_back(self.client(), name, to_version, reason, experiment_id)
