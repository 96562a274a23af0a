"""A split plan counted chunk by chunk (the log read a file at a time) against the plan of the
whole frame: the same windows, rows, groups, time ranges and label rates, for every form of
split: span fractions, row fractions (the k-th time found from per-day counts, ties across the
cut included), cut dates, groups, and a fixed test file's rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from assets.split.plan import plan_split, plan_split_chunks
from assets.split.plan_counts import TimeStats
from configs.schema.split import TEST_FILE_ROWS, SplitSpec
from runtime.table_chunks import Chunks

LABELS = {"click": "clicked", "buy": "bought"}


def _events(n: int, seed: int, ties: bool) -> pd.DataFrame:
    """``n`` events over about 20 days, shuffled; with ``ties``, many share a second."""
    rng = np.random.default_rng(seed)
    seconds = np.cumsum(rng.integers(0 if ties else 1, 3_600, n))
    return pd.DataFrame(
        {
            "event_time": pd.Timestamp("2024-03-01") + pd.to_timedelta(seconds, "s"),
            "query": rng.integers(0, 300, n),
            "clicked": rng.integers(0, 2, n),
            "bought": rng.random(n) < 0.1,
        }
    ).sample(frac=1.0, random_state=seed)


def _chunks(events: pd.DataFrame, pieces: int, seed: int):
    """The rows cut at random places into ``pieces`` chunks (some empty), as files would be."""
    cuts = np.sort(np.random.default_rng(seed).integers(0, len(events) + 1, pieces - 1))
    bounds = [0, *cuts.tolist(), len(events)]

    def read(columns: list[str]) -> Iterator[pd.DataFrame]:
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            yield events.iloc[start:end][columns]

    return Chunks(tuple(events.columns), read)


SPECS = {
    "span": SplitSpec(gap="6h"),
    "rows": SplitSpec(by="rows", train=0.7, validation=0.2, test=0.1, gap="1h"),
    "rows, no gap": SplitSpec(by="rows", train=0.5, validation=0.25, test=0.25, gap="0s"),
    "dated": SplitSpec(
        validation_from=pd.Timestamp("2024-03-10"), test_from=pd.Timestamp("2024-03-15")
    ),
    "group": SplitSpec(method="group", train=0.6, validation=0.2, test=0.2),
}


@pytest.mark.parametrize("form", list(SPECS))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("pieces", [2, 7])
def test_a_plan_in_chunks_is_the_whole_frame_plan(form: str, ties: bool, pieces: int) -> None:
    events = _events(3_001, seed=pieces, ties=ties)
    spec = SPECS[form]
    group = "query" if form == "group" else None
    expected = plan_split(events, spec, "event_time", group, LABELS)
    got = plan_split_chunks(_chunks(events, pieces, seed=3), spec, "event_time", group, LABELS)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert expected["rows"].sum() == len(events)


def test_a_test_file_in_chunks_is_the_whole_frame_plan() -> None:
    events = _events(2_000, seed=1, ties=True)
    events[TEST_FILE_ROWS] = np.random.default_rng(0).random(len(events)) < 0.2
    spec = SplitSpec(by="rows", train=0.8, validation=0.2, test_file="test.csv", gap="0s")
    expected = plan_split(events, spec, "event_time", None, LABELS)
    got = plan_split_chunks(_chunks(events, 5, seed=9), spec, "event_time", None, LABELS)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    rows = dict(zip(expected.split, expected.rows, strict=True))
    assert rows["test"] == int(events[TEST_FILE_ROWS].sum())


def test_the_kth_time_is_the_sorted_kth_across_days_and_ties() -> None:
    events = _events(5_000, seed=4, ties=True)
    times = events["event_time"]
    stats = TimeStats()
    pieces = [times.iloc[rows] for rows in np.array_split(np.arange(len(times)), 6)]
    for piece in pieces:
        stats.add(piece)
    ordered = np.sort(times.to_numpy())
    ks = [0, 1, 2_499, 2_500, 4_998, 4_999]
    assert stats.kth(ks, lambda: iter(pieces)) == [pd.Timestamp(ordered[k]) for k in ks]
    assert (stats.first, stats.last, stats.count) == (times.min(), times.max(), 5_000)


def test_an_empty_log_in_chunks_is_the_same_error() -> None:
    empty = _events(10, seed=0, ties=False).iloc[:0]
    with pytest.raises(ValueError, match="cannot plan a split of an empty events table"):
        chunks = Chunks(tuple(empty.columns), lambda columns: iter([empty, empty]))
        plan_split_chunks(chunks, SplitSpec(), "event_time", None, {})
