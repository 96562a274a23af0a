"""Tests for assets.raw.file_source: every format, the mapping, timestamps, derive and the errors."""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from assets.raw.file_source import (
    FileSourceError,
    check_mapping,
    peek_columns,
    read_table,
    resolve_paths,
)
from configs.schema.source import FileSource, FileTable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "files"


def table(**fields: object) -> FileTable:
    """A FileTable validated like the YAML loader would."""
    return FileTable.model_validate(fields)


def read_and_peek(spec: FileTable, base: Path, timestamps: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read the table and check the cheap peek agrees with what was read."""
    frame = read_table(spec, base, timestamps)
    assert peek_columns(spec, base) == list(frame.columns)
    return frame


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# --- csv ------------------------------------------------------------------------------------------


def test_csv_with_header(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "user,item,score\n1,10,0.5\n2,11,1.5\n")
    frame = read_and_peek(table(path="a.csv"), tmp_path)
    assert list(frame.columns) == ["user", "item", "score"]
    assert frame["item"].tolist() == [10, 11]


def test_tsv_with_escaped_and_real_tab(tmp_path: Path) -> None:
    write(tmp_path / "a.tsv", "user\titem\n1\t10\n2\t11\n")
    for separator in ("\t", "\\t"):
        frame = read_and_peek(table(path="a.tsv", separator=separator), tmp_path)
        assert frame.shape == (2, 2)


def test_headerless_with_names(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "1;10\n2;11\n")
    spec = table(path="a.csv", separator=";", header=False, names=["user", "item"])
    frame = read_and_peek(spec, tmp_path)
    assert frame.to_dict("list") == {"user": [1, 2], "item": [10, 11]}


def test_headerless_names_count_mismatch(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "1,10,3\n")
    spec = table(path="a.csv", header=False, names=["user", "item"])
    with pytest.raises(FileSourceError) as err:
        read_table(spec, tmp_path)
    assert err.value.field == "names"


def test_headerless_without_names_gets_positions(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "1|10\n2|11\n")
    spec = table(path="a.csv", separator="|", header=False, columns={"user_id": "0"})
    assert list(read_and_peek(spec, tmp_path).columns) == ["user_id", "1"]


def test_movielens_1m_double_colon_and_latin1() -> None:
    base = FIXTURES / "ml1m_small"
    ratings = table(
        path="ratings.dat",
        separator="::",
        header=False,
        names=["user_id", "item_id", "rating", "ts"],
        timestamp_unit="s",
    )
    frame = read_and_peek(ratings, base, ("ts",))
    assert len(frame) == 10 and frame["ts"].dtype == "datetime64[ns]"
    movies = table(
        path="movies.dat", separator="::", header=False, names=["movieId", "title", "genres"],
        encoding="latin-1",
    )  # fmt: skip
    titles = read_and_peek(movies, base)["title"].tolist()
    assert "Misérables, Les (1995)" in titles


def test_wrong_encoding_names_encoding(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "name,city\nRené,Paris\n", encoding="latin-1")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="a.csv"), tmp_path)
    assert err.value.field == "encoding"
    assert "0xe9 at offset 13" in err.value.message and "latin-1" in err.value.message
    frame = read_table(table(path="a.csv", encoding="latin-1"), tmp_path)
    assert frame["name"].tolist() == ["René"]


def test_glob_concatenates_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "parts" / "b.csv", "x\n3\n")
    write(tmp_path / "parts" / "a.csv", "x\n1\n2\n")
    assert [Path(p).name for p in resolve_paths(table(path="parts/*.csv"), tmp_path)] == [
        "a.csv",
        "b.csv",
    ]
    assert read_and_peek(table(path="parts/*.csv"), tmp_path)["x"].tolist() == [1, 2, 3]


def test_glob_with_different_layouts_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x\n1\n")
    write(tmp_path / "b.csv", "y\n1\n")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="*.csv"), tmp_path)
    assert err.value.field == "path"


def test_missing_path_names_pattern(tmp_path: Path) -> None:
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="nothing/*.csv"), tmp_path)
    assert err.value.field == "path"
    assert str(tmp_path / "nothing" / "*.csv") in err.value.message


def test_fsspec_memory_url() -> None:
    """A URL is outside the project: read only with the source's explicit opt-in."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/playbook-test/x1.csv", b"a,b\n1,2\n")
    fs.pipe("/playbook-test/x2.csv", b"a,b\n3,4\n")
    url = {"path": "memory://playbook-test/x*.csv"}
    with pytest.raises(FileSourceError, match="allow_outside_project"):
        read_table(table(**url), Path("/unused"))
    source = FileSource.model_validate(
        {"kind": "file", "tables": {"events": url}, "allow_outside_project": True}
    )
    frame = read_and_peek(source.tables["events"], Path("/unused"))
    assert frame["a"].tolist() == [1, 3]


# --- parquet --------------------------------------------------------------------------------------


def test_parquet_glob_and_named_index(tmp_path: Path) -> None:
    pd.DataFrame({"user": [1, 2], "ts": [1.0, 2.0]}).to_parquet(tmp_path / "p1.parquet")
    pd.DataFrame({"user": [3], "ts": [3.0]}).to_parquet(tmp_path / "p2.parquet")
    frame = read_and_peek(table(path="p*.parquet", format="parquet"), tmp_path)
    assert frame["user"].tolist() == [1, 2, 3]
    indexed = pd.DataFrame({"user": [1], "v": [2]}).set_index("user")
    indexed.to_parquet(tmp_path / "indexed.parquet")
    spec = table(path="indexed.parquet", format="parquet", columns={"user_id": "user"})
    assert list(read_and_peek(spec, tmp_path).columns) == ["user_id", "v"]


def test_parquet_tz_aware_to_naive_utc(tmp_path: Path) -> None:
    stamps = pd.to_datetime(["2024-01-01 12:00"]).tz_localize("Europe/Paris")
    pd.DataFrame({"ts": stamps}).to_parquet(tmp_path / "t.parquet")
    frame = read_table(table(path="t.parquet", format="parquet"), tmp_path, ["ts"])
    assert frame["ts"].dtype == "datetime64[ns]"
    assert frame["ts"].iloc[0] == pd.Timestamp("2024-01-01 11:00")


def test_not_a_parquet_file(tmp_path: Path) -> None:
    write(tmp_path / "x.parquet", "not parquet")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="x.parquet", format="parquet"), tmp_path)
    assert err.value.field == "format"


# --- timestamps -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "value"), [("s", 1704067200), ("ms", 1704067200123)])
def test_epoch_units(tmp_path: Path, unit: str, value: int) -> None:
    write(tmp_path / "a.csv", f"ts,x\n{value},1\n")
    frame = read_table(table(path="a.csv", timestamp_unit=unit), tmp_path, ["ts", "absent"])
    assert frame["ts"].dtype == "datetime64[ns]"
    assert frame["ts"].iloc[0].floor("s") == pd.Timestamp("2024-01-01")


def test_timestamp_format_and_offsets(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "ts\n01/02/2024 10:30\n03/02/2024 00:00\n")
    frame = read_table(table(path="a.csv", timestamp_format="%d/%m/%Y %H:%M"), tmp_path, ["ts"])
    assert frame["ts"].tolist() == [pd.Timestamp("2024-02-01 10:30"), pd.Timestamp("2024-02-03")]
    write(tmp_path / "b.csv", "ts\n2024-01-01T10:00+02:00\n2024-01-01T10:00-01:00\n")
    frame = read_table(table(path="b.csv"), tmp_path, ["ts"])
    assert frame["ts"].tolist() == [
        pd.Timestamp("2024-01-01 08:00"),
        pd.Timestamp("2024-01-01 11:00"),
    ]


def test_unparseable_timestamp(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "ts\n2024-01-01 10:00\nyesterday\n")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="a.csv", timestamp_format="%Y-%m-%d %H:%M"), tmp_path, ["ts"])
    assert err.value.field == "timestamp_format"
    assert "row 1" in err.value.message and "yesterday" not in err.value.message
    write(tmp_path / "b.csv", "ts\n1704067200\nsoon\n")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="b.csv", timestamp_unit="s"), tmp_path, ["ts"])
    assert err.value.field == "timestamp_unit" and "row 1" in err.value.message


def test_numbers_without_unit_ask_for_unit(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "ts\n1704067200\n")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="a.csv"), tmp_path, ["ts"])
    assert err.value.field == "timestamp_unit"


# --- mapping and derive ---------------------------------------------------------------------------


def movielens_ratings() -> FileTable:
    return table(
        path="movielens_small/ratings.csv",
        columns={"user_id": "userId", "item_id": "movieId"},
        timestamp_unit="s",
        derive={"liked": {"column": "rating", "op": ">=", "value": 4}},
    )


def test_movielens_mapping_and_derive() -> None:
    frame = read_and_peek(movielens_ratings(), FIXTURES, ("timestamp",))
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp", "liked"]
    assert len(frame) == 50 and frame["liked"].dtype == np.int8
    assert frame["liked"].tolist() == (frame["rating"] >= 4).astype(int).tolist()
    assert frame["timestamp"].min() >= pd.Timestamp("2024-03-01")
    assert frame["timestamp"].max() < pd.Timestamp("2024-03-06")
    movies = read_and_peek(table(path="movielens_small/movies.csv"), FIXTURES)
    assert set(frame["item_id"]) <= set(movies["movieId"])
    assert movies["genres"].str.contains("|", regex=False).any()


def test_derive_may_name_the_file_column(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "stars\n5\n1\n")
    spec = table(
        path="a.csv",
        columns={"rating": "stars"},
        derive={"liked": {"column": "stars", "op": ">", "value": 3}},
    )
    assert read_and_peek(spec, tmp_path)["liked"].tolist() == [1, 0]


def test_mapping_missing_column_did_you_mean() -> None:
    spec = table(path="movielens_small/ratings.csv", columns={"user_id": "userid"})
    with pytest.raises(FileSourceError) as err:
        check_mapping(spec, FIXTURES)
    assert err.value.field == "columns.user_id"
    assert "file column 'userid' not found" in err.value.message
    assert "it has: userId, movieId, rating, timestamp" in err.value.message
    assert "(did you mean 'userId'?)" in err.value.message
    with pytest.raises(FileSourceError):
        read_table(spec, FIXTURES)


def test_derive_missing_column() -> None:
    spec = table(
        path="movielens_small/ratings.csv",
        derive={"liked": {"column": "ratings", "op": ">=", "value": 4}},
    )
    with pytest.raises(FileSourceError) as err:
        check_mapping(spec, FIXTURES)
    assert err.value.field == "derive.liked.column" and "did you mean 'rating'" in err.value.message


def test_mapping_collision(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "a,b\n1,2\n")
    with pytest.raises(FileSourceError) as err:
        check_mapping(table(path="a.csv", columns={"a": "b"}), tmp_path)
    assert err.value.field == "columns.a"


def test_derive_with_missing_values(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "rating,x\n4,1\n,2\n")
    spec = table(path="a.csv", derive={"liked": {"column": "rating", "op": ">=", "value": 4}})
    with pytest.raises(FileSourceError) as err:
        read_table(spec, tmp_path)
    assert err.value.field == "derive.liked.column" and "row 1" in err.value.message


# --- libsvm / LETOR -------------------------------------------------------------------------------


def test_letor_with_qid_and_comments() -> None:
    spec = table(path="letor_small/train.txt", format="libsvm")
    frame = read_and_peek(spec, FIXTURES)
    assert list(frame.columns) == ["label", "qid", "f1", "f2", "f3", "f4", "f5"]
    assert len(frame) == 60 and frame["qid"].nunique() == 6
    assert frame["label"].dtype == np.int64 and set(frame["label"]) <= {0, 1, 2}
    assert frame["qid"].dtype == np.int64 and frame["f1"].dtype == np.float64


def test_libsvm_mapping_sparse_and_float_labels(tmp_path: Path) -> None:
    write(tmp_path / "s.txt", "0.5 qid:1 1:2 3:0\n1.5 qid:1 2:1.5 # doc b\n")
    spec = table(path="s.txt", format="libsvm", columns={"relevance": "label", "query_id": "qid"})
    frame = read_and_peek(spec, tmp_path)
    assert list(frame.columns) == ["relevance", "query_id", "f1", "f2", "f3"]
    assert frame["relevance"].dtype == np.float64
    assert frame[["f1", "f2", "f3"]].to_numpy().tolist() == [[2.0, 0.0, 0.0], [0.0, 1.5, 0.0]]


def test_libsvm_group_file(tmp_path: Path) -> None:
    write(tmp_path / "d.txt", "1 1:1\n0 1:2\n2 2:1\n0 1:1\n1 2:2\n")
    write(tmp_path / "d.txt.query", "2\n3\n")
    spec = table(path="d.txt", format="libsvm", group_file="d.txt.query")
    frame = read_and_peek(spec, tmp_path)
    assert frame["qid"].tolist() == [0, 0, 1, 1, 1]
    write(tmp_path / "bad.query", "2\n2\n")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="d.txt", format="libsvm", group_file="bad.query"), tmp_path)
    assert err.value.field == "group_file" and "sum to 4" in err.value.message


def test_libsvm_malformed(tmp_path: Path) -> None:
    write(tmp_path / "d.txt", "1 1:1\nhello 1:x\n")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="d.txt", format="libsvm"), tmp_path)
    assert err.value.field == "format"


# --- public-data shapes ---------------------------------------------------------------------------


def test_creditcard_shape() -> None:
    spec = table(
        path="creditcard_small.csv",
        columns={"label": "Class"},
        derive={"large": {"column": "Amount", "op": ">", "value": 100}},
    )
    frame = read_and_peek(spec, FIXTURES)
    assert list(frame.columns) == ["Time", "V1", "V2", "V3", "V4", "Amount", "label", "large"]
    assert len(frame) == 80 and 0 < frame["label"].sum() < 10
    assert frame["Time"].is_monotonic_increasing


def test_libsvm_comment_lines_crlf_and_mixed_qid(tmp_path: Path) -> None:
    write(tmp_path / "d.txt", "# qid:9 header comment\r\n1 qid:4 1:1\r\n\r\n0 qid:5 2:1 # x\r\n")
    frame = read_and_peek(table(path="d.txt", format="libsvm"), tmp_path)
    assert frame[["label", "qid"]].to_numpy().tolist() == [[1, 4], [0, 5]]
    write(tmp_path / "m.txt", "1 qid:4 1:1\n0 2:1\n")
    with pytest.raises(FileSourceError) as err:
        read_table(table(path="m.txt", format="libsvm"), tmp_path)
    assert err.value.field == "format" and "some lines" in err.value.message


def test_row_id_numbers_rows_of_files_without_an_id(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("Time,Amount\n0,1.5\n5,2.0\n9,3.0\n")
    table = FileTable(path="t.csv", row_id="transaction_id", columns={"event_time": "Time"})
    frame = read_table(table, tmp_path)
    assert frame["transaction_id"].tolist() == [0, 1, 2]
    assert peek_columns(table, tmp_path) == list(frame.columns)
    clash = FileTable(path="t.csv", row_id="Amount")
    with pytest.raises(FileSourceError) as caught:
        peek_columns(clash, tmp_path)
    assert caught.value.field == "row_id"
