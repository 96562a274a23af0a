"""``playbook ab plan``: sample size and MDE from options or a use case's experiment section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from assets.experiments.guardrail_plan import plan_guardrail
from assets.experiments.plan import plan_sample_size, sample_size
from configs import CONFIG_DIR
from dagster_project.cli import main
from tests.conftest import write

pytestmark = pytest.mark.integration


def _plan(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["ab", "plan", *args])
    return result.exit_code, result.output


def test_sample_size_from_options() -> None:
    code, output = _plan("--baseline", "0.1", "--mde", "0.1")
    assert code == 0, output
    assert "14,745" in output and "29,490" in output
    assert "+10.00% relative lift (10.00% -> 11.00%)" in output


def test_json_output_and_unequal_split() -> None:
    code, output = _plan("--baseline", "0.05", "--mde", "0.05", "--ratio", "0.5", "--json")
    assert code == 0, output
    payload = json.loads(output)
    assert payload["solved_for"] == "sample_size" and payload["experiment"] is None
    assert (payload["units"]["control"], payload["units"]["treatment"]) == sample_size(
        0.05, 0.05, ratio=0.5
    )
    assert payload["total"] == sum(payload["units"].values())


def test_mde_from_units() -> None:
    code, output = _plan("--baseline", "0.1", "--n", "29490", "--json")
    assert code == 0, output
    payload = json.loads(output)
    assert payload["solved_for"] == "mde" and payload["mde"] == pytest.approx(0.1, rel=1e-3)
    code, output = _plan("--baseline", "10", "--sd", "5", "--n", "3142")
    assert code == 0, output
    assert "minimum detectable effect: +5.00%" in output and "Cohen's d" in output


def test_use_case_experiment_section() -> None:
    code, output = _plan("feed", "--baseline", "0.05", "--json")
    assert code == 0, output
    payload = json.loads(output)
    assert payload["experiment"] == "ranker_v2" and payload["mde"] == 0.05
    assert set(payload["units"]) == {"control", "treatment"}
    code, output = _plan("search", "--baseline", "0.05")
    assert code == 1 and "has no experiment section" in output
    assert "Traceback" not in output


def test_three_arms_from_a_config_file(tmp_path: Path) -> None:
    text = (CONFIG_DIR / "feed.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "    - {name: control, model_alias: champion, weight: 0.5}\n"
        "    - {name: treatment, model_alias: challenger, weight: 0.5}\n",
        "    - {name: control, model_alias: champion, weight: 0.5}\n"
        "    - {name: a, model_alias: challenger, weight: 0.25}\n"
        "    - {name: b, model_alias: challenger, weight: 0.25}\n"
        "  minimum_detectable_effect: 0.1\n",
    )
    config = write(tmp_path / "feed3.yaml", text)
    code, output = _plan(str(config), "--baseline", "0.1", "--json")
    assert code == 0, output
    payload = json.loads(output)
    expected = plan_sample_size({"control": 0.5, "a": 0.25, "b": 0.25}, 0.1, 0.1)
    assert payload["units"] == expected.units and payload["comparison_alpha"] == 0.025


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--baseline", "1.5", "--mde", "0.1"], 2, "must be in (0, 1)"),
        (["--baseline", "0.1", "--mde", "0.1", "--alpha", "2"], 2, "--alpha"),
        (["--baseline", "0.1"], 2, "give --mde"),
        (["--baseline", "0.1", "--mde", "0.1", "--n", "100"], 2, "not both"),
        (["feed", "--baseline", "0.1", "--ratio", "2"], 2, "--ratio"),
        (["--baseline", "0.6", "--mde", "0.9"], 1, "cannot exceed 100%"),
        (["nope", "--baseline", "0.1"], 1, "no such use case"),
        (["--baseline", "0.1", "--mde", "0.1", "--guardrail", "x=1"], 2, "needs a USE_CASE"),
        (["feed", "--baseline", "0.1", "--guardrail", "latency=1"], 2, "NAME one of"),
        (["feed", "--baseline", "0.1", "--guardrail", "purchase=0:1"], 2, "non-zero mean"),
    ],
)
def test_bad_input_is_a_clear_error(args: list[str], code: int, message: str) -> None:
    exit_code, output = _plan(*args)
    assert exit_code == code, output
    assert message in output and "Traceback" not in output


def test_guardrails_are_sized_beside_the_primary_and_the_binding_plan_is_named() -> None:
    args = ["feed", "--baseline", "0.1", "--guardrail", "latency_p99=0.8"]
    sized = ["--guardrail", "purchase=0.02:0.03", "--guardrail", "error_rate=0.05"]
    code, output = _plan(*args, *sized, "--json")
    assert code == 0, output
    payload = json.loads(output)
    latency, errors, purchase = payload["guardrails"]
    expected = plan_guardrail(
        {"control": 0.5, "treatment": 0.5}, guardrail="latency_p99", kind="quantile",
        margin=0.10, relative=True, sd_per_unit=0.8, guardrails=3,
    )  # fmt: skip
    assert latency["units"] == expected.units and latency["power"] == pytest.approx(1 - 0.2 / 3)
    # error_rate: an absolute margin (1 point), so its spread is taken as given
    assert errors["relative"] is False and errors["margin"] == pytest.approx(0.01)
    assert errors["sd_per_unit"] == pytest.approx(0.05)
    # a relative margin's spread is the coefficient of variation: sd / mean = 1.5
    assert purchase["sd_per_unit"] == pytest.approx(1.5) and purchase["baseline"] == 0.02
    totals = {
        "primary": payload["total"],
        "latency_p99": latency["total"],
        "error_rate": errors["total"],
        "purchase": purchase["total"],
    }
    assert payload["binding"]["plan"] == max(totals, key=totals.get)
    assert payload["binding"]["total"] == max(totals.values())

    code, output = _plan(*args)
    assert code == 0, output
    assert "guardrails (non-inferiority)" in output and "give --guardrail" in output
    assert "binding:" in output and "all pass together >= 0.8" in output
    code, output = _plan("feed", "--baseline", "0.1", "--n", "5000", "--guardrail", "purchase=3")
    assert code == 0, output
    assert "the 5,000 units given are too few for purchase" in output
