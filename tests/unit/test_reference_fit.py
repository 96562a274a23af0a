"""PSI bins fitted on a reference read in chunks equal the whole frame's, pass by pass.

The oracle is the array code applied to the whole column (the sample drawn from the whole array
at ``sample_positions``, ``quantile_edges``, ``numeric_counts``) or the frame fitted in one
chunk; the chunks are random cuts of it, as a
training period read a file at a time would be.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pytest

from assets.monitoring.binning import numeric_counts, quantile_edges, sample_positions
from assets.monitoring.drift import event_drift, shifts
from assets.monitoring.drift_reference import DriftReference
from assets.monitoring.reference_fit import BinSettings, fit_features
from configs import CONFIG_DIR
from configs.schema import load_specs
from runtime.table_chunks import Chunks
from tests.unit.test_drift import _events


class Cut:
    """``frame`` as chunks cut at random places; counts the passes made over it."""

    def __init__(self, frame: pd.DataFrame, pieces: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        cuts = np.sort(rng.choice(np.arange(1, len(frame)), pieces - 1, replace=False))
        self.frames = np.split(np.arange(len(frame)), cuts)
        self.frame = frame
        self.passes: list[list[str]] = []

    def read(self, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        self.passes.append(list(columns))
        for rows in self.frames:
            yield self.frame.iloc[rows][list(columns)].reset_index(drop=True)

    @property
    def chunks(self) -> Chunks:
        return Chunks(tuple(self.frame.columns), self.read)


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.lognormal(3, 1, rows)
    spend[rng.random(rows) < 0.1] = np.nan
    spend[rng.random(rows) < 0.01] = np.inf
    spend[rng.random(rows) < 0.3] = 0.0  # a point mass
    return pd.DataFrame(
        {
            "spend": spend,
            "count": rng.integers(0, 40, rows),
            "f32": rng.normal(size=rows).astype(np.float32),
            "mcc": pd.Series(rng.choice(["fuel", "grocery", "travel", "b", "a"], rows)).where(
                rng.random(rows) > 0.05
            ),
            "flag": rng.random(rows) < 0.2,
        }
    )


@pytest.mark.parametrize("pieces", [1, 3, 17])
@pytest.mark.parametrize("sample", [300, 10**6])
def test_numeric_bins_from_chunks_equal_the_whole_columns(pieces: int, sample: int) -> None:
    frame = _frame(20_000)
    cut = Cut(frame, pieces)
    settings = BinSettings(bins=10, quantile_sample=sample, seed=7)
    features, rows = fit_features(cut.chunks, ["spend", "count", "f32"], (), settings)
    assert rows == len(frame)
    for name in ("spend", "count", "f32"):
        values = frame[name].to_numpy()
        finite = values[np.isfinite(values)]
        draws = sample_positions(len(values), finite.size, sample, 7)
        picked = finite if draws is None else values[draws][np.isfinite(values[draws])]
        edges = quantile_edges(picked, 10)
        np.testing.assert_array_equal(features[name].edges, edges)
        np.testing.assert_array_equal(features[name].counts, numeric_counts(values, edges))
    # tally, then (only when the finite values outnumber the sample) the sample, then counts
    assert len(cut.passes) == (2 if sample == 10**6 else 2 + 3)


@pytest.mark.parametrize("pieces", [2, 9])
def test_categorical_bins_from_chunks_equal_one_chunk(pieces: int) -> None:
    frame = _frame(5_000, seed=1)
    whole = DriftReference.fit(frame, max_categories=3, categorical=["count"])
    cut = Cut(frame, pieces, seed=2)
    chunked = DriftReference.fit(cut.chunks, max_categories=3, categorical=["count"])
    assert chunked.rows == whole.rows == len(frame)
    for name, feature in whole.features.items():
        other = chunked.features[name]
        assert (other.kind, other.categories) == (feature.kind, feature.categories), name
        np.testing.assert_array_equal(other.edges, feature.edges)
        np.testing.assert_array_equal(other.counts, feature.counts)
    assert whole.features["mcc"].counts[-1] > 0, "nulls have their bin"
    assert len(whole.features["mcc"].categories) == 3  # the rest is (other)


def test_a_window_counted_in_chunks_gives_the_frame_s_psi_table() -> None:
    reference = DriftReference.fit(_frame(8_000, seed=3))
    window = _frame(3_000, seed=4).assign(spend=lambda f: f["spend"] * 2)
    expected = reference.psi_table(window, min_window_rows=100)
    chunked = reference.psi_table(reference.count(Cut(window, 5).chunks), min_window_rows=100)
    pd.testing.assert_frame_equal(chunked, expected)
    assert (expected["status"] == "alert").any()


def test_chunks_of_different_dtypes_are_typed_as_their_concatenation() -> None:
    """An int64 file beside a float64 one: the whole column is float64, so a forced-categorical
    value reads "1.0" in every chunk, and a bool chunk beside an int one is what a frame's concat
    makes it (int64, so numeric: a series' concat would say object)."""
    parts = [
        pd.DataFrame({"code": [1, 2, 2, 3], "mixed": [1, 0, 1, 1]}),
        pd.DataFrame({"code": [1.0, np.nan, 2.0], "mixed": [True, False, True]}),
    ]
    whole = pd.concat(parts, ignore_index=True)
    chunks = Chunks(("code", "mixed"), lambda columns: (p[list(columns)] for p in parts))
    fitted = DriftReference.fit(chunks, categorical=["code"])
    expected = DriftReference.fit(whole, categorical=["code"])
    assert fitted.features["code"].categories == expected.features["code"].categories
    assert "1.0" in fitted.features["code"].categories
    assert fitted.features["mixed"].kind == expected.features["mixed"].kind == "numeric"
    for name in ("code", "mixed"):
        np.testing.assert_array_equal(fitted.features[name].counts, expected.features[name].counts)


def test_a_reference_that_changes_between_passes_fails() -> None:
    frame = _frame(2_000)
    calls = []

    def read(columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        calls.append(columns)
        yield frame[list(columns)].iloc[: 2_000 if len(calls) == 1 else 1_500]

    with pytest.raises(RuntimeError, match="changed while the bins were fitted"):
        fit_features(Chunks(("spend",), read), ["spend"], (), BinSettings(quantile_sample=100))


def test_an_empty_reference_in_chunks_fails_and_an_empty_one_gives_no_event_drift() -> None:
    empty = Chunks(("spend",), lambda columns: iter(()))
    with pytest.raises(ValueError, match="no rows"):
        DriftReference.fit(empty)
    with pytest.raises(ValueError, match="must name|not in the reference"):
        DriftReference.fit(empty, ["nope"])


@pytest.fixture(scope="module")
def fraud():
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    return spec


def test_event_drift_and_shifts_from_chunks_equal_the_frame_s(fraud) -> None:
    reference = _events(9_000, 0, start="2024-12-20")  # its labels known by the window's end
    window = _events(3_000, 1, amount_scale=2.0, start="2025-01-03").assign(
        label_time=lambda f: f["event_time"]
    )
    chunked = Cut(reference, 6)
    whole = event_drift(fraud, reference, window)
    streamed = event_drift(fraud, chunked.chunks, Cut(window, 4).chunks)
    pd.testing.assert_frame_equal(streamed.table, whole.table)
    pd.testing.assert_frame_equal(streamed.breakdown("amount"), whole.breakdown("amount"))
    assert whole.table.set_index("feature").loc["amount", "status"] == "alert"
    expected = shifts(fraud, reference, window)
    pd.testing.assert_frame_equal(shifts(fraud, chunked.chunks, Cut(window, 3).chunks), expected)
    assert "label_rate:fraud" in set(expected["metric"])
    assert all(len(columns) < len(reference.columns) for columns in chunked.passes)
