"""A training set read by split from its file equals the loaded set cut in memory, and its rows
put back in the set's order equal the set's: what the model stage reads instead of the whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from assets.training.set_splits import SetSplits, file_chunks


def _set(rows: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    split = rng.choice(["train", "validation", "test"], rows, p=[0.6, 0.2, 0.2])
    return pd.DataFrame(
        {
            "event_time": pd.date_range("2025-01-01", periods=rows, freq="min"),
            "card_id": rng.integers(0, 20, rows),
            "amount": rng.normal(size=rows),
            "count": pd.array(rng.integers(0, 5, rows), dtype="Int64"),
            "mcc": pd.Categorical(rng.choice(["a", "b"], rows)),
            "split": pd.Categorical(split, categories=["test", "train", "validation"]),
        }
    )


@pytest.fixture
def written(tmp_path) -> tuple[UPath, pd.DataFrame]:
    path = UPath(tmp_path / "set.parquet")
    _set().to_parquet(path, index=False, row_group_size=64)  # several row groups
    return path, pd.read_parquet(path)  # as the IO manager loads it


def test_splits_read_from_the_file_equal_the_loaded_set_cut(written) -> None:
    path, whole = written
    splits = SetSplits.read(path, "split")
    assert list(splits.parts) == ["train", "validation", "test"]  # the model's order
    for name in ("train", "validation", "test"):
        expected = whole[whole["split"] == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(splits.part(name), expected, check_categorical=False)
        assert splits.size(name) == len(expected)
    assert splits.rows == len(whole) and list(splits.columns) == list(whole.columns)


def test_a_streamed_split_is_read_a_batch_at_a_time_and_equals_the_held_one(written) -> None:
    """The train split left in the file: its chunks, put together, are the split read whole,
    typed as the file reads; a learner that needs a frame still gets the split whole."""
    path, whole = written
    splits = SetSplits.read(path, "split", streamed=("train",))
    held = SetSplits.read(path, "split")
    assert list(splits.parts) == ["validation", "test"] and splits.names == list(held.parts)
    expected = held.part("train")
    chunks = list(splits.chunks("train")())
    assert len(chunks) > 1  # several row groups: several chunks
    pd.testing.assert_frame_equal(
        pd.concat(chunks, ignore_index=True), expected, check_categorical=False
    )
    assert splits.size("train") == len(expected)
    pd.testing.assert_frame_equal(splits.part("train"), expected)
    columns = ["amount", "count"]
    pd.testing.assert_frame_equal(splits.chunks("train").frame(columns), expected[columns])
    picked = np.array([0, 63, 64, 200, len(expected) - 1])
    pd.testing.assert_frame_equal(
        splits.chunks("train").rows_at(picked, columns),
        expected[columns].iloc[picked].reset_index(drop=True),
    )
    in_memory = SetSplits.of(whole, "split", streamed=("train",))
    pd.testing.assert_frame_equal(in_memory.chunks("train").frame(columns), expected[columns])


def test_a_split_missing_from_whole_batches_gives_no_empty_chunk(tmp_path) -> None:
    """A set in time order has batches of one split only: the others' chunks skip them."""
    path = UPath(tmp_path / "sorted.parquet")
    frame = _set().sort_values("split", kind="stable").reset_index(drop=True)
    frame.to_parquet(path, index=False, row_group_size=64)
    for name in ("train", "validation", "test"):
        chunks = list(file_chunks(path, "split", name, batch_rows=64)(["amount", "split"]))
        assert chunks and all(len(chunk) for chunk in chunks)
        expected = frame.loc[frame["split"] == name, ["amount"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True)[["amount"]], expected)


def test_rows_back_in_the_set_s_order(written) -> None:
    path, whole = written
    splits = SetSplits.read(path, "split")
    columns = ["card_id", "event_time", "count"]
    pd.testing.assert_frame_equal(splits.whole(columns), whole[columns])
    pd.testing.assert_frame_equal(
        splits.head(7).drop(columns="split"), whole.head(7).drop(columns="split")
    )
    same = SetSplits.of(whole, "split")
    pd.testing.assert_frame_equal(same.whole(columns), whole[columns])


def test_a_split_the_set_lacks_is_empty_with_the_columns_and_no_row_may_lack_one(tmp_path):
    frame = _set(50).assign(split=lambda f: f["split"].astype(str).replace("test", "train"))
    splits = SetSplits.of(frame, "split")
    assert splits.part("test").empty and list(splits.part("test").columns) == list(frame.columns)
    with pytest.raises(ValueError, match="2 rows have no 'split'"):
        SetSplits.of(frame.assign(split=frame["split"].where(frame.index > 1)), "split")


def test_the_first_value_is_the_set_s_first(written) -> None:
    path, whole = written
    splits = SetSplits.read(path, "split")
    late = whole["amount"].where(whole.index >= 123)  # null before row 123, whatever its split
    frame = whole.assign(amount=late)
    assert SetSplits.of(frame, "split").first_value("amount") == late.iloc[123]
    assert SetSplits.of(frame.assign(amount=np.nan), "split").first_value("amount") is None
    assert splits.first_value("card_id") == whole["card_id"].iloc[0]


def test_features_of_a_set_by_split_are_the_whole_set_s() -> None:
    """A list column with values in the test split only is still a list column."""
    from assets.models.train import feature_columns
    from configs import CONFIG_DIR
    from configs.schema import load_specs

    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    frame = _set(200)
    frame["v__amount"] = frame["amount"]
    frame["v__recent"] = [[1, 2] if s == "test" else None for s in frame["split"]]  # test only
    whole = feature_columns(spec, "scorer", frame)
    assert "v__amount" in whole and "v__recent" not in whole
    assert feature_columns(spec, "scorer", SetSplits.of(frame, "split")) == whole
