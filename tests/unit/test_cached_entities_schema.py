"""``serving.cached_entities``: the entities whose views each serving worker holds in memory.

Fraud ships its merchants there; a name that is no entity is refused at the field, with the
file, the line and the closest entity name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from configs import CONFIG_DIR
from configs.schema import SpecError
from dagster_project.use_case_files import load_use_cases

SHIPPED = "cached_entities: [merchant]"


def test_fraud_holds_its_merchants() -> None:
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    assert spec.serving.cached_entities == ["merchant"]
    assert spec.entities["merchant"].key == "merchant_id"


def test_an_unknown_entity_names_the_field_line_and_the_closest_name(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "fraud.yaml").read_text()
    assert SHIPPED in text
    path = tmp_path / "fraud.yaml"
    path.write_text(text.replace(SHIPPED, "cached_entities: [merchants]"))
    with pytest.raises(SpecError) as caught:
        load_use_cases([path])
    message = str(caught.value)
    assert "serving.cached_entities" in message and "did you mean 'merchant'" in message, message
    line = next(i for i, x in enumerate(text.splitlines()) if x.startswith("serving:")) + 1
    assert f"fraud.yaml:{line}" in message, message
