"""The end summary names a failed non-blocking check with the number that failed, not only its
name, when the step carries the check's description; the exit status still ignores it."""

from __future__ import annotations

from dataclasses import dataclass, field

from dagster_project.run_summary import Problem, check_notes, problems, verdict


@dataclass
class NotedStep:
    asset: str
    status: str = "ok"
    checks: dict[str, bool] = field(default_factory=dict)
    error: str | None = None
    blocking: bool = False
    check_severity: dict[str, str] = field(default_factory=dict)
    check_notes: dict[str, str] = field(default_factory=dict)


def test_a_failed_warning_check_is_named_with_its_numbers() -> None:
    funnel = NotedStep(
        "feed/funnel_evaluation",
        "check failed",
        {"beats_popular_list": False},
        check_severity={"beats_popular_list": "warning"},
        check_notes={"beats_popular_list": "recall@20: funnel 0.086 vs popular list 0.111"},
    )
    model = NotedStep(
        "feed/models/ranking_model",
        checks={"promotion_gate": True},
        check_severity={"promotion_gate": "warning"},
        check_notes={"promotion_gate": "ndcg@10 0.41 vs champion 0.40"},  # passed: not listed
    )
    assert problems([model, funnel]) == [
        Problem(
            "feed/funnel_evaluation: check beats_popular_list failed (warning):"
            " recall@20: funnel 0.086 vs popular list 0.111",
            False,
        )
    ]
    assert verdict([model, funnel]) == "all 2 assets materialized, 1 check failed"


def test_steps_without_notes_keep_the_plain_line() -> None:
    @dataclass
    class BareStep:  # what a step result without descriptions looks like
        asset: str = "fraud/models/scorer"
        status: str = "check failed"
        checks: dict = field(default_factory=lambda: {"beats_baseline": False})
        error: str | None = None
        blocking: bool = False
        check_severity: dict = field(default_factory=lambda: {"beats_baseline": "warning"})

    step = BareStep()
    assert check_notes(step) == {}
    assert problems([step]) == [
        Problem("fraud/models/scorer: check beats_baseline failed (warning)", False)
    ]
    blank = NotedStep("x/a", "check failed", {"rows": False}, check_notes={"rows": ""})
    assert problems([blank]) == [Problem("x/a: check rows failed", False)]
