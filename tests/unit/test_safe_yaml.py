"""configs.schema.safe_yaml and its use by load_spec: hostile YAML is refused, fast, with a line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from configs import CONFIG_DIR
from configs.schema import SpecError, load_spec
from configs.schema.safe_yaml import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_VALUES,
    YamlLoadError,
    parse_yaml,
    read_yaml,
)
from tests.conftest import write

BILLION_LAUGHS = "\n".join(
    [
        'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)),
        "name: *a9",
    ]
)


def refused(text: str) -> YamlLoadError:
    with pytest.raises(YamlLoadError) as err:
        parse_yaml(text)
    return err.value


def test_duplicate_keys_name_the_key_and_both_lines() -> None:
    (top,) = refused("name: a\nname: b\n").problems
    assert (top.line, top.field) == (2, "name")
    assert "duplicate key 'name' (first at line 1, again at line 2)" in top.message
    nested = refused("source:\n  kind: file\n  seed: 1\n  kind: file\nx: 1\nx: 2\n").problems
    assert [(p.line, p.field) for p in nested] == [(4, "source.kind"), (6, "x")]


def test_equal_keys_in_different_mappings_and_types_are_not_duplicates() -> None:
    data = parse_yaml("a: {k: 1}\nb: {k: 2}\nc: {1: x, '1': y}\n").data
    assert data == {"a": {"k": 1}, "b": {"k": 2}, "c": {1: "x", "1": "y"}}


def test_merge_keys_may_be_overridden() -> None:
    data = parse_yaml("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\n").data
    assert data["use"] == {"x": 1, "y": 3}


def test_modest_aliases_still_work() -> None:
    document = parse_yaml("owners: &o [team:a, team:b]\ntags: {x: y}\nmore: *o\n")
    assert document.data["more"] == ["team:a", "team:b"]
    assert document.node is not None


def test_billion_laughs_is_refused_fast_with_its_line() -> None:
    assert len(BILLION_LAUGHS) < 600
    start = time.process_time()
    (problem,) = refused(BILLION_LAUGHS).problems
    assert time.process_time() - start < 0.2
    assert f"more than {MAX_VALUES:,} values" in problem.message
    assert "alias bomb" in problem.message
    assert problem.line is not None and problem.field.startswith("a")


def test_recursive_alias_and_deep_nesting_are_refused() -> None:
    (loop,) = refused("a: &x [1, *x]\n").problems
    assert loop.line == 1 and "recursive" in loop.message
    deep = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    (problem,) = refused(deep).problems
    assert f"more than {MAX_DEPTH} levels" in problem.message and len(problem.field) < 60


def test_values_python_cannot_build_name_their_line() -> None:
    (date,) = refused("name: x\nstart_date: 2024-13-45\n").problems
    assert date.line == 2 and "'2024-13-45'" in date.message
    (number,) = refused("name: x\nseed: " + "9" * 5000 + "\n").problems
    assert number.line == 2 and "..." in number.message and len(number.message) < 300


def test_syntax_control_characters_and_multiple_documents() -> None:
    (syntax,) = refused("name: x\nsource: [unclosed\n").problems
    assert syntax.line == 3 and syntax.message.startswith("invalid YAML")
    (control,) = refused("name: x\nowners: [a\x07]\n").problems
    assert control.line == 2 and "#x0007" in control.message
    (two,) = refused("a: 1\n---\nb: 2\n").problems
    assert "single document" in two.message


def test_invalid_utf8_names_offset_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(YamlLoadError) as err:
        read_yaml(path)
    (problem,) = err.value.problems
    assert problem.line == 2
    assert "byte 0xe9 at offset 24 (line 2, column 17)" in problem.message


def test_utf8_bom_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: caf\xc3\xa9\n")
    assert read_yaml(path).data == {"name": "café"}
    path.write_bytes(b"")
    assert read_yaml(path).data is None


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    """A 4 GiB sparse file: were it read, this test would take seconds and gigabytes."""
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(4 << 30)
    start = time.process_time()
    with pytest.raises(YamlLoadError) as err:
        read_yaml(path)
    assert time.process_time() - start < 0.1
    assert "4,294,967,296 bytes" in str(err.value) and f"{MAX_BYTES:,} bytes (1 MiB)" in str(
        err.value
    )


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    head = b"name: x\n"
    path = tmp_path / "padded.yaml"
    path.write_bytes(head + b"#" * (MAX_BYTES - len(head) - 1) + b"\n")
    assert read_yaml(path).data == {"name": "x"}
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(YamlLoadError):
        read_yaml(path)


# --- through load_spec ----------------------------------------------------------------------------


def spec_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return err.value


def test_load_spec_reports_duplicates_as_spec_issues(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "feed.yaml").read_text().replace("name: feed\n", "name: feed\nname: x\n")
    path = write(tmp_path / "feed.yaml", text)
    (issue,) = spec_error(path).issues
    line = text.splitlines().index("name: x") + 1
    assert (issue.file, issue.line, issue.field) == (str(path), line, "name")
    assert str(issue).startswith(f"{path}:{line}: name: duplicate key 'name'")


def test_load_spec_caps_the_number_of_issues_and_quoted_values(tmp_path: Path) -> None:
    cutoffs = "\n".join(f"    - not a number {i}" for i in range(200))
    path = write(tmp_path / "x.yaml", f"name: {'n' * 5000}\nmetrics:\n  k:\n{cutoffs}\n")
    issues = spec_error(path).issues
    assert len(issues) == 51 and issues[-1].message.endswith("more problems")
    assert max(len(issue.message) for issue in issues) < 700


def test_load_spec_refuses_a_directory_as_not_a_file(tmp_path: Path) -> None:
    (issue,) = spec_error(tmp_path).issues
    assert issue.message == "not a regular file"
