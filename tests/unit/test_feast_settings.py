"""Settings a Feast repo reads from the environment: named when missing, refused when garbled."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runtime.feast_settings import MissingSetting, check, expand, references

CONFIG = {
    "project": "fraud",
    "registry": "registry.db",
    "online_store": {"type": "redis", "connection_string": "${PLAYBOOK_REDIS}"},
}


def repo(tmp_path: Path) -> Path:
    (tmp_path / "feature_store.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return tmp_path


def test_references_name_the_variable_and_the_setting() -> None:
    assert references(CONFIG) == {"PLAYBOOK_REDIS": "online_store.connection_string"}


def test_expand_takes_the_value_and_names_what_is_missing() -> None:
    value = "redis:6379,password=it's #secret"
    expanded = expand(CONFIG, {"PLAYBOOK_REDIS": value}, "fraud", "feature_store.yaml")
    assert expanded["online_store"]["connection_string"] == value
    message = r"fraud: .*PLAYBOOK_REDIS is not set \(online_store.connection_string reads"
    with pytest.raises(MissingSetting, match=message):
        expand(CONFIG, {}, "fraud", "feature_store.yaml")


def test_check_passes_a_value_feast_can_expand(tmp_path: Path) -> None:
    check(repo(tmp_path), "fraud", {"PLAYBOOK_REDIS": "10.0.0.5:6379,password=p@ss:w0rd"})


def test_check_names_an_unset_or_empty_variable(tmp_path: Path) -> None:
    for env in ({}, {"PLAYBOOK_REDIS": ""}):
        with pytest.raises(MissingSetting, match="fraud: .*PLAYBOOK_REDIS is not set"):
            check(repo(tmp_path), "fraud", env)


def test_check_refuses_a_value_feasts_text_expansion_would_garble(tmp_path: Path) -> None:
    with pytest.raises(MissingSetting, match="cannot be carried by Feast's expansion"):
        check(repo(tmp_path), "fraud", {"PLAYBOOK_REDIS": "h:6379,password=x #y"})
