"""Issue 15, item 7 on the file side: validate reads what a run would read.

libsvm columns come from every line (streamed, bounded memory), values a ``timestamp_unit`` or a
``derive`` rule cannot parse are found in the whole file, and a run that meets one anyway names
the YAML line, as validate would have.
"""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import dump_svmlight_file

from assets.raw import file_source, libsvm
from assets.raw.file_source import (
    FileSourceError,
    check_file_values,
    check_mapping,
    peek_columns,
    read_table,
)
from assets.raw.tables import all_events, entity_table, events_by_day
from configs.schema import load_spec
from configs.schema.issues import SpecFieldError
from configs.schema.source import FileTable
from dagster_project.use_case_files import load_use_cases
from tests.real_data import (
    LATE_FEATURE_LINE,
    LETOR_FEATURES,
    letor_config,
    line_of,
    ratings_config,
    write_letor,
    write_ratings_dat,
)


def _libsvm(path: str, **fields: object) -> FileTable:
    return FileTable.model_validate({"path": path, "format": "libsvm", **fields})


# --- libsvm: every line -----------------------------------------------------------------------------


def test_feature_first_used_on_line_500_is_a_column(tmp_path: Path) -> None:
    data = write_letor(tmp_path / "train.txt")
    assert f" {LETOR_FEATURES}:" in data.read_text().splitlines()[LATE_FEATURE_LINE - 1]
    assert not any(f" {LETOR_FEATURES}:" in line for line in data.read_text().splitlines()[:499])
    table = _libsvm("train.txt", columns={"query_id": "qid", "relevance": "label"})
    columns = peek_columns(table, tmp_path)
    assert columns == list(read_table(table, tmp_path).columns)
    assert columns[-1] == f"f{LETOR_FEATURES}" and len(columns) == 2 + LETOR_FEATURES
    config = letor_config(tmp_path / "letor.yaml", "train.txt", '["f*"]')
    (spec,) = load_use_cases([config])  # every declared feature is found: no problem
    assert len(spec.features["letor"].passthrough) == LETOR_FEATURES


@pytest.mark.parametrize("seed", range(6))
def test_scan_finds_what_the_parser_reads(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random sparse files, written by scikit-learn itself, with comments, blank and indented
    lines and CRLF: the byte scan and the run's parser agree on rows, qids and features."""
    rng = np.random.default_rng(seed)
    rows, width = 400, int(rng.integers(5, 3000))
    x = np.where(rng.random((rows, width)) < 0.02, rng.normal(size=(rows, width)), 0.0)
    path = tmp_path / "d.txt"
    qids = {"query_id": np.arange(rows) // 10} if seed % 2 else {}
    labels = rng.integers(0, 5, rows)
    dump_svmlight_file(x, labels, str(path), zero_based=seed < 3, comment="made 1:2 up", **qids)
    tail = b"\t1 qid:99 7:1 # tail\n" if qids else b"\t1 7:1 # tail\n"  # an indented line
    text = path.read_bytes().replace(b"\n", b" # 3:4\r\n", 5) + b"\n   \n" + tail
    path.write_bytes(text)
    table = _libsvm("d.txt")
    expected = list(read_table(table, tmp_path).columns)
    monkeypatch.setattr(libsvm, "BLOCK_BYTES", 4096)  # many blocks, lines cut across them
    assert peek_columns(table, tmp_path) == expected


def test_scan_memory_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 12 MB file scanned in 256 KB blocks never holds more than a few blocks' worth."""
    rng = np.random.default_rng(0)
    line = " ".join(f"{i}:{v:.5f}" for i, v in enumerate(rng.random(100), start=1))
    path = tmp_path / "big.txt"
    with path.open("w") as out:
        for row in range(12_000):
            out.write(f"{row % 5} qid:{row // 40} {line}\n")
    assert path.stat().st_size > 12e6
    monkeypatch.setattr(libsvm, "BLOCK_BYTES", 256 << 10)
    tracemalloc.start()
    try:
        columns = peek_columns(_libsvm("big.txt"), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert columns == ["label", "qid", *[f"f{i}" for i in range(1, 101)]]
    assert peak < 8 * (256 << 10), f"peak {peak:,} bytes"


def test_malformed_line_is_named_by_validate(tmp_path: Path) -> None:
    data = write_letor(tmp_path / "train.txt")
    lines = data.read_text().splitlines(keepends=True)
    lines[1233] = "2 qid:24 1:0.5 7:oops\n"
    data.write_text("".join(lines))
    table = _libsvm("train.txt")
    check_mapping(table, tmp_path)  # the cheap check does not parse values
    with pytest.raises(FileSourceError) as caught:
        check_file_values(table, tmp_path)
    assert caught.value.field == "format" and "line 1234" in caught.value.message


def test_qid_on_some_lines_and_group_file_are_caught_by_the_scan(tmp_path: Path) -> None:
    text = write_letor(tmp_path / "train.txt").read_text()
    (tmp_path / "mixed.txt").write_text(text + "1 3:0.5\n")
    with pytest.raises(FileSourceError, match="qid: on some lines"):
        peek_columns(_libsvm("mixed.txt"), tmp_path)
    (tmp_path / "plain.txt").write_text(re.sub(r" qid:\d+", "", text))
    (tmp_path / "plain.query").write_text("1000\n1000\n999\n")
    with pytest.raises(FileSourceError) as caught:
        peek_columns(_libsvm("plain.txt", group_file="plain.query"), tmp_path)
    assert caught.value.field == "group_file" and "sum to 2999" in caught.value.message
    (tmp_path / "plain.query").write_text("1000\n1000\n1000\n")
    assert peek_columns(_libsvm("plain.txt", group_file="plain.query"), tmp_path)[:2] == [
        "label",
        "qid",
    ]


# --- csv: every value the YAML says how to parse ----------------------------------------------------


def test_ratings_with_a_header_line_fail_validate_at_timestamp_unit(tmp_path: Path) -> None:
    write_ratings_dat(tmp_path / "ratings.dat")
    config = ratings_config(tmp_path / "ratings.yaml", "ratings.dat")
    spec = load_spec(config)  # the cheap checks pass: the header line has four fields too
    table = spec.source.tables["events"]
    assert table.timestamp_columns == ["event_time"]
    with pytest.raises(FileSourceError) as caught:
        check_file_values(table, tmp_path)
    assert caught.value.field == "timestamp_unit"
    message = caught.value.message
    assert "'event_time' should hold epoch numbers in unit 's'; 1 rows of" in message
    assert "row 0, line 1" in message and "set header: true" in message
    assert "Timestamp" not in message  # the file's content is not echoed


def test_a_stray_header_in_the_middle_is_found_past_the_first_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_source, "VALUE_ROWS", 300)
    write_ratings_dat(tmp_path / "ratings.dat", header_at=1500)  # two files concatenated
    spec = load_spec(ratings_config(tmp_path / "ratings.yaml", "ratings.dat"))
    with pytest.raises(FileSourceError) as caught:
        check_file_values(spec.source.tables["events"], tmp_path)
    assert "row 1500, line 1501" in caught.value.message
    assert "header: true" not in caught.value.message  # not the first line: no such hint
    write_ratings_dat(tmp_path / "ratings.dat", header=False)
    check_file_values(spec.source.tables["events"], tmp_path)  # a clean file passes


def test_derive_source_with_text_is_counted(tmp_path: Path) -> None:
    rating = ["x" if i in (40, 41) else str(i % 5) for i in range(90)]
    rows = "".join(f"{i},{i % 7},{rating[i]},{1709251200 + i}\n" for i in range(90))
    (tmp_path / "r.csv").write_text("userId,movieId,rating,timestamp\n" + rows)
    table = FileTable.model_validate(
        {"path": "r.csv", "derive": {"liked": {"column": "rating", "op": ">=", "value": 4}}}
    )
    with pytest.raises(FileSourceError) as caught:
        check_file_values(table, tmp_path)
    assert caught.value.field == "derive.liked.column"
    assert "2 rows of" in caught.value.message and "row 40, line 42" in caught.value.message
    with pytest.raises(FileSourceError) as run:  # the run says the same, without the file
        read_table(table, tmp_path)
    assert run.value.field == "derive.liked.column" and "2 rows do not" in run.value.message


def test_parquet_text_timestamps_are_parsed_in_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_source, "VALUE_ROWS", 100)
    when = [f"2024-03-0{1 + i % 5} 10:00" for i in range(1000)]
    when[640] = "n/a"
    pd.DataFrame({"id": range(1000), "at": when}).to_parquet(tmp_path / "t.parquet")
    table = FileTable.model_validate(
        {"path": "t.parquet", "format": "parquet", "timestamp_format": "%Y-%m-%d %H:%M"}
    )
    table.declare_timestamps(["at"])
    with pytest.raises(FileSourceError) as caught:
        check_file_values(table, tmp_path)
    assert caught.value.field == "timestamp_format"
    assert "1 rows of" in caught.value.message and "(the first: row 640)" in caught.value.message


def test_missing_column_lists_ten_candidates(tmp_path: Path) -> None:
    pd.DataFrame({f"V{i}": [0.0] for i in range(218)}).to_csv(tmp_path / "w.csv", index=False)
    table = FileTable.model_validate({"path": "w.csv", "columns": {"amount": "Amount"}})
    with pytest.raises(FileSourceError) as caught:
        peek_columns(table, tmp_path)
    assert "V0, V1, V2, V3, V4, V5, V6, V7, V8, V9, ... (218 in all)" in caught.value.message
    assert "V10" not in caught.value.message


# --- a run names the YAML line -------------------------------------------------------------------


def test_a_run_that_meets_a_bad_value_names_the_yaml_line(tmp_path: Path) -> None:
    write_ratings_dat(tmp_path / "ratings.dat", header_at=700)
    config = ratings_config(tmp_path / "ratings.yaml", "ratings.dat")
    (spec,) = load_use_cases([config])  # without validate's thorough checks
    with pytest.raises(SpecFieldError) as caught:
        events_by_day(spec, ["2024-03-01"])
    where = f"{config}:{line_of(config, 'timestamp_unit')}: source.tables.events.timestamp_unit:"
    assert str(caught.value).startswith(where)
    assert "\n" not in str(caught.value) and "row 700" in str(caught.value)


def test_a_run_without_an_entity_file_names_the_entity(tmp_path: Path) -> None:
    write_ratings_dat(tmp_path / "ratings.dat", header=False)
    config = ratings_config(tmp_path / "ratings.yaml", "ratings.dat")
    spec = load_spec(config)
    assert len(all_events(spec)) == 2000
    entity = spec.entities["item"].model_copy(update={"table": "items"})
    broken = spec.model_copy(update={"entities": {**spec.entities, "item": entity}})
    with pytest.raises(SpecFieldError, match=r"entities\.item\.table: source\.tables has no"):
        entity_table(broken.with_path(config), "items")
