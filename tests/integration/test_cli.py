"""The ``playbook`` CLI and the Dagster entry point, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagster_project.cli import main
from dagster_project.location_runs import LOCATION_NAME
from tests.conftest import REPO, write

pytestmark = pytest.mark.integration


def test_validate_ok_and_bad(tmp_path: Path, shipped_configs: list[Path]) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", *map(str, shipped_configs)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("ok ") == 5  # the five shipped configs
    bad = write(
        tmp_path / "bad.yaml",
        (shipped_configs[0].read_text()).replace("slate_size: 10", "slate_size: ten"),
    )
    result = runner.invoke(main, ["validate", str(shipped_configs[1]), str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:" in result.output and "source.params.slate_size" in result.output
    assert "Traceback" not in result.output


def test_list_shows_every_use_case() -> None:
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    for name in ("feed", "fraud", "search"):
        assert name in result.output


@pytest.mark.parametrize("template", ["feed", "fraud", "search", "pricing", "moderation"])
def test_new_scaffolds_a_valid_config(template: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["new", f"my_{template}", "--from", template, "--dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"my_{template}.yaml").read_text().count(f"name: my_{template}") == 1
    again = CliRunner().invoke(
        main, ["new", f"my_{template}", "--from", template, "--dir", str(tmp_path)]
    )
    assert again.exit_code != 0 and "already exists" in again.output


def test_materialize_a_config_outside_configs(ratings_config: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"DAGSTER_HOME": os.environ.get("DAGSTER_HOME", "")}
    result = CliRunner().invoke(
        main, ["materialize", str(ratings_config), "--home", str(home)], env=env
    )
    assert result.exit_code == 0, result.output
    for asset in ("movies/raw_events", "movies/split_plan"):
        assert asset in result.output
    assert "schema:pass" in result.output
    assert (home / "dagster" / "dagster.yaml").exists()  # the instance dagster dev will read
    assert len(list((home / "tables" / "movies" / "raw_events").glob("*.parquet"))) == 5
    assert result.output.rstrip().splitlines()[-1].endswith("assets ok, all checks passed")
    unknown = CliRunner().invoke(main, ["materialize", "nope", "--home", str(home)])
    assert unknown.exit_code != 0 and "known:" in unknown.output


def test_materialize_ends_with_what_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary's last lines name each failed check, warning-level ones included, and the
    verdict; only a blocking failure makes the exit status 1. The runs themselves are stubbed."""
    from dagster_project import materialize as materializing
    from dagster_project.materialize import StepResult
    from runtime.layout import HOME_ENV

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))  # the command sets both
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    split = StepResult("fraud/split_plan", "ok", checks={"splits_not_empty": True})
    split.check_severity = {"splits_not_empty": "blocking"}
    model = StepResult("fraud/models/scorer", "check failed")
    model.checks = {"promotion_gate": True, "beats_baseline": False}
    model.check_severity = {"promotion_gate": "warning", "beats_baseline": "warning"}
    steps = [split, model]
    monkeypatch.setattr(materializing, "materialize_use_case", lambda *_a, **_k: list(steps))
    result = CliRunner().invoke(main, ["materialize", "fraud", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().splitlines()[-2:] == [
        "fraud/models/scorer: check beats_baseline failed (warning)",
        "all 2 assets materialized, 1 check failed",
    ]

    split.status, split.blocking, split.checks = "check failed", True, {"splits_not_empty": False}
    steps[1] = StepResult("fraud/models/scorer", "skipped", error="an upstream asset failed")
    result = CliRunner().invoke(main, ["materialize", "fraud", "--home", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.output.rstrip().splitlines()[-3:] == [
        "fraud/split_plan: check splits_not_empty failed (blocking)",
        "skipped, as an upstream asset failed or failed a blocking check: fraud/models/scorer",
        "1 asset skipped, 1 check failed (1 blocking)",
    ]


def _definitions_validate(env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_dagster_definitions_validate() -> None:
    result = _definitions_validate()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Validation successful for code location {LOCATION_NAME}." in output


def test_dagster_shows_the_config_error_not_a_library_trace(
    tmp_path: Path, shipped_configs: list[Path]
) -> None:
    for path in shipped_configs:
        write(tmp_path / path.name, path.read_text().replace("slate_size: 10", "slate_size: 0"))
    result = _definitions_validate({"PLAYBOOK_CONFIGS": str(tmp_path)})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{tmp_path / 'feed.yaml'}:" in output and "source.params.slate_size" in output
    assert "pydantic" not in output and "loading.py" not in output
