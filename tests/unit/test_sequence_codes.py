"""The towers' list features encode as ``explode().dropna()`` numbered per row would.

``FeatureEncoder.transform`` encodes them on flat numpy arrays for speed (a batch of users per feed
request); the pandas formulation it replaced is the oracle here, on lists, tuples and arrays with
nulls inside, empty lists, null rows, scalars, unknown ids, float ids and lists longer than
``max_length``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runtime.models.tower_inputs import FeatureEncoder


def _oracle(encoder: FeatureEncoder, series: pd.Series, column: str) -> np.ndarray:
    out = np.zeros((len(series), encoder.max_length), dtype=np.int64)
    exploded = series.reset_index(drop=True).explode().dropna()
    position = exploded.groupby(level=0).cumcount().to_numpy()
    keep = position < encoder.max_length
    codes = pd.Index(encoder.vocab[column]).get_indexer(exploded.astype(str).to_numpy()) + 1
    out[exploded.index.to_numpy()[keep], position[keep]] = codes[keep]
    return out


def _codes(encoder: FeatureEncoder, series: pd.Series, column: str) -> np.ndarray:
    """The sequence codes ``transform`` gives for a frame of that one list column."""
    _, _, sequences = encoder.transform(pd.DataFrame({column: series}))
    return sequences[:, 0]


def _random_rows(rng: np.random.Generator, n: int) -> list[object]:
    rows: list[object] = []
    for _ in range(n):
        kind = rng.integers(0, 7)
        ids = rng.integers(0, 40, size=int(rng.integers(0, 12))).tolist()
        if kind == 0:
            rows.append(None)
        elif kind == 1:
            rows.append(np.nan)
        elif kind == 2:
            rows.append(np.asarray(ids, dtype=np.int64))
        elif kind == 3:
            rows.append(tuple(ids))
        elif kind == 4:
            rows.append([*ids[:3], None, *ids[3:], np.nan])
        elif kind == 5:
            rows.append(int(rng.integers(0, 40)))  # a scalar: one id
        else:
            rows.append(ids)
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_sequence_codes_equal_the_exploded_frame(seed: int) -> None:
    rng = np.random.default_rng(seed)
    encoder = FeatureEncoder(
        sequence=["history"], max_length=5, vocab={"history": [str(i) for i in range(0, 40, 2)]}
    )
    series = pd.Series(_random_rows(rng, 60), index=rng.permutation(60), dtype=object)
    got = _codes(encoder, series, "history")
    np.testing.assert_array_equal(got, _oracle(encoder, series, "history"))
    assert got.shape == (60, 5) and got.max() > 0


def test_float_ids_and_edge_rows_encode_as_before() -> None:
    encoder = FeatureEncoder(sequence=["h"], max_length=3, vocab={"h": ["1.0", "2.0", "7"]})
    series = pd.Series(
        [[1.0, 2.0, np.nan, 3.0, 2.0], [], None, [7, "7"], np.array([2.0]), "7"], dtype=object
    )
    got = _codes(encoder, series, "h")
    np.testing.assert_array_equal(got, _oracle(encoder, series, "h"))
    assert got.tolist() == [[1, 2, 0], [0, 0, 0], [0, 0, 0], [3, 3, 0], [2, 0, 0], [3, 0, 0]]
    assert _codes(encoder, pd.Series([], dtype=object), "h").shape == (0, 3)
