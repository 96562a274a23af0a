"""The end of ``playbook materialize``: a line per failure, warning-level checks included, and a
verdict; on stand-in step results (the real ones need Dagster to produce)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dagster_project.run_summary import Problem, problems, verdict


@dataclass
class Step:
    asset: str
    status: str = "ok"
    checks: dict[str, bool] = field(default_factory=dict)
    error: str | None = None
    blocking: bool = False
    check_severity: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.check_severity:  # as materialize_use_case fills it from the definitions
            blocking = {"splits_not_empty"}
            self.check_severity = {
                name: "blocking" if name in blocking else "warning" for name in self.checks
            }


def test_all_ok() -> None:
    steps = [Step("feed/split_plan", checks={"splits_not_empty": True}), Step("feed/bento")]
    assert problems(steps) == []
    assert verdict(steps) == "all 2 assets ok, all checks passed"
    assert verdict(steps[:1]) == "all 1 asset ok, all checks passed"


def test_a_failed_warning_check_is_listed_though_it_stops_nothing() -> None:
    steps = [
        Step("feed/models/ranking", checks={"promotion_gate": True, "beats_baseline": True}),
        Step("feed/funnel_evaluation", "check failed", {"beats_popular_list": False}),
    ]
    assert problems(steps) == [
        Problem("feed/funnel_evaluation: check beats_popular_list failed (warning)", False)
    ]
    assert verdict(steps) == "all 2 assets materialized, 1 check failed"


def test_failures_blocking_checks_and_skips_in_run_order() -> None:
    steps = [
        Step("feed/split_plan", "check failed", {"splits_not_empty": False}, blocking=True),
        Step("feed/models/ranking", "failed", error="ValueError: no rows"),
        Step("feed/funnel_evaluation", "skipped", error="an upstream asset failed"),
        Step("feed/bento", "skipped", error="an upstream asset failed"),
    ]
    assert problems(steps) == [
        Problem("feed/split_plan: check splits_not_empty failed (blocking)", True),
        Problem("feed/models/ranking: failed: ValueError: no rows", True),
        Problem(
            "skipped, as an upstream asset failed or failed a blocking check:"
            " feed/funnel_evaluation, feed/bento",
            True,
        ),
    ]
    assert verdict(steps) == "1 asset failed, 2 skipped, 1 check failed (1 blocking)"


def test_without_severities_a_failed_check_is_listed_unmarked() -> None:
    steps = [Step("x/a", "check failed", {"quality": False, "rows": False}, blocking=True)]
    steps[0].check_severity = {}
    assert problems(steps) == [
        Problem("x/a: check quality failed", True),
        Problem("x/a: check rows failed", True),
    ]
    assert verdict(steps) == "all 1 asset materialized, 2 checks failed (2 blocking)"
