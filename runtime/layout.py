"""Every naming convention of Playbook, in one place: asset keys, the home directory's layout,
feature column names, registry names and aliases.

Training, serving, the CLI and the sensors all find things by these names; when each rebuilt a
name itself they drifted apart (a sensor reading the IO manager's files by hand, the request-log
path spelled three times). Asset keys are plain tuples of strings, which Dagster's ``key=``,
``deps=`` and ``AssetIn(key=...)`` take as they are, so this module needs no Dagster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, Self, TypeVar

# -- the home directory -------------------------------------------------------------------------

HOME_ENV = "PLAYBOOK_HOME"
DEFAULT_HOME = ".playbook"


def home_location(override: str | os.PathLike[str] | None = None) -> str:
    """Where the home is: ``override``, else ``$PLAYBOOK_HOME``, else ``./.playbook``.

    A local path comes back absolute (a run started elsewhere finds the same home); a URL such as
    ``s3://bucket/home`` comes back as given.
    """
    raw = str(override) if override else os.environ.get(HOME_ENV, DEFAULT_HOME)
    if "://" in raw and not raw.startswith("file://"):
        return raw
    return str(Path(raw.removeprefix("file://")).expanduser().resolve())


class _PathLike(Protocol):
    def __truediv__(self, other: str) -> Self: ...


P = TypeVar("P", bound=_PathLike)


@dataclass(frozen=True)
class HomeLayout(Generic[P]):
    """The folders and files inside one home, for a ``Path`` or a ``UPath`` root.

    ``tables/``     Parquet per asset key (and per daily partition)
    ``dagster/``    the Dagster instance
    ``feast/<uc>``  the generated Feast repo of a use case, with its online store
    ``mlflow/``     tracking and registry store, artifacts
    ``quality/``    Great Expectations data docs per asset key
    ``indices/<uc>/<model>``  the FAISS index of a retriever
    ``serving/<uc>/``  the serving bundle and the request log
    ``bentoml/``    the BentoML store (``BENTOML_HOME``)
    ``triton/<uc>`` the Triton model repositories of a use case
    ``locks/<uc>.lock``  the one-writer lock of a use case (:mod:`runtime.home_lock`)
    """

    root: P

    def tables(self) -> P:
        return self.root / "tables"

    def table_file(self, key: tuple[str, ...], partition: str | None = None) -> P:
        """The Parquet file the IO manager writes for an asset (and one daily partition)."""
        folder = self.tables()
        for part in key[:-1]:
            folder = folder / part
        if partition is None:
            return folder / f"{key[-1]}.parquet"
        return folder / key[-1] / f"{partition}.parquet"

    def dagster(self) -> P:
        return self.root / "dagster"

    def feast(self) -> P:
        return self.root / "feast"

    def feast_repo(self, use_case: str) -> P:
        return self.feast() / use_case

    def mlflow(self) -> P:
        return self.root / "mlflow"

    def quality(self, key: tuple[str, ...]) -> P:
        folder = self.root / "quality"
        for part in key:
            folder = folder / part
        return folder

    def index(self, use_case: str, model: str) -> P:
        return self.root / "indices" / use_case / model

    def serving(self, use_case: str) -> P:
        return self.root / "serving" / use_case

    def bundle(self, use_case: str) -> P:
        return self.serving(use_case) / BUNDLE_FOLDER

    def request_log(self, use_case: str) -> P:
        return self.serving(use_case) / REQUEST_LOG_FILE

    def bentoml(self) -> P:
        return self.root / "bentoml"

    def triton(self, use_case: str) -> P:
        return self.root / "triton" / use_case

    def lock(self, use_case: str) -> P:
        """The file whose OS lock makes one process at a time the writer of a use case."""
        return self.root / "locks" / f"{use_case}.lock"


BUNDLE_FOLDER = "bundle"
REQUEST_LOG_FILE = "request_log.sqlite"

# -- asset keys ---------------------------------------------------------------------------------

AssetPath = tuple[str, ...]
RAW_EVENTS = "raw_events"
# The UI labels a node by its key's last part, so a model's assets end in distinct names
# (``ranking_training_set``, ``ranking_model``), never all ``ranking``; ``--select`` takes them.


def raw_events_key(use_case: str) -> AssetPath:
    return (use_case, RAW_EVENTS)


def raw_table_key(use_case: str, table: str) -> AssetPath:
    """An entity's attribute table (``raw_<table>``); ``raw_events`` for the event log."""
    return (use_case, f"raw_{table}")


def split_plan_key(use_case: str) -> AssetPath:
    return (use_case, "split_plan")


def feature_table_key(use_case: str, view: str) -> AssetPath:
    return (use_case, "features", view)


def feature_store_key(use_case: str) -> AssetPath:
    return (use_case, "feature_store")


def training_set_key(use_case: str, model: str) -> AssetPath:
    return (use_case, "training_sets", f"{model}_training_set")


def model_key(use_case: str, model: str) -> AssetPath:
    return (use_case, "models", f"{model}_model")


def previous_model_key(use_case: str, model: str) -> AssetPath:
    """A model's key before the names were made distinct: a home materialized then has its model
    runs under this key (the report still finds them)."""
    return (use_case, "models", model)


def index_key(use_case: str, model: str) -> AssetPath:
    return (use_case, "indices", f"{model}_index")


def funnel_evaluation_key(use_case: str) -> AssetPath:
    return (use_case, "funnel_evaluation")


def serving_bundle_key(use_case: str) -> AssetPath:
    return (use_case, "serving_bundle")


def bento_key(use_case: str) -> AssetPath:
    return (use_case, "bento")


def triton_repository_key(use_case: str) -> AssetPath:
    return (use_case, "triton_repository")


def drift_report_key(use_case: str) -> AssetPath:
    return (use_case, "drift_report")


def performance_key(use_case: str, model: str) -> AssetPath:
    return (use_case, "performance", f"{model}_performance")


def experiment_analysis_key(use_case: str) -> AssetPath:
    return (use_case, "experiment_analysis")


def predictions_key(use_case: str) -> AssetPath:
    """Batch serving's scores, one Parquet file per scoring window: ``table_file(key, window)``."""
    return (use_case, "predictions")


def predictions_view(use_case: str) -> str:
    """The Feast feature view (and project) holding a use case's batch predictions."""
    return f"{use_case}_predictions"


# -- feature columns ----------------------------------------------------------------------------

FEATURE_SEPARATOR = "__"  # Feast's full feature names: <view>__<feature>
ATTRIBUTES_SUFFIX = "_attributes"


def feature_column(view: str, feature: str) -> str:
    """The column a feature has in training sets and online reads: ``<view>__<feature>``."""
    return f"{view}{FEATURE_SEPARATOR}{feature}"


def feature_name(column: str) -> str:
    """The feature part of ``<view>__<feature>`` (the column itself when it has no view)."""
    return column.rpartition(FEATURE_SEPARATOR)[2]


def is_feature_column(column: str) -> bool:
    """Whether a training-set column came from a feature view (vs. keys, labels, context)."""
    return FEATURE_SEPARATOR in column


# A ``time_since_last`` aggregate is stored as the moment of the last event; training sets and
# online reads turn it into seconds before the label row or request, under a second name.
LAST_EVENT_AT = "last_event_at_"
SECONDS_SINCE_LAST = "seconds_since_last_"


def attributes_view(table: str) -> str:
    """The feature view of an entity table's static attributes."""
    return f"{table}{ATTRIBUTES_SUFFIX}"


# -- the model registry -------------------------------------------------------------------------

# the Dagster run tag naming a run's use case: the run queue starts one run per value
USE_CASE_RUN_TAG = "playbook/use_case"
CHAMPION = "champion"
CHALLENGER = "challenger"


def registered_model_name(use_case: str, model: str) -> str:
    """The MLflow registered model of a use case's model: ``<use case>.<model>``."""
    return f"{use_case}.{model}"


def stage_job_name(use_case: str, stage: str) -> str:
    """The Dagster job of one stage of a use case, ``<use case>__<stage>``; the double underscore
    keeps ``a_b`` + ``c`` and ``a`` + ``b_c`` apart."""
    return f"{use_case}__{stage}"
