"""``serving.reasons``: which /score answers carry SHAP reasons, checked against the YAML.

``flagged`` needs a decision to flag (a binary scorer with decision bands, or a multiclass
scorer); anything else is refused at ``serving.reasons`` with the file and line, and ``reasons``
on an endpoint other than /score is refused by the section itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from configs import CONFIG_DIR
from configs.schema import SpecError
from configs.schema.stages import ServingSpec
from dagster_project.use_case_files import load_use_cases


def _load(tmp_path: Path, name: str, old: str, new: str):
    text = (CONFIG_DIR / f"{name}.yaml").read_text()
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new))
    return path, load_use_cases([path])


def test_fraud_ships_flagged_reasons() -> None:
    (spec,) = load_use_cases([CONFIG_DIR / "fraud.yaml"])
    assert spec.serving.reasons == "flagged"


def test_flagged_without_bands_names_the_field_and_line(tmp_path: Path) -> None:
    bands = "    decision_bands: {method: precision, decline_precision: 0.9, approve_max_positive_share: 0.1}\n"
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, "fraud", bands, "")
    message = str(caught.value)
    assert "serving.reasons" in message and "has no decision_bands" in message, message
    text = (tmp_path / "fraud.yaml").read_text().splitlines()
    line = next(i for i, x in enumerate(text) if x.startswith("serving:")) + 1
    assert f"fraud.yaml:{line}" in message, message


def test_flagged_regression_scorer_is_refused(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "pricing.yaml").read_text()
    serving = next(x for x in text.splitlines() if x.startswith("serving:"))
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, "pricing", serving, "serving: {endpoint: score, reasons: flagged}")
    assert "regression model, with no decision" in str(caught.value)


def test_multiclass_scorer_may_flag(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "moderation.yaml").read_text()
    serving = next(x for x in text.splitlines() if x.startswith("serving:"))
    flagged = serving.rstrip("}") + ", reasons: flagged}"
    _, (spec,) = _load(tmp_path, "moderation", serving, flagged)
    assert spec.serving.reasons == "flagged"


def test_reasons_only_on_score() -> None:
    with pytest.raises(ValidationError, match="only /score answers with reasons"):
        ServingSpec(endpoint="recommend", reasons="on_request")
