"""Tower inputs: how raw training-set and catalog columns become tensors for the two towers.

Numerics are signed-log compressed and standardised with a missing flag, categoricals and list
features are indexed into training vocabularies with an out-of-vocabulary slot; the same
encoder serves training and every later embedding call, so both see identical inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_list_like

from runtime.layout import feature_name
from runtime.table_chunks import Chunks

OOV = 0  # index of unknown/unseen ids and categories: its embedding is fixed at zero


def is_sequence(value: object) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def _kind(pieces: Iterable[pd.Series]) -> str | None:
    """``numeric``, ``categorical``, ``sequence`` (lists) or None (timestamps: unused), of a
    column given in pieces (one, or a chunk of a split at a time, each of the column's dtype):
    the dtype decides, else the first non-null value (a list, or not)."""
    rest = iter(pieces)
    first = next(rest, None)
    if first is None:
        return "categorical"
    if pd.api.types.is_bool_dtype(first) or (
        pd.api.types.is_numeric_dtype(first) and not isinstance(first.dtype, pd.CategoricalDtype)
    ):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(first):
        return None
    for series in chain((first,), rest):
        value = series.dropna().head(1)
        if len(value):
            return "sequence" if is_sequence(value.iloc[0]) else "categorical"
    return "categorical"


def lookup_index(owner: object, name: str, values: Sequence[Any]) -> pd.Index:
    """``pd.Index(values)``, built once per ``owner`` and ``name`` while ``values`` is the same list.

    Building the index and its hash table over a 100K-id vocabulary costs milliseconds, which
    dominated embedding one user per request; the cache lives in the owner's ``__dict__`` (not a
    dataclass field, so neither ``asdict`` nor a pickle carries it) and is keyed by identity, so
    a reassigned vocabulary is never served from a stale index.
    """
    cache = owner.__dict__.setdefault(_LOOKUPS, {})
    held = cache.get(name)
    if held is None or held[0] is not values:
        held = cache[name] = (values, pd.Index(values))
    return held[1]


_LOOKUPS = "_lookup_indexes"


def _signed_log(values: np.ndarray) -> np.ndarray:
    """Compress heavy tails (counts, prices) before standardising."""
    return np.sign(values) * np.log1p(np.abs(values))


def _finite_signed_log(series: pd.Series) -> np.ndarray:
    """A numeric column's values as the encoder standardises them, the missing ones left out."""
    values = _signed_log(series.to_numpy(dtype=float, na_value=np.nan))
    return values[np.isfinite(values)]


def _vocabulary(pieces: Iterable[pd.Series]) -> list[str]:
    """The sorted distinct values, as text, of a column's pieces."""
    found: set[str] = set()
    for piece in pieces:
        found.update(piece.astype(str).unique().tolist())
    return sorted(found)


@dataclass
class FeatureEncoder:
    """How raw columns become tower inputs.

    Numerics: signed log, standardised with training statistics, NaN -> 0 plus a missing flag
    (so "unknown" is not confused with "average"). Categoricals: index into the training
    vocabulary, unseen or missing -> OOV. Sequences (lists such as a user's recent item ids):
    the first ``max_length`` entries indexed the same way, padded with OOV, mean-pooled by the
    tower: a history summary that needs no id of the user.
    """

    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    sequence: list[str] = field(default_factory=list)
    max_length: int = 20
    dropped: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, frame: pd.DataFrame | Chunks, columns: Sequence[str]) -> FeatureEncoder:
        """The encoder of ``columns`` of ``frame``: a frame, or chunks (a training split left in
        its file, read one column at a time). A numeric column's finite values are gathered
        before its mean and deviation are taken, so chunks give the frame's statistics to the
        last bit; vocabularies are the sorted union of the chunks' values."""
        table = Chunks.of(frame)
        enc = cls()
        for column in columns:

            def pieces(column: str = column) -> Iterator[pd.Series]:
                return (chunk[column] for chunk in table([column]))

            kind = _kind(pieces())
            if kind == "numeric":
                values = np.concatenate([_finite_signed_log(p) for p in pieces()] or [[]])
                enc.numeric.append(column)
                enc.mean.append(float(values.mean()) if len(values) else 0.0)
                enc.std.append(float(values.std()) if len(values) > 1 else 1.0)
            elif kind == "categorical":
                enc.categorical.append(column)
                enc.vocab[column] = _vocabulary(p.dropna() for p in pieces())
            elif kind == "sequence":
                enc.sequence.append(column)
                enc.vocab[column] = _vocabulary(p.explode().dropna() for p in pieces())
            else:
                enc.dropped.append(column)
        return enc

    @property
    def category_sizes(self) -> list[int]:
        return [len(self.vocab[c]) for c in self.categorical]

    @property
    def sequence_sizes(self) -> list[int]:
        return [len(self.vocab[c]) for c in self.sequence]

    @property
    def numeric_width(self) -> int:
        return 2 * len(self.numeric)

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(numerics float32 [n, 2 * numeric], categories int64 [n, categorical],
        sequences int64 [n, sequence, max_length])``."""
        n = len(frame)
        nums = np.zeros((n, self.numeric_width), dtype=np.float32)
        for i, column in enumerate(self.numeric):
            values = _signed_log(frame[column].to_numpy(dtype=float, na_value=np.nan))
            missing = ~np.isfinite(values)
            scaled = (values - self.mean[i]) / (self.std[i] or 1.0)
            nums[:, 2 * i] = np.where(missing, 0.0, scaled)
            nums[:, 2 * i + 1] = missing
        cats = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for i, column in enumerate(self.categorical):
            series = frame[column]
            vocab = lookup_index(self, column, self.vocab[column])
            codes = vocab.get_indexer(series.astype(str)) + 1
            codes[series.isna().to_numpy()] = OOV
            cats[:, i] = codes
        seqs = np.zeros((n, len(self.sequence), self.max_length), dtype=np.int64)
        for i, column in enumerate(self.sequence):
            seqs[:, i] = self._sequence_codes(frame[column], column)
        return nums, cats, seqs

    def _sequence_codes(self, series: pd.Series, column: str) -> np.ndarray:
        """Per row, the first ``max_length`` non-null ids of its list, as vocabulary codes.

        Works as ``series.explode().dropna()`` numbered per row would (a list-like is
        expanded, an empty one or a null is nothing, a scalar is one id), but on flat numpy
        arrays: ``explode`` and ``groupby().cumcount()`` were half of encoding a batch of users
        per feed request."""
        out = np.zeros((len(series), self.max_length), dtype=np.int64)
        listed = [v if is_list_like(v) else (v,) for v in series.tolist()]
        lengths = np.fromiter(map(len, listed), dtype=np.int64, count=len(listed))
        flat = np.fromiter(chain.from_iterable(listed), dtype=object, count=int(lengths.sum()))
        owner = np.repeat(np.arange(len(listed)), lengths)
        kept = ~pd.isna(flat)
        flat, owner = flat[kept], owner[kept]
        position = np.arange(len(owner)) - np.searchsorted(owner, owner)  # owner is sorted
        fits = position < self.max_length
        vocab = lookup_index(self, column, self.vocab[column])
        codes = vocab.get_indexer(flat[fits].astype(str)) + 1
        out[owner[fits], position[fits]] = codes
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != _LOOKUPS}


def positions_in(vocab: pd.Index, values: pd.Series | np.ndarray) -> np.ndarray:
    """Vocabulary position + 1; unseen ids -> OOV (0)."""
    return (vocab.get_indexer(np.asarray(values)) + 1).astype(np.int64)


def content_frame(items: pd.DataFrame, item_key: str, features: Sequence[str]) -> pd.DataFrame:
    """The catalog's columns for ``features``, named as the features.

    A feature ``<table>__<name>`` is read from column ``<table>__<name>`` or, failing that,
    from the catalog's source column ``<name>``; features the catalog lacks are left out.
    """
    columns = {item_key: items[item_key].to_numpy()}
    for feature in features:
        source = feature if feature in items.columns else feature_name(feature)
        if source in items.columns and source != item_key:
            columns[feature] = items[source].to_numpy()
    return pd.DataFrame(columns)
