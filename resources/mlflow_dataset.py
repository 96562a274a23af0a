"""The training set of a run as an MLflow dataset input: where it is, its digest, schema and size.

``mlflow.log_input`` stores no rows: a dataset input is a name, a digest, a source (here the
Parquet file the IO manager wrote, else none), a schema and a profile (row and cell counts), shown
on the run's page and searchable. Two of MLflow's own computations do not scale to our training
sets, so they are done here, with MLflow's public types:

* the digest: ``compute_pandas_digest`` tests every cell's type in Python (2 s at 750K rows)
  and then hashes only the first 10,000 rows; ours hashes every row of every number, category,
  text and boolean column with pandas' vectorised hash (0.1 s), so any change to the data changes
  it (list columns are left out, as MLflow leaves them out);
* the schema: inferring it from every row took 32 s at 750K rows (list columns are walked value
  by value); it is inferred from a sample, and each column is marked required only if it has no
  null in the whole frame.

The set may come in chunks (the model stage never holds it whole: :class:`Chunks`, read in
the set's order): the digest, the sample and the profile are then the whole set's, computed a
chunk at a time.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.digest_utils import get_normalized_md5_digest
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.types import ColSpec, Schema

from runtime.table_chunks import Chunks

logger = logging.getLogger(__name__)

CONTEXT = "training"
SCHEMA_SAMPLE_ROWS = 2_000
TARGETS_TAG = "playbook.targets"  # a dataset input tag: every label column, comma-separated


@dataclass(frozen=True)
class TrainingData:
    """A training set to log as the run's dataset input."""

    frame: pd.DataFrame | Chunks  # the set, or the set in its order a chunk at a time
    name: str  # the training set's asset key, e.g. fraud/training_sets/scorer
    source: str | None = None  # where it is stored (the Parquet path or URI), if known
    # label columns: the dataset's targets when there is one (MLflow keeps it in memory only,
    # for mlflow.evaluate) and, all of them, the input's playbook.targets tag
    targets: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)  # on the dataset input


class TrainingDataset(PandasDataset):
    """MLflow's pandas dataset with a schema given up front instead of inferred from every row."""

    def __init__(self, *args, schema: Schema | None, rows: int, **kwargs) -> None:
        self._given_schema = schema
        self._rows = rows
        super().__init__(*args, **kwargs)

    @property
    def schema(self) -> Schema | None:
        return self._given_schema

    @property
    def profile(self) -> dict[str, int]:
        """The whole set's size (the dataset may hold only its first part)."""
        return {"num_rows": self._rows, "num_elements": self._rows * len(self._df.columns)}


def log_training_set(data: TrainingData) -> None:
    """``data`` as the active run's dataset input, context ``training``."""
    mlflow.log_input(training_dataset(data), context=CONTEXT, tags=input_tags(data))


def training_dataset(data: TrainingData) -> TrainingDataset:
    """The dataset ``mlflow.log_input`` takes for ``data``; nothing in it holds rows but the
    schema's sample. A set in chunks is read three times: what can be hashed and where the
    nulls are, then the rows' hashes, then the sample's rows."""
    table = Chunks.of(data.frame)
    targets = [column for column in data.targets if column in table.columns]
    survey = _survey(table)
    sample = set_sample(table, SCHEMA_SAMPLE_ROWS, survey.rows)
    return TrainingDataset(
        df=sample,
        source=_source(data.source),
        targets=targets[0] if len(targets) == 1 else None,
        name=data.name,
        digest=_digest(table, survey),
        schema=_schema(sample, survey),
        rows=survey.rows,
    )


def input_tags(data: TrainingData) -> dict[str, str]:
    """The dataset input's tags: the caller's plus every target column."""
    tags = dict(data.tags)
    if data.targets:
        tags[TARGETS_TAG] = ",".join(data.targets)
    return tags


def _source(source: str | None) -> DatasetSource:
    if source is None:
        return CodeDatasetSource({})  # as from_pandas without a source: "logged by code"
    with warnings.catch_warnings():  # MLflow registers the local source twice and says so
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        return resolve_dataset_source(source)


@dataclass(frozen=True)
class _Survey:
    """One pass over a set: the columns every chunk can hash, those with a null, the rows."""

    hashable: list[str]
    nulls: set[str]
    rows: int


def _survey(table: Chunks) -> _Survey:
    columns = list(table.columns)
    hashable, nulls, rows = set(columns), set(), 0
    for chunk in table():
        hashable -= {column for column in hashable if not _hashable(chunk[column])}
        nulls |= {column for column, null in chunk.isna().any().items() if null}
        rows += len(chunk)
    return _Survey([c for c in columns if c in hashable], nulls, rows)


def _hashable(column: pd.Series) -> bool:
    if column.dtype != object:
        return True
    return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")


def frame_digest(table: pd.DataFrame | Chunks) -> str:
    """An 8-character digest of every row (MLflow's format: hashable columns, names, length);
    of a set in chunks, the same, the rows' hashes taken a chunk at a time in order."""
    table = Chunks.of(table)
    return _digest(table, _survey(table))


def _digest(table: Chunks, survey: _Survey) -> str:
    hashed = table(survey.hashable)
    hashes = [pd.util.hash_pandas_object(chunk, index=False).to_numpy() for chunk in hashed]
    rows = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
    return get_normalized_md5_digest(
        [rows, np.int64(rows.size)] + [str(column).encode() for column in table.columns]
    )


def sampled_schema(table: pd.DataFrame | Chunks, rows: int = SCHEMA_SAMPLE_ROWS) -> Schema | None:
    """Column types from a sample of ``rows`` rows (:func:`set_sample`), required only where the
    whole column has no null (counted a chunk at a time)."""
    table = Chunks.of(table)
    survey = _survey(table)
    return _schema(set_sample(table, rows, survey.rows), survey)


def _schema(sample: pd.DataFrame, survey: _Survey) -> Schema | None:
    """The schema of ``sample``, required where the survey found no null.

    The inference is the one ``PandasDataset.schema`` runs (MLflow's ``_infer_schema``, the only
    frame-to-schema function it has that raises instead of falling back to "any"); None when it
    cannot type the sample, as MLflow's dataset then has no schema either.
    """
    try:
        from mlflow.types.utils import _infer_schema

        with warnings.catch_warnings():  # the integer-column hint is for model signatures
            warnings.simplefilter("ignore")
            inferred = _infer_schema(sample)
    except Exception as error:
        logger.debug("no schema for the training set: %s", error)
        return None
    return Schema(
        [
            ColSpec(spec.type, spec.name, required=spec.name not in survey.nulls)
            for spec in inferred.inputs
        ]
    )


def set_sample(table: pd.DataFrame | Chunks, rows: int, total: int) -> pd.DataFrame:
    """``frame.sample(n=rows, random_state=0)`` of the set of ``total`` rows (the whole set when
    it has no more rows), gathered a chunk at a time, in the draw's order."""
    table = Chunks.of(table)
    if total <= rows:
        return table.frame(list(table.columns))
    # what DataFrame.sample draws: RandomState(0).choice over the rows, without replacement
    picked = np.random.RandomState(0).choice(total, size=rows, replace=False)
    ascending = np.argsort(picked, kind="stable")
    found = table.rows_at(picked[ascending])
    drawn = np.empty(rows, dtype=np.int64)
    drawn[ascending] = np.arange(rows)
    return found.iloc[drawn].set_axis(picked)
