"""File sources read only inside the project or $PLAYBOOK_DATA_ROOTS, unless the YAML opts in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assets.raw.file_source import FileSourceError, peek_columns, read_table, resolve_paths
from assets.raw.source_paths import DATA_ROOTS_ENV, local_path, project_roots
from configs.schema.source import FileSource, FileTable

SECRET = "s3cr3t_token,api_key\n1,2\n"


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``project/configs`` beside ``project/data/a.csv`` and an ``outside/secret.csv``."""
    monkeypatch.delenv(DATA_ROOTS_ENV, raising=False)
    (tmp_path / "project" / "configs").mkdir(parents=True)
    (tmp_path / "project" / "data").mkdir()
    (tmp_path / "project" / "data" / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.csv").write_text(SECRET)
    return tmp_path


def table(path: str, allow: bool = False, **fields: object) -> FileTable:
    """A table as it comes out of a validated ``source`` section."""
    events = {"path": path, **fields}
    source = FileSource.model_validate(
        {"kind": "file", "tables": {"events": events}, "allow_outside_project": allow}
    )
    return source.tables["events"]


def refused(spec: FileTable, base: Path) -> FileSourceError:
    with pytest.raises(FileSourceError) as err:
        peek_columns(spec, base)
    assert "s3cr3t" not in err.value.message and "api_key" not in err.value.message
    assert "allow_outside_project" in err.value.message and DATA_ROOTS_ENV in err.value.message
    return err.value


def test_project_roots(tmp_path: Path) -> None:
    nested = tmp_path / "p" / "configs" / "team"
    assert project_roots(nested) == [nested.resolve(), (tmp_path / "p").resolve()]
    assert project_roots(tmp_path / "loose") == [(tmp_path / "loose").resolve()]


def test_the_project_folder_above_configs_is_readable(layout: Path) -> None:
    configs = layout / "project" / "configs"
    assert peek_columns(table("../data/a.csv"), configs) == ["x", "y"]
    assert len(resolve_paths(table("../data/*.csv"), configs)) == 1


def test_a_path_leaving_the_project_is_refused_with_its_resolved_path(layout: Path) -> None:
    err = refused(table("../../outside/secret.csv"), layout / "project" / "configs")
    assert err.field == "path"
    assert f"resolves to {(layout / 'outside' / 'secret.csv').resolve()}" in err.message
    absolute = refused(table(str(layout / "outside" / "secret.csv")), layout / "project")
    assert absolute.field == "path"


def test_etc_passwd_is_refused_and_not_quoted(layout: Path) -> None:
    ups = "../" * len((layout / "project" / "configs").resolve().parts)
    err = refused(table(f"{ups}etc/passwd"), layout / "project" / "configs")
    assert "resolves to /etc/passwd" in err.message and "root:" not in err.message


def test_a_glob_is_checked_before_listing_and_each_match_after(layout: Path) -> None:
    configs = layout / "project" / "configs"
    err = refused(table("../../outside/*.csv"), configs)
    assert f"resolves to {(layout / 'outside').resolve()}" in err.message
    (configs / "sub").mkdir()
    err = refused(table("*/../../../outside/secret.csv"), configs)  # fixed part is inside
    assert "secret.csv" in err.message


def test_a_symlink_out_of_the_roots_counts_as_outside(layout: Path) -> None:
    data = layout / "project" / "data"
    (data / "link.csv").symlink_to(layout / "outside" / "secret.csv")
    err = refused(table("../data/link.csv"), layout / "project" / "configs")
    assert f"resolves to {(layout / 'outside' / 'secret.csv').resolve()}" in err.message
    refused(table("../data/*.csv"), layout / "project" / "configs")  # via a glob too
    (data / "inside.csv").symlink_to(data / "a.csv")  # a link that stays inside is fine
    assert peek_columns(table("../data/inside.csv"), layout / "project" / "configs") == ["x", "y"]


def test_data_roots_env_allows_listed_folders(
    layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = table("../../outside/secret.csv")
    base = layout / "project" / "configs"
    monkeypatch.setenv(DATA_ROOTS_ENV, os.pathsep.join(["", str(layout / "elsewhere")]))
    refused(spec, base)
    roots = [str(layout / "elsewhere"), str(layout / "outside")]
    monkeypatch.setenv(DATA_ROOTS_ENV, os.pathsep.join(roots))
    assert read_table(spec, base)["api_key"].tolist() == [2]


def test_allow_outside_project_opts_in(layout: Path) -> None:
    spec = table("../../outside/secret.csv", allow=True)
    assert spec.outside_project_allowed
    assert peek_columns(spec, layout / "project" / "configs") == ["s3cr3t_token", "api_key"]
    assert not FileTable.model_validate({"path": "x.csv"}).outside_project_allowed


def test_urls(layout: Path) -> None:
    assert local_path("file:///a/b.csv") == "/a/b.csv"
    assert local_path("s3://bucket/x.csv") is None
    assert local_path("simplecache::file:///etc/passwd") is None
    base = layout / "project"
    inside = f"file://{(base / 'data' / 'a.csv').resolve()}"
    assert peek_columns(table(inside), base) == ["x", "y"]
    refused(table(f"file://{(layout / 'outside' / 'secret.csv').resolve()}"), base)
    err = refused(table(f"simplecache::file://{layout / 'outside' / 'secret.csv'}"), base)
    assert "remote or chained URL" in err.message


def test_group_file_outside_is_refused(layout: Path) -> None:
    base = layout / "project" / "data"
    (base / "d.txt").write_text("1 1:1\n0 1:2\n")
    (layout / "outside" / "d.query").write_text("2\n")
    spec = table("d.txt", format="libsvm", group_file="../../outside/d.query")
    with pytest.raises(FileSourceError) as err:
        read_table(spec, base)
    assert err.value.field == "group_file" and "d.query" in err.value.message
