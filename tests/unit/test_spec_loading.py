"""The use-case spec: shipped configs load, and every kind of bad input gets a located message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configs import CONFIG_DIR
from configs.schema import SpecError, load_spec, load_specs
from configs.schema.json_schema import json_schema
from dagster_project.use_case_files import load_use_cases
from tests.conftest import RATINGS_CONFIG, write


def test_shipped_configs_validate(shipped_configs: list[Path]) -> None:
    specs = load_use_cases(shipped_configs)
    assert [s.name for s in specs] == ["feed", "fraud", "moderation", "pricing", "search"]
    feed = specs[0]
    assert feed.partitioned and feed.entity_tables().keys() == {"users", "items"}
    assert feed.labels["click"].column == "clicked"


def test_json_schema_file_is_generated_from_the_models() -> None:
    shipped = json.loads((CONFIG_DIR / "playbook.schema.json").read_text())
    assert shipped == json_schema(), "run `make schema` after changing the models"
    assert "source" in shipped["properties"] and "source" in shipped["required"]


def _error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_use_cases([path])
    return caught.value


def _feed_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (CONFIG_DIR / "feed.yaml").read_text()
    assert old in text, old
    return write(tmp_path / "feed.yaml", text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    path = _feed_with(tmp_path, "    n_users: 2000", "    n_userz: 2000")
    (issue,) = _error(path).issues
    assert issue.line == _line_of(path, "n_userz")
    assert issue.field == "source.params.n_userz"
    assert "did you mean 'n_users'" in issue.message
    assert "n_cards" not in issue.message  # only the feed generator's fields are offered


def test_wrong_type(tmp_path: Path) -> None:
    path = _feed_with(tmp_path, "seed: 7", "seed: seven")
    (issue,) = _error(path).issues
    assert (issue.field, issue.line) == ("source.seed", _line_of(path, "seed: seven"))
    assert "integer" in issue.message and "'seven'" in issue.message


def test_missing_required_field(tmp_path: Path) -> None:
    path = _feed_with(tmp_path, "  start_date: 2025-01-01\n", "")
    (issue,) = _error(path).issues
    assert issue.field == "source.start_date" and issue.message == "required field is missing"
    assert issue.line == _line_of(path, "source:")


def test_bad_cron(tmp_path: Path) -> None:
    path = _feed_with(tmp_path, 'retrain_cron: "0 3 * * 1"', 'retrain_cron: "0 25 * * 1"')
    (issue,) = _error(path).issues
    assert issue.field == "monitoring.retrain_cron" and "5-field cron" in issue.message


def test_unknown_generator_and_source_kind(tmp_path: Path) -> None:
    path = _feed_with(tmp_path, "generator: feed", "generator: feeds")
    (issue,) = _error(path).issues
    assert issue.field.startswith("source.params") and "'feeds'" in issue.message
    path = _feed_with(tmp_path, "kind: synthetic", "kind: kafka")
    assert "'kafka'" in _error(path).issues[0].message


def test_cross_section_reference_suggests(tmp_path: Path) -> None:
    path = _feed_with(tmp_path, "click: {column: clicked,", "click: {column: clickd,")
    (issue,) = _error(path).issues
    assert issue.field == "labels.click.column" and "did you mean 'clicked'" in issue.message


def test_experiment_split_must_sum_to_one(tmp_path: Path) -> None:
    path = _feed_with(
        tmp_path, "model_alias: challenger, weight: 0.5", "model_alias: challenger, weight: 0.6"
    )
    assert "sum to 1" in _error(path).issues[0].message


def test_ttl_shorter_than_window(tmp_path: Path) -> None:
    path = _feed_with(
        tmp_path,
        "  user_activity:\n    entities: [user]\n    ttl: 30d",
        "  user_activity:\n    entities: [user]\n    ttl: 2d",
    )
    issue = _error(path).issues[0]
    assert issue.field == "features.user_activity" and "shorter than window 7d" in issue.message


def test_invalid_yaml_syntax_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path / "x.yaml", "name: x\nsource: [unclosed\n")
    (issue,) = _error(path).issues
    assert issue.line is not None and "invalid YAML" in issue.message


def test_one_bad_file_fails_the_whole_load(tmp_path: Path, shipped_configs: list[Path]) -> None:
    bad = _feed_with(tmp_path, "name: feed", "name: Feed!")
    with pytest.raises(SpecError) as caught:
        load_specs([*shipped_configs[1:], bad])
    assert [i.file for i in caught.value.issues] == [str(bad)]
    assert str(bad) in str(caught.value)


def test_duplicate_use_case_names(tmp_path: Path, shipped_configs: list[Path]) -> None:
    copy = write(tmp_path / "feed_copy.yaml", (CONFIG_DIR / "feed.yaml").read_text())
    with pytest.raises(SpecError, match="also defined in"):
        load_specs([shipped_configs[0], copy])


def test_file_source_path_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path / "movies.yaml", RATINGS_CONFIG)  # ratings.csv not written
    (issue,) = _error(path).issues
    assert issue.field == "source.tables.events.path"
    assert issue.line == _line_of(path, "path: ratings.csv")
    assert "ratings.csv" in issue.message


def test_column_mapping_names_missing_column(ratings_config: Path) -> None:
    text = ratings_config.read_text().replace("item_id: movieId", "item_id: movie_id")
    path = write(ratings_config, text)
    issues = _error(path).issues
    assert issues[0].field == "source.tables.events.columns.item_id"
    assert "movie_id" in issues[0].message and "movieId" in issues[0].message


def test_declared_column_missing_from_file(ratings_config: Path) -> None:
    text = ratings_config.read_text().replace(
        "    liked: {dtype", "    genre: string\n    liked: {dtype"
    )
    path = write(ratings_config, text)
    (issue,) = _error(path).issues
    assert issue.field == "events.columns.genre" and issue.line == _line_of(path, "genre: string")


def test_bad_timestamp_unit(ratings_config: Path) -> None:
    path = write(
        ratings_config,
        ratings_config.read_text().replace("timestamp_unit: s", "timestamp_unit: sec"),
    )
    (issue,) = _error(path).issues
    assert issue.field == "source.tables.events.timestamp_unit" and "'sec'" in issue.message


def test_file_source_config_loads(ratings_config: Path) -> None:
    (spec,) = load_use_cases([ratings_config])
    assert spec.partitioned and spec.base_dir == ratings_config.parent
    assert load_spec(ratings_config).source.tables["events"].derive["liked"].value == 4


def test_split_gap_longer_than_a_window(tmp_path: Path) -> None:
    path = _feed_with(tmp_path, "gap: 1h}", "gap: 3d}")
    validation, test = _error(path).issues
    assert validation.field == test.field == "split.gap"
    assert (
        "validation would be empty" in validation.message and "test would be empty" in test.message
    )
