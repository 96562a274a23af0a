"""A training set written in parts is the frame the whole-frame build gives, read back.

The parts disagree on dtypes the way chunks of one set do: an integer feature with nulls in one
part only (numpy ``int64`` beside pandas ``Int64``), a boolean likewise, a text column that is
all null in the first part, a request feature ``float64`` in one and ``Float64`` in another, and
each part's split a category of its own values. The file must read back as ``pandas.concat`` of
the parts with the split's categories the splits present, sorted: what the IO manager wrote
and read for the whole frame. A failed write leaves an earlier file as it was.
"""

from __future__ import annotations

import pandas as pd
import pytest
from upath import UPath

from assets.training.set_file import SetParts
from assets.training.set_splits import read_split


def _part(split: list[str], count: list, flag: list, text: list, ratio: list) -> pd.DataFrame:
    count_dtype = "Int64" if any(c is None for c in count) else "int64"
    flag_dtype = "boolean" if any(f is None for f in flag) else "bool"
    ratio_dtype = "Float64" if any(r is None for r in ratio) else "float64"
    return pd.DataFrame(
        {
            "event_time": pd.date_range("2025-01-01", periods=len(split), freq="h"),
            "count": pd.Series(count, dtype=count_dtype),
            "flag": pd.Series(flag, dtype=flag_dtype),
            "text": pd.Series(text, dtype=object),
            "ratio": pd.Series(ratio, dtype=ratio_dtype),
            "split": pd.Series(split, dtype="category"),
        }
    )


PARTS = [
    _part(["train", "train"], [1, 2], [True, False], [None, None], [0.5, 1.5]),
    _part(["train", "validation"], [None, 4], [None, True], ["a", None], [None, 2.0]),
    _part(["validation", "validation"], [5, 6], [False, False], ["b", "c"], [3.0, 4.5]),
]


def test_parts_read_back_as_the_whole_frame(tmp_path) -> None:
    parts = SetParts(tmp_path / "parts", "split")
    for part in PARTS:
        parts.add(part)
    seen: list[pd.DataFrame] = []
    target = UPath(tmp_path / "set.parquet")
    assert parts.write(target, seen.append) == 6
    whole = pd.concat(PARTS, ignore_index=True)
    whole["split"] = whole["split"].astype(pd.CategoricalDtype(["train", "validation"]))
    whole.to_parquet(tmp_path / "whole.parquet", index=False)  # as the IO manager did
    expected = pd.read_parquet(tmp_path / "whole.parquet")
    got = pd.read_parquet(target)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert [str(t) for t in got.dtypes[["count", "flag", "ratio"]]] == [
        "Int64",
        "boolean",
        "Float64",
    ]
    assert list(got["split"].cat.categories) == ["train", "validation"]  # no test rows: none
    # the sink saw each part once, cast to the whole set's dtypes
    pd.testing.assert_frame_equal(pd.concat(seen, ignore_index=True), expected, check_exact=True)


def test_a_failed_write_keeps_the_earlier_set(tmp_path) -> None:
    target = UPath(tmp_path / "set.parquet")
    earlier = SetParts(tmp_path / "earlier", "split")
    earlier.add(PARTS[0])
    earlier.write(target)
    before = target.read_bytes()
    parts = SetParts(tmp_path / "parts", "split")
    for part in PARTS:
        parts.add(part)

    def failing(_: pd.DataFrame) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        parts.write(target, failing)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_parts_must_share_their_columns(tmp_path) -> None:
    parts = SetParts(tmp_path / "parts", "split")
    parts.add(PARTS[0])
    with pytest.raises(ValueError, match="columns differ"):
        parts.add(PARTS[1].drop(columns="text"))


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_one_split_reads_as_the_whole_frame_s_rows_of_it(tmp_path, split: str) -> None:
    """What drift reads: the validation and test rows alone, as the loaded set filtered."""
    parts = SetParts(tmp_path / "parts", "split")
    for part in PARTS:
        parts.add(part)
    target = UPath(tmp_path / "set.parquet")
    parts.write(target)
    whole = pd.read_parquet(target)
    expected = whole[whole["split"] == split].reset_index(drop=True)
    got = read_split(target, split, "split")
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_categorical=False)
    assert len(got) == {"train": 3, "validation": 3, "test": 0}[split]
    assert got["split"].astype(str).eq(split).all()
