"""The model stage's splits left in the set's file: which learners read them so, and the passes
over them those learners share.

Every LightGBM learner -- a binary classifier, a LambdaRank ranker, the expected-value model
(two classifiers), a regressor (a point and two quantile boosters), a multiclass classifier --
reads its three splits a batch at a time (:func:`streamed_splits`); LightGBM bins train and
validation as it reads them (``assets.models.streamed_matrix``), the test rows are scored a
chunk at a time
(:func:`scored_chunks`), and what is held is one number a row and the test rows' other columns
(:func:`held_test_columns`: the predictions table, the metrics' groups and units). A fit on Ray
reads its splits whole (Ray Train's trainer shares frames). A retriever streams its train and
validation splits whatever the engine: it encodes them here (``assets.models.retrieval_splits``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from assets.models.evaluation_rows import plan_train_columns
from assets.models.retrieval_splits import RETRIEVER_STREAMED
from assets.training.build import SPLIT
from assets.training.set_splits import MODEL_SPLITS, SetSplits
from configs.schema.model_stage import RETRIEVERS, ModelStageSpec
from configs.schema.usecase import UseCaseSpec
from runtime.table_chunks import Chunks
from runtime.training_engine import current_training_engine

# the learners whose three splits stay in the file: every LightGBM one
STREAMED_PROBLEMS = (
    "binary_classification",
    "learning_to_rank",
    "multi_task",
    "regression",
    "multiclass_classification",
)


def streamed_splits(stage: ModelStageSpec) -> tuple[str, ...]:
    """The splits the model asset leaves in the set's file, read a chunk at a time by each pass
    over them: all three of every LightGBM learner's, a retriever's train and validation
    (``assets.models.retrieval_splits``)."""
    if stage.problem in RETRIEVERS:
        return RETRIEVER_STREAMED
    return MODEL_SPLITS if stage.problem in STREAMED_PROBLEMS else ()


def split_chunks(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame | SetSplits
) -> dict[str, Chunks] | None:
    """The model's splits as chunks when the set streams them and the fit runs here (Ray
    Train's trainer takes frames), None otherwise; an empty split fails as ``model_splits``
    fails."""
    if not isinstance(frame, SetSplits) or not set(MODEL_SPLITS) <= set(frame.streamed):
        return None
    if current_training_engine() is not None:
        return None
    for name in MODEL_SPLITS:
        _refuse_empty(spec, model, name, frame.size(name))
    return {name: frame.chunks(name) for name in MODEL_SPLITS}


def _refuse_empty(spec: UseCaseSpec, model: str, name: str, rows: int) -> None:
    """A model split without rows is a located error, whichever way the split is read."""
    if rows == 0:
        raise ValueError(
            f"{spec.name}: model.{model}: the {name} split of the training set is empty"
        )


def model_splits(spec: UseCaseSpec, model: str, frame: pd.DataFrame | SetSplits):
    """(train, validation, test) of a set, each with a fresh index: cut from a frame, or as read
    by split from the set's file (:class:`SetSplits`, the model asset's way: no whole frame)."""
    splits = frame if isinstance(frame, SetSplits) else SetSplits.of(frame, SPLIT)
    parts = {name: splits.part(name) for name in MODEL_SPLITS}
    for name, part in parts.items():
        _refuse_empty(spec, model, name, len(part))
    return parts["train"], parts["validation"], parts["test"]


@dataclass(frozen=True)
class ModelParts:
    """What a trainer reads of its set: train and validation (frames, or chunks), the test rows
    it scores (likewise) and those it holds (every column, or all but the features), the train
    columns the evaluation plan reads, and the rows its baseline fits on."""

    train: pd.DataFrame | Chunks
    valid: pd.DataFrame | Chunks
    scored: pd.DataFrame | Chunks
    test: pd.DataFrame
    units: pd.DataFrame
    baseline_rows: pd.DataFrame


def model_parts(
    spec: UseCaseSpec,
    model: str,
    frame: pd.DataFrame | SetSplits,
    features: Sequence[str],
    label: str,
    baseline_rows: Callable[[Chunks, int], pd.DataFrame],
    needed: Iterable[str | None] = (),
) -> ModelParts:
    """The model's splits as its trainer reads them: held frames (a set in memory, a fit on
    Ray), or chunks (:func:`split_chunks`), with the train columns the plan reads
    (``plan_train_columns``), ``baseline_rows(train, rows)`` and the test rows held but their
    features (``needed`` kept)."""
    parts = split_chunks(spec, model, frame)
    if parts is None:
        train, valid, test = model_splits(spec, model, frame)
        return ModelParts(train, valid, test, test, train, train)
    train, valid, scored = parts["train"], parts["validation"], parts["test"]
    return ModelParts(
        train,
        valid,
        scored,
        scored.frame(held_test_columns(scored.columns, features, needed)),
        train.frame(plan_train_columns(spec, model, train.columns, label)),
        baseline_rows(train, frame.size("train")),
    )


def scored_chunks(
    score: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame | Chunks, columns: Sequence[str]
) -> np.ndarray:
    """``score`` of every row, a chunk of ``columns`` at a time (a frame is one chunk)."""
    chunks = Chunks.of(rows)(columns)
    scores = [np.asarray(score(chunk), dtype=float) for chunk in chunks if len(chunk)]
    return np.concatenate(scores) if scores else np.empty(0)


def held_test_columns(
    columns: Iterable[str], features: Sequence[str], needed: Iterable[str | None] = ()
) -> list[str]:
    """The test columns held while the features stay in the file: every other column (the
    predictions table keeps them), and ``needed`` ones (a group or unit) even if features."""
    wanted = {c for c in needed if c is not None}
    return [c for c in columns if c not in features or c in wanted]
