"""Issue 15, items 6 and 7 on the YAML side: passthrough columns by pattern, what a model's
problem and the file source need, problems located at their line, short candidate lists, and
where ``playbook new`` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs import CONFIG_DIR, CONFIGS_ENV, project_config_dir, use_case_dir
from configs.schema import SpecError, load_spec
from configs.schema.issues import short_list
from configs.schema.patterns import expand, is_pattern
from dagster_project.use_case_files import load_use_cases
from tests.conftest import RATINGS_CONFIG, write
from tests.real_data import LETOR_FEATURES, letor_config, line_of, write_letor


def _issues(path: Path) -> list:
    with pytest.raises(SpecError) as caught:
        load_use_cases([path])
    return caught.value.issues


# --- patterns -------------------------------------------------------------------------------------


def test_expand_keeps_order_and_written_positions() -> None:
    columns = ["f1", "f2", "f10", "price", "g1"]
    assert not is_pattern("f1") and is_pattern("f*") and is_pattern("v[0-9]") and is_pattern("f?")
    expanded = expand(["price", "f*", "f2", "h*", "g?"], columns)
    assert expanded.names == ["price", "f1", "f10", "f2", "g1"]  # f2 once, where it is written
    assert expanded.origin == [0, 1, 1, 2, 4]
    assert expanded.unmatched == [(3, "h*")]
    assert expand(["F*"], columns).unmatched == [(0, "F*")]  # case-sensitive


def test_passthrough_pattern_expands_to_declared_feature_columns(tmp_path: Path) -> None:
    write_letor(tmp_path / "train.txt")
    listed = ", ".join(f"f{i}" for i in range(1, LETOR_FEATURES + 1))
    by_list = load_spec(letor_config(tmp_path / "a.yaml", "train.txt", f"[{listed}]"))
    by_pattern = load_spec(letor_config(tmp_path / "b.yaml", "train.txt", '["f*"]'))
    assert by_pattern.features["letor"].passthrough == by_list.features["letor"].passthrough
    assert len(by_pattern.features["letor"].passthrough) == LETOR_FEATURES
    # the key, the group and the label are never features, whatever the pattern
    everything = load_spec(letor_config(tmp_path / "c.yaml", "train.txt", '["*"]'))
    assert everything.features["letor"].passthrough == by_list.features["letor"].passthrough
    # a serving bundle stores the expanded spec; it loads back the same
    again = type(by_pattern).model_validate(by_pattern.model_dump())
    assert again.features["letor"].passthrough == by_list.features["letor"].passthrough


def test_unmatched_pattern_and_typo_after_a_pattern_name_their_own_lines(tmp_path: Path) -> None:
    write_letor(tmp_path / "train.txt")
    path = letor_config(
        tmp_path / "l.yaml", "train.txt", '\n      - "f1*"\n      - g*\n      - f999'
    )
    first, second = _issues(path)
    assert (first.field, first.line) == ("features.letor.passthrough.1", line_of(path, "- g*"))
    assert "'g*' matches no events column" in first.message
    assert "f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, ... (200 in all)" in first.message
    # f999 was written third; after f1* expanded to 111 names it is the 112th, not the 3rd
    assert (second.field, second.line) == ("features.letor.passthrough.2", line_of(path, "f999"))


def test_a_pattern_never_picks_a_label_or_what_reveals_it(tmp_path: Path) -> None:
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,1709251200\n")
    text = RATINGS_CONFIG + "features:\n  ctx: {entities: [user], passthrough: ['*']}\n"
    spec = load_spec(write(tmp_path / "movies.yaml", text))
    # user_id/item_id are keys, event_time the time, liked the label
    assert spec.features["ctx"].passthrough == ["rating"]


# --- requirements of a model's problem and of the file source -------------------------------------


def _ratings(tmp_path: Path, extra: str, old: str = "", new: str = "") -> Path:
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,1709251200\n")
    return write(tmp_path / "movies.yaml", RATINGS_CONFIG.replace(old, new) + extra)


def test_two_tower_needs_a_user_and_an_item_entity(tmp_path: Path) -> None:
    model = "model:\n  retrieval: {problem: two_tower, labels: [liked]}\n"
    path = _ratings(tmp_path, model, "  item: {key: item_id}\n", "")
    (issue,) = _issues(path)
    assert (issue.field, issue.line) == ("model.retrieval.problem", line_of(path, "two_tower"))
    assert "two_tower needs a user and an item entity" in issue.message
    assert "user" in issue.message
    assert not _issues_or_none(_ratings(tmp_path, model))  # with the item entity: valid


def _issues_or_none(path: Path) -> list:
    try:
        load_use_cases([path])
    except SpecError as exc:
        return exc.issues
    return []


def test_problem_requirements_are_located(tmp_path: Path) -> None:
    models = (
        "model:\n"
        "  rank: {problem: learning_to_rank, labels: [liked]}\n"
        "  both: {problem: multi_task, labels: [liked]}\n"
        "  graded: {problem: binary_classification, labels: [stars]}\n"
    )
    path = _ratings(
        tmp_path, models, "labels:\n", "labels:\n  stars: {column: liked, kind: graded}\n"
    )
    found = {issue.field: issue for issue in _issues(path)}
    assert set(found) == {
        "model.rank.problem",
        "model.both.labels",
        "model.both.problem",
        "model.graded.labels.0",
    }
    assert "events.group" in found["model.rank.problem"].message
    assert found["model.rank.problem"].line == line_of(path, "rank:")
    assert "value_feature" in found["model.both.problem"].message
    assert "'stars' is graded" in found["model.graded.labels.0"].message


def test_entity_table_without_a_file(tmp_path: Path) -> None:
    path = _ratings(
        tmp_path,
        "",
        "  item: {key: item_id}\n",
        "  item:\n    key: item_id\n    table: items\n    columns: {title: string}\n",
    )
    (issue,) = _issues(path)
    assert (issue.field, issue.line) == ("entities.item.table", line_of(path, "table: items"))
    assert "add source.tables.items" in issue.message


def test_short_list_names_at_most_ten() -> None:
    assert short_list([]) == "none"
    assert short_list(["a", "b"]) == "a, b"
    names = [f"f{i}" for i in range(218)]
    assert short_list(names) == "f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, ... (218 in all)"


# --- issues of a loaded spec, for errors found while running ---------------------------------------


def test_a_loaded_spec_locates_its_fields(ratings_config: Path) -> None:
    spec = load_spec(ratings_config)
    issue = spec.issue(("source", "tables", "events", "timestamp_unit"), "bad")
    assert str(issue) == (
        f"{ratings_config}:{line_of(ratings_config, 'timestamp_unit')}:"
        " source.tables.events.timestamp_unit: bad"
    )
    built = type(spec).model_validate(spec.model_dump())  # no file, no lines: still one line
    assert str(built.issue(("events", "columns"), "bad")) == "use case movies: events.columns: bad"


# --- where the configs are ------------------------------------------------------------------------


def test_new_writes_to_the_project_and_commands_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIGS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert project_config_dir() == tmp_path / "configs"
    assert use_case_dir() == CONFIG_DIR  # no project configs yet: the shipped examples
    write(tmp_path / "configs" / "mine.yaml", "name: mine\n")
    assert use_case_dir() == tmp_path / "configs"
    monkeypatch.setenv(CONFIGS_ENV, str(tmp_path / "elsewhere"))
    assert project_config_dir() == use_case_dir() == tmp_path / "elsewhere"
