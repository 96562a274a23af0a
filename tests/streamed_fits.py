"""A use case's model trained twice on one training set: its splits held, and its splits read
in chunks as the model asset reads them (none of them loadable whole), for the tests that hold
the two to the same model, metrics and predictions."""

from __future__ import annotations

import dataclasses
import itertools

import pandas as pd

from assets.models.split_chunks import streamed_splits
from assets.models.train import TrainedModel, train_tabular
from assets.training.set_splits import SetSplits, StreamedSplit
from configs.schema.usecase import UseCaseSpec
from runtime.table_chunks import Chunks


def chunks(frame: pd.DataFrame, cuts: list[int]) -> Chunks:
    """``frame`` read in chunks cut at ``cuts`` (a repeated cut: an empty chunk)."""
    bounds = [0, *cuts, len(frame)]
    return Chunks(
        tuple(frame.columns),
        lambda columns: (frame.iloc[a:b][columns] for a, b in itertools.pairwise(bounds)),
    )


def streamed_set(
    spec: UseCaseSpec,
    model: str,
    frame: pd.DataFrame,
    cuts: list[int],
    loadable: tuple[str, ...] = (),
) -> SetSplits:
    """The set's splits as the model asset leaves them in the file: those it streams (every
    LightGBM learner's three, a retriever's train and validation) in chunks cut at ``cuts``,
    and loading one of them whole fails the test, but those named ``loadable``."""

    def whole() -> pd.DataFrame:
        raise AssertionError("a split was loaded whole")

    streamed = streamed_splits(spec.model[model])
    splits = SetSplits.of(frame, "split", streamed=streamed)
    assert streamed and set(splits.streamed) == set(streamed)
    chunked = {
        name: StreamedSplit(
            chunks(split.load(), cuts), split.rows, split.load if name in loadable else whole
        )
        for name, split in splits.streamed.items()
    }
    return dataclasses.replace(splits, streamed=chunked)


def held_and_streamed(
    spec: UseCaseSpec, model: str, frame: pd.DataFrame, params: dict, cuts: list[int]
) -> tuple[TrainedModel, TrainedModel]:
    """``model`` trained on ``frame``'s splits held, then on them in chunks."""
    held = train_tabular(spec, model, frame, params)
    return held, train_tabular(spec, model, streamed_set(spec, model, frame, cuts), params)
