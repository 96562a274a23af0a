"""Issue 15, items 6 and 7 as a user meets them: the ``playbook`` command in a subprocess, and
Dagster ``materialize()`` for what only a run shows.

A LETOR file whose feature 200 first appears on line 500 validates with ``passthrough: ["f*"]``
and trains on the same training set as the 200 names listed; a ratings file with a header line
fails validate at its ``timestamp_unit`` line, and a run that meets one anyway names that line;
a model whose problem needs an entity the YAML lacks fails validate; ``playbook new`` writes into
the project it runs in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner
from upath import UPath

from configs import CONFIG_DIR, CONFIGS_ENV
from dagster_project.cli import main
from dagster_project.loader import load_use_cases, resources, use_case_assets
from dagster_project.materialize import RANGE_END, RANGE_START
from runtime import layout
from tests.conftest import REPO, write
from tests.real_data import (
    LETOR_FEATURES,
    letor_config,
    line_of,
    ratings_config,
    write_letor,
    write_ratings_dat,
)

pytestmark = pytest.mark.integration


def _playbook(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None):
    """The installed ``playbook`` entry point, as a user runs it."""
    environment = {k: v for k, v in os.environ.items() if k != CONFIGS_ENV}
    environment["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-c", "from dagster_project.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**environment, **(env or {})},
    )


def _flat(text: str) -> str:
    """Console output with its line wrapping undone."""
    return " ".join(text.split())


def test_validate_reads_what_a_run_reads(tmp_path: Path) -> None:
    write_letor(tmp_path / "train.txt")
    letor = letor_config(tmp_path / "letor.yaml", "train.txt", '["f*"]')
    ok = _playbook("validate", str(letor))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"ok {letor}" in _flat(ok.stdout)

    write_ratings_dat(tmp_path / "ratings.dat")  # ML-1M has no header; this copy has one
    ratings = ratings_config(tmp_path / "ratings.yaml", "ratings.dat")
    one_entity = write(
        tmp_path / "retrieval.yaml",
        ratings.read_text()
        .replace("name: ratings", "name: retrieval")
        .replace("  item: {key: item_id}\n", "")
        .replace("ratings.dat", "clean.dat")
        + "model:\n  retrieval: {problem: two_tower, labels: [liked]}\n",
    )
    write_ratings_dat(tmp_path / "clean.dat", header=False)
    no_table = write(
        tmp_path / "catalog.yaml",
        ratings.read_text()
        .replace("name: ratings", "name: catalog")
        .replace("ratings.dat", "clean.dat")
        .replace("  item: {key: item_id}\n", "  item: {key: item_id, table: items}\n"),
    )
    bad = _playbook("validate", str(ratings), str(one_entity), str(no_table))
    assert bad.returncode == 1
    output = _flat(bad.stdout)
    assert "Traceback" not in bad.stdout + bad.stderr
    assert (
        f"{ratings}:{line_of(ratings, 'timestamp_unit')}: source.tables.events.timestamp_unit:"
        " column 'event_time' should hold epoch numbers in unit 's'; 1 rows of"
    ) in output
    assert "(the first: row 0, line 1); if line 1 is a header, set header: true" in output
    assert (
        f"{one_entity}:{line_of(one_entity, 'two_tower')}: model.retrieval.problem:"
        " two_tower needs a user and an item entity"
    ) in output
    assert f"{no_table}:{line_of(no_table, 'table: items')}: entities.item.table:" in output


def test_new_writes_into_the_project_and_the_commands_read_it(tmp_path: Path) -> None:
    shipped = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
    created = _playbook("new", "shop", "--from", "fraud", cwd=tmp_path)
    assert created.returncode == 0, created.stdout + created.stderr
    target = tmp_path / "configs" / "shop.yaml"
    assert target.is_file() and "name: shop" in target.read_text()
    assert sorted(p.name for p in CONFIG_DIR.glob("*.yaml")) == shipped  # package untouched
    validated = _playbook("validate", cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert _flat(validated.stdout) == f"ok {target}: use case 'shop'"
    listed = _playbook("list", cwd=tmp_path)
    assert "shop" in listed.stdout and "feed" not in listed.stdout

    folder = tmp_path / "team_configs"
    env = {CONFIGS_ENV: str(folder)}
    again = _playbook("new", "ledger", "--from", "search", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (folder / "ledger.yaml").is_file() and not (
        tmp_path / "configs" / "ledger.yaml"
    ).exists()
    validated = _playbook("validate", cwd=tmp_path, env=env)
    assert _flat(validated.stdout) == f"ok {folder / 'ledger.yaml'}: use case 'ledger'"


def _training_set(config: Path, home: Path) -> pd.DataFrame:
    """Materialize the ranking model's training set (and what it reads) for real."""
    (spec,) = load_use_cases([config])
    assets = use_case_assets(spec)
    key = dg.AssetKey(list(layout.training_set_key(spec.name, "ranking")))
    selection = dg.AssetSelection.assets(key).upstream().resolve(assets)
    result = dg.materialize(
        assets,
        selection=list(selection),
        resources=resources(UPath(home)),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    failed = [c.asset_key for c in result.get_asset_check_evaluations() if not c.passed]
    assert not failed
    return pd.read_parquet(home / "tables" / Path(*key.path).with_suffix(".parquet"))


def test_passthrough_by_pattern_trains_on_the_same_set_as_the_list(tmp_path: Path) -> None:
    write_letor(tmp_path / "train.txt")
    listed = ", ".join(f"f{i}" for i in range(1, LETOR_FEATURES + 1))
    by_list = _training_set(
        letor_config(tmp_path / "listed.yaml", "train.txt", f"[{listed}]"), tmp_path / "a"
    )
    by_pattern = _training_set(
        letor_config(tmp_path / "pattern.yaml", "train.txt", '["f*"]'), tmp_path / "b"
    )
    assert len(by_list) > 0 and f"f{LETOR_FEATURES}" in by_list.columns
    assert by_list[f"f{LETOR_FEATURES}"].gt(0).any()  # the late feature made it in
    pd.testing.assert_frame_equal(by_pattern, by_list)


def test_a_run_names_the_yaml_line_of_what_it_cannot_parse(tmp_path: Path) -> None:
    """Two exports concatenated: a header line in the middle. The cheap load passes; the raw
    asset fails with the YAML's FILE:LINE, the line validate would have named."""
    write_ratings_dat(tmp_path / "ratings.dat", header_at=1200)
    config = ratings_config(tmp_path / "ratings.yaml", "ratings.dat")
    home = tmp_path / "home"
    env = {"DAGSTER_HOME": os.environ.get("DAGSTER_HOME", "")}
    result = CliRunner().invoke(
        main, ["materialize", str(config), "--home", str(home), "--select", "raw_events"], env=env
    )
    assert result.exit_code == 1, result.output
    output = _flat(result.output)
    where = f"{config}:{line_of(config, 'timestamp_unit')}: source.tables.events.timestamp_unit:"
    failed = output[output.index("ratings/raw_events: failed:") :]
    assert f"{where} column 'event_time' should hold epoch numbers" in failed
    assert "row 1200" in failed and failed.endswith("1 asset failed, all checks passed")


def test_a_failed_schema_check_names_the_lines_that_declare_the_columns(tmp_path: Path) -> None:
    data = write_ratings_dat(tmp_path / "ratings.dat", header=False)
    lines = data.read_text(encoding="latin-1").splitlines(keepends=True)
    lines[30] = "7::12::9::1709260000\n"  # a 9-star rating: the YAML says max 5
    data.write_text("".join(lines), encoding="latin-1")
    config = ratings_config(tmp_path / "ratings.yaml", "ratings.dat")
    (spec,) = load_use_cases([config])
    (raw,) = [a for a in use_case_assets(spec) if a.key.path[-1] == "raw_events"]
    days = raw.partitions_def.get_partition_keys()
    result = dg.materialize(
        [raw],
        resources=resources(UPath(tmp_path / "home")),
        instance=dg.DagsterInstance.ephemeral(),
        tags={RANGE_START: days[0], RANGE_END: days[-1]},
        raise_on_error=False,
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    declared = f"{config}:{line_of(config, 'rating: {dtype: float')}"
    assert check.description == f"1 value(s) break the spec: rating ({declared})"
    assert declared in check.metadata["failures"].value
