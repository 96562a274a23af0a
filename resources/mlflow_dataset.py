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

The set may come in parts (the model stage reads it by split, never whole), with each part row's
place in the set: the digest, the sample and the profile are then those of the whole set, in its
order, computed part by part.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
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

logger = logging.getLogger(__name__)

CONTEXT = "training"
SCHEMA_SAMPLE_ROWS = 2_000
TARGETS_TAG = "playbook.targets"  # a dataset input tag: every label column, comma-separated


@dataclass(frozen=True)
class TrainingData:
    """A training set to log as the run's dataset input."""

    frame: pd.DataFrame | Sequence[pd.DataFrame]  # the set, or its parts (same columns)
    name: str  # the training set's asset key, e.g. fraud/training_sets/scorer
    source: str | None = None  # where it is stored (the Parquet path or URI), if known
    # label columns: the dataset's targets when there is one (MLflow keeps it in memory only,
    # for mlflow.evaluate) and, all of them, the input's playbook.targets tag
    targets: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)  # on the dataset input
    # with parts: where each row of the parts, concatenated, sits in the set (None: in order)
    order: np.ndarray | None = None

    @property
    def parts(self) -> list[pd.DataFrame]:
        return _parts(self.frame)


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
    """The dataset ``mlflow.log_input`` takes for ``data``; nothing in it holds rows."""
    parts = data.parts
    targets = [column for column in data.targets if column in parts[0].columns]
    return TrainingDataset(
        df=parts[0],
        source=_source(data.source),
        targets=targets[0] if len(targets) == 1 else None,
        name=data.name,
        digest=frame_digest(parts, data.order),
        schema=sampled_schema(parts, order=data.order),
        rows=sum(len(part) for part in parts),
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


def frame_digest(
    frame: pd.DataFrame | Sequence[pd.DataFrame], order: np.ndarray | None = None
) -> str:
    """An 8-character digest of every row (MLflow's format): hashable columns, names, length;
    of a set in parts, its rows' hashes put back in the set's order first."""
    parts = _parts(frame)
    columns = parts[0].columns
    hashable = [c for c in columns if all(_hashable(part[c]) for part in parts)]
    hashes = [pd.util.hash_pandas_object(p[hashable], index=False).to_numpy() for p in parts]
    rows = _in_order(np.concatenate(hashes), order)
    return get_normalized_md5_digest(
        [rows, np.int64(rows.size)] + [str(column).encode() for column in columns]
    )


def _parts(frame: pd.DataFrame | Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """A set as its list of parts: a frame is one."""
    return [frame] if isinstance(frame, pd.DataFrame) else list(frame)


def _in_order(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Values of the parts' rows (concatenated) at their places in the set."""
    if order is None:
        return values
    placed = np.empty_like(values)
    placed[order] = values
    return placed


def _hashable(column: pd.Series) -> bool:
    if column.dtype != object:
        return True
    return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")


def sampled_schema(
    frame: pd.DataFrame | Sequence[pd.DataFrame],
    rows: int = SCHEMA_SAMPLE_ROWS,
    order: np.ndarray | None = None,
) -> Schema | None:
    """Column types from a sample, required only where the whole column has no null (the
    same sample rows of a set in parts, :func:`frame_digest`'s ``order``).

    The inference is the one ``PandasDataset.schema`` runs (MLflow's ``_infer_schema``, the only
    frame-to-schema function it has that raises instead of falling back to "any"); None when it
    cannot type the sample, as MLflow's dataset then has no schema either.
    """
    parts = _parts(frame)
    sample = set_sample(parts, rows, order)
    try:
        from mlflow.types.utils import _infer_schema

        with warnings.catch_warnings():  # the integer-column hint is for model signatures
            warnings.simplefilter("ignore")
            inferred = _infer_schema(sample)
    except Exception as error:
        logger.debug("no schema for the training set: %s", error)
        return None
    nulls = pd.concat([part.isna().any() for part in parts], axis=1).any(axis=1)
    return Schema(
        [
            ColSpec(spec.type, spec.name, required=not bool(nulls.get(spec.name, False)))
            for spec in inferred.inputs
        ]
    )


def set_sample(parts: list[pd.DataFrame], rows: int, order: np.ndarray | None) -> pd.DataFrame:
    """``frame.sample(n=rows, random_state=0)`` of the set the parts make (the whole set when
    it has no more rows), gathered from the parts."""
    total = sum(len(part) for part in parts)
    if total <= rows:
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    # what DataFrame.sample draws: RandomState(0).choice over the rows, without replacement
    picked = np.random.RandomState(0).choice(total, size=rows, replace=False)
    where = picked if order is None else _in_order(np.arange(total), order)[picked]
    starts = np.cumsum([0, *(len(part) for part in parts)])
    which = np.searchsorted(starts, where, side="right") - 1
    pieces = [
        parts[i].iloc[where[which == i] - starts[i]].set_axis(np.flatnonzero(which == i))
        for i in range(len(parts))
    ]
    return pd.concat(pieces).sort_index()
