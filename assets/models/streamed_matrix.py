"""LightGBM's training matrix built from a split read a chunk at a time, never held whole.

A LightGBM ``Dataset`` keeps its rows binned (a byte or two per value), but building it from a
frame needs the frame and its float matrix first: at 4M events the train split and its matrix
were most of the model stage's memory. ``lightgbm.Sequence`` is LightGBM's public way to build
a ``Dataset`` from rows it asks for: first the bin sample's rows (ascending positions, drawn as
from a matrix of the same size), then every row in order, a batch at a time.
:class:`_ChunkRows` serves both from the split's chunks with a forward cursor, so each is one
pass over the file; LightGBM then bins exactly what it would have binned from the whole matrix,
and the trees are the same (``tests/unit/test_streamed_matrix.py``).

What the frame path learns from the whole split is learned over the chunks first: the
features the matrix keeps, each text column's levels (``runtime.models.features.fit_levels``),
and the labels (one number a row, small beside the features).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from assets.models.lightgbm_inputs import check_rows, has_param, label_rows
from runtime.models.features import Categories, fit_levels, matrix_columns, prepare_features
from runtime.table_chunks import Chunks
from runtime.training_engine import current_training_engine

# rows LightGBM asks for at a time while it bins the split (its default is 4,096)
PUSH_ROWS = 65_536


def lightgbm_values(prepared: pd.DataFrame) -> np.ndarray:
    """The float matrix LightGBM makes of ``prepare_features``' frame: a category as its code in
    the fixed levels, missing (code -1) as NaN, numbers as they are (``lgb.Dataset`` on a frame
    does exactly this, in ``_data_from_pandas``)."""
    out = np.empty(prepared.shape, dtype=np.float64)
    for j, column in enumerate(prepared.columns):
        values = prepared[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy()
            out[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            out[:, j] = values.to_numpy(dtype=np.float64)
    return out


class _ChunkRows(lgb.Sequence):
    """The split's rows as ``lightgbm.Sequence``: row ``i`` or rows ``[a, b)``, read forward from
    the chunk holding them. LightGBM asks in ascending order (the sample, then the batches), so
    a pass is one read of the split; asking behind the cursor starts the read again."""

    batch_size = PUSH_ROWS

    def __init__(self, matrices: Callable[[], Iterator[np.ndarray]], rows: int) -> None:
        self._matrices = matrices
        self._rows = rows
        self._restart()

    def _restart(self) -> None:
        self._stream = self._matrices()
        self._begin = 0
        self._chunk = np.empty((0, 0))

    def _advance(self) -> None:
        self._begin += len(self._chunk)
        try:
            self._chunk = next(self._stream)
        except StopIteration:
            raise IndexError(f"row {self._begin} is past the split's rows") from None

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, numbers.Integral):
            return self._between(int(index), int(index) + 1)[0]
        if isinstance(index, slice) and index.step in (None, 1):
            start, stop, _ = index.indices(self._rows)
            return self._between(start, stop)
        raise TypeError(f"rows are read by position or range, not {index!r}")

    def _between(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        while start < stop:
            if start < self._begin:
                self._restart()
            while start >= self._begin + len(self._chunk):
                self._advance()
            at = start - self._begin
            take = min(stop - start, len(self._chunk) - at)
            pieces.append(self._chunk[at : at + take])
            start += take
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _lightgbm_short(seed: int) -> int:
    """The first ``NextShort(0, 32767)`` of LightGBM's ``Random(seed)`` (a 32-bit LCG): the
    ``data_random_seed`` LightGBM derives from ``seed`` (``Config::Set``)."""
    state = (214013 * (seed & 0xFFFFFFFF) + 2531011) & 0xFFFFFFFF
    return ((state >> 16) & 0x7FFF) % 32767


def sampling_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """What LightGBM's ``Dataset`` needs in ``params`` to draw the bin sample of a
    ``Sequence`` as it draws a matrix's. A matrix is sampled with the ``data_random_seed`` that
    ``seed`` derives; a ``Sequence`` is sampled in Python with the dataset's own parameters,
    where ``seed`` is not one, so the derived value is passed as ``data_random_seed`` (the same
    value the booster's configuration records; nothing to add when it is set or there is no
    ``seed``)."""
    if has_param(params, "data_random_seed"):
        return {}
    seeds = [v for k, v in params.items() if has_param({k: v}, "seed")]
    return {"data_random_seed": _lightgbm_short(int(seeds[-1]))} if seeds else {}


@dataclass(frozen=True)
class StreamedMatrix:
    """A split's LightGBM ``Dataset`` (lazy: LightGBM reads the chunks when it constructs it),
    with the columns and text levels the frame path would have learned."""

    dataset: lgb.Dataset
    columns: list[str]
    categories: Categories


def matrix_layout(chunks: Chunks, features: list[str]) -> tuple[list[str], Categories]:
    """``prepare_features(split, features)``'s columns and levels, learned a chunk at a time: a
    column is dropped as a list when any chunk says so (lists are typed by the file, so every
    chunk with values agrees), and a text column's levels are the union of the chunks'."""
    used: list[str] | None = None
    text: set[str] = set()
    for frame in chunks(features):
        kept, strings = matrix_columns(frame, features)
        used = kept if used is None else [col for col in used if col in kept]
        text.update(strings)
    columns = used if used is not None else []
    text_columns = [col for col in columns if col in text]
    return columns, fit_levels(chunks(text_columns), text_columns) if text_columns else {}


def feature_matrices(
    chunks: Chunks, columns: list[str], categories: Categories
) -> Iterator[np.ndarray]:
    """Each chunk's float matrix as LightGBM reads it (:func:`lightgbm_values`), in order."""
    for frame in chunks(columns):
        if len(frame):
            yield lightgbm_values(prepare_features(frame, columns, categories)[0])


def streamed_dataset(
    chunks: Chunks,
    features: list[str],
    label: np.ndarray,
    layout: tuple[list[str], Categories] | None = None,
    **options,
) -> StreamedMatrix:
    """The ``lgb.Dataset`` of the split in ``chunks`` (rows in order, ``label`` one per row),
    equal to ``lgb.Dataset(prepare_features(split, features)[0], label=label, **options)``;
    with ``layout`` (columns and levels learned from the train split), the matrix of a split
    coded by them, as ``prepare_features(split, columns, categories)``: a validation set."""
    missing = [col for col in features if col not in chunks.columns]
    if missing:
        raise ValueError(f"features missing from the frame: {', '.join(missing)}")
    columns, categories = layout if layout is not None else matrix_layout(chunks, features)
    text = [col for col in columns if col in categories]
    dataset = lgb.Dataset(
        _ChunkRows(lambda: feature_matrices(chunks, columns, categories), len(label)),
        label=label,
        feature_name=columns,
        categorical_feature=text,
        **options,
    )
    # what LightGBM records of a frame's categories: validation frames are coded by these levels
    dataset.pandas_categorical = [categories[col] for col in text]
    return StreamedMatrix(dataset, columns, categories)


@dataclass(frozen=True)
class TrainingDatasets:
    """LightGBM's train and validation sets of a fit, the columns and text levels the train
    split gave, and the parameters to fit with (a streamed train set's sampling seed added)."""

    train: lgb.Dataset
    valid: lgb.Dataset
    columns: list[str]
    categories: Categories
    params: dict[str, Any]


def training_datasets(
    train: pd.DataFrame | Chunks,
    valid: pd.DataFrame | Chunks,
    features: list[str],
    labels: tuple[np.ndarray, np.ndarray],
    params: Mapping[str, Any],
    groups: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    weight: np.ndarray | None = None,
) -> TrainingDatasets:
    """The ``lgb.Dataset`` pair of a fit, each split held as a frame or read in chunks (binned
    as it is read, :func:`streamed_dataset`): the same bins, and so the same trees, either way.
    ``groups``: a ranker's group sizes per split; ``weight``: the train rows' weights."""
    train_group, valid_group = ({} if g is None else {"group": g} for g in groups)
    fit_params = dict(params)
    if isinstance(train, Chunks):
        fit_params.update(sampling_params(params))
    # built with the fit's parameters: a weighted fit constructs its sets before the fit
    # (below), and binning must then follow them as the fit's own construction would
    train_group.update(weight=weight, params=fit_params)
    valid_group["params"] = fit_params  # a reference's parameters differing would be a warning
    if isinstance(train, Chunks):
        streamed = streamed_dataset(train, features, labels[0], free_raw_data=False, **train_group)
        train_set, columns, categories = streamed.dataset, streamed.columns, streamed.categories
    else:
        x_train, categories = prepare_features(train, features)
        columns = list(x_train.columns)
        train_set = lgb.Dataset(x_train, label=labels[0], free_raw_data=False, **train_group)
        del x_train
    if isinstance(valid, Chunks):
        layout = (columns, categories)
        valid_set = streamed_dataset(
            valid, columns, labels[1], layout=layout, reference=train_set, **valid_group
        ).dataset
        if weight is not None:
            _unweighted(valid_set)
    else:
        x_valid, _ = prepare_features(valid, columns, categories)
        valid_set = lgb.Dataset(x_valid, label=labels[1], reference=train_set, **valid_group)
    return TrainingDatasets(train_set, valid_set, columns, categories, fit_params)


def _unweighted(valid_set: lgb.Dataset) -> None:
    """Clear the weights LightGBM gives a validation set built from pushed rows when its
    reference is weighted: it copies that the reference has weights and leaves them 0, so
    every validation metric is NaN and early stopping stops at the first iteration (a
    matrix's validation set has none). Clearing needs the set constructed: it is, here,
    with the fit's parameters (the fit's own construction then finds nothing to redo)."""
    valid_set.construct()
    valid_set.set_field("weight", None)


def split_predictions(
    booster: lgb.Booster,
    rows: pd.DataFrame | Chunks,
    columns: list[str],
    categories: Categories,
    **options,
) -> np.ndarray:
    """``booster.predict`` of every row of a split (a frame whole, chunks one at a time):
    the validation margins a calibrator or a conformal interval is fit on."""
    if isinstance(rows, Chunks):
        parts = [booster.predict(m, **options) for m in feature_matrices(rows, columns, categories)]
        return np.concatenate(parts) if parts else np.empty(0)
    return booster.predict(prepare_features(rows, columns, categories)[0], **options)


def frames_on_ray(
    *splits: pd.DataFrame | Chunks,
) -> tuple[pd.DataFrame | Chunks, ...]:
    """The splits as frames when the fit runs on Ray (Ray Train's trainer shares frames among
    its workers), held ones as they are; as given otherwise."""
    if current_training_engine() is None:
        return splits
    return tuple(s.frame(list(s.columns)) if isinstance(s, Chunks) else s for s in splits)


def fit_splits(
    train: pd.DataFrame | Chunks, valid: pd.DataFrame | Chunks, label: str
) -> tuple[pd.DataFrame | Chunks, pd.DataFrame | Chunks, pd.DataFrame, pd.DataFrame]:
    """The two splits as the fit reads them (:func:`frames_on_ray`) and their label columns,
    each split with rows (``check_rows``)."""
    train, valid = frames_on_ray(train, valid)
    labels = label_rows(train, label, "train"), label_rows(valid, label, "validation")
    check_rows(*labels)
    return train, valid, *labels
