"""What ``problem: regression`` needs from the YAML (issue 16): a continuous label, a point metric
to gate on, an interval for interval_coverage; each reported at its line by validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs import CONFIG_DIR
from configs.schema import SpecError
from dagster_project.use_case_files import load_use_cases
from tests.conftest import write

PRICING = (CONFIG_DIR / "pricing.yaml").read_text()


def _issues(tmp_path: Path, old: str, new: str) -> list:
    assert old in PRICING, old
    path = write(tmp_path / "pricing.yaml", PRICING.replace(old, new, 1))
    with pytest.raises(SpecError) as caught:
        load_use_cases([path])
    return caught.value.issues


def test_shipped_pricing_is_a_regression_with_an_interval() -> None:
    (spec,) = load_use_cases([CONFIG_DIR / "pricing.yaml"])
    stage = spec.model["delivery"]
    assert stage.problem == "regression" and stage.regression.interval == (0.1, 0.9)
    assert spec.labels["delivery_time"].kind == "continuous"
    assert spec.metrics.primary == "rmse" and "interval_coverage" in spec.metrics.others


def test_a_binary_label_is_refused_with_the_fix(tmp_path: Path) -> None:
    issues = _issues(tmp_path, "    kind: continuous\n", "")
    assert [i.field for i in issues] == ["model.delivery.labels.0", "model.store_eta.labels.0"]
    for issue in issues:
        assert "regression needs a continuous label" in issue.message
        assert "kind: continuous" in issue.message


def test_a_classification_metric_cannot_gate_a_regressor(tmp_path: Path) -> None:
    (issue,) = _issues(tmp_path, "primary: rmse", "primary: auc")
    assert issue.field == "metrics.primary" and "rmse, mae or mape" in issue.message


def test_interval_coverage_needs_an_interval(tmp_path: Path) -> None:
    (issue,) = _issues(tmp_path, "    regression: {interval: [0.1, 0.9]}\n", "")
    assert issue.field == "model.delivery.problem" and "regression: {interval" in issue.message


def test_interval_must_be_ordered_quantiles(tmp_path: Path) -> None:
    (issue,) = _issues(tmp_path, "interval: [0.1, 0.9]", "interval: [0.9, 0.1]")
    assert "0 < lower < upper < 1" in issue.message
