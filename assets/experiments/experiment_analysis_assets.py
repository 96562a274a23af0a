"""Asset factory for ``<use case>/experiment_analysis``: the running A/B test judged from its log.

The services log every request with its unit and arm to ``<home>/serving/<use case>/
request_log.sqlite``; the outcomes are the ``experiment.metric`` label in ``raw_events``. The
asset builds one row per unit (:mod:`assets.experiments.units`: the unit's click-through rate
since its first exposure, and before it as the CUPED covariate), sizes the test from the
pre-period (:func:`assets.experiments.plan.plan_experiment`: the metric's mean and spread before
exposure, the control arm's when no unit has a pre-period) and analyses it
(:func:`assets.experiments.stats.analyze_experiment`). Its table has one row per treatment arm;
its metadata shows the verdict, the split check, planned against actual units and the intervals.
A missing or empty log is a "no data" result, not a failure. A WARN check ``sample_ratio`` fails
when the units per arm do not match the planned split.
"""

from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets.experiments.plan import ExperimentPlan, plan_experiment
from assets.experiments.stats import FRAME_COLUMNS, ExperimentAnalysis, analyze_experiment
from assets.experiments.units import ExperimentUnits, Outcome, experiment_units
from assets.metadata import asset_identity
from configs.schema.stages import ExperimentSpec
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from runtime import layout
from runtime.request_log import read_request_log

SRM_CHECK = "sample_ratio"
OUTCOME: Outcome = "rate"
NO_DATA = "no_data"


def request_log_file(home: HomeResource, spec: UseCaseSpec) -> Path:
    """Where the use case's services write their request log (not created here)."""
    return Path(str(home.layout.request_log(spec.name)))


def _read_log(path: Path) -> pd.DataFrame | None:
    """The request log, or None when there is none yet (no service has run)."""
    if not path.exists():
        return None
    frame = read_request_log(path)
    return frame if len(frame) else None


def plan_from_units(
    experiment: ExperimentSpec, units: pd.DataFrame, outcome: Outcome = OUTCOME
) -> tuple[ExperimentPlan | None, str]:
    """The sample-size plan and where its baseline came from (or why there is no plan).

    The baseline is the metric's mean and standard deviation over the units' pre-periods (fixed
    before the test, so peeking at the result cannot move it), else over the control arm.
    """
    control = experiment.arms[0].name
    sources = (
        ("pre-period", units["covariate"].dropna()),
        (f"control arm {control!r}", units.loc[units["arm"] == control, "outcome"].dropna()),
    )
    for source, values in sources:
        if len(values) < 2:
            continue
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        if outcome == "conversion":
            if not 0 < mean < 1:
                continue
            sd_or_none = None
        else:
            if mean == 0 or not sd > 0:
                continue
            sd_or_none = sd
        try:
            return plan_experiment(experiment, mean, sd=sd_or_none), source
        except ValueError as error:
            return None, f"{source}: {error}"
    return None, "no pre-period or control outcomes to estimate a baseline from"


def hold_verdicts(analysis: ExperimentAnalysis) -> ExperimentAnalysis:
    """Without a plan the units needed are unknown, so no arm may be called a winner yet."""
    comparisons = [
        c if c.verdict == "srm" else replace(c, verdict="insufficient_sample")
        for c in analysis.comparisons
    ]
    return replace(analysis, comparisons=comparisons)


def _markdown(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "_(empty)_")


def _intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison as a reader wants it: arm, means, difference and lift with their CIs."""

    def interval(low: float, high: float, percent: bool) -> str:
        if pd.isna(low) or pd.isna(high):
            return "-"
        return f"[{low:+.2%}, {high:+.2%}]" if percent else f"[{low:+.4g}, {high:+.4g}]"

    return pd.DataFrame(
        {
            "arm": frame["arm"],
            "units": frame["n"].astype(str) + " / " + frame["planned_n"].astype(str),
            "control units": frame["n_control"].astype(str)
            + " / "
            + frame["planned_n_control"].astype(str),
            "mean": frame["mean"],
            "control mean": frame["mean_control"],
            "diff": frame["diff"],
            "diff CI": [
                interval(lo, hi, False)
                for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)
            ],
            "lift": frame["relative_lift"].map(lambda v: "-" if pd.isna(v) else f"{v:+.2%}"),
            "lift CI": [
                interval(lo, hi, True)
                for lo, hi in zip(frame["relative_ci_low"], frame["relative_ci_high"], strict=True)
            ],
            "p": frame["p_value"],
            "test": frame["test"],
            "verdict": frame["verdict"],
        }
    )


def _verdict(verdicts: dict[str, str]) -> str:
    """One line for the UI: the verdict of a two-arm test, ``arm: verdict`` pairs otherwise."""
    if len(verdicts) == 1:
        return next(iter(verdicts.values()))
    return ", ".join(f"{arm}: {verdict}" for arm, verdict in verdicts.items())


def _exclusions(units: ExperimentUnits) -> dict[str, int | str]:
    return {
        "excluded/mixed_arm_units": len(units.mixed_units),
        "excluded/mixed_arm_examples": ", ".join(units.mixed_units[:10]) or "none",
        "excluded/units_without_outcome": int(len(units.table) - len(units.analysable)),
        "excluded/requests_in_other_arms": units.foreign_requests,
        "excluded/requests_without_unit_or_arm": units.unassigned_requests,
    }


def _no_data(reason: str, extra: dict | None = None):
    """An empty comparison table with the reason, and a check with nothing to flag."""
    yield dg.Output(
        pd.DataFrame(columns=list(FRAME_COLUMNS)),
        metadata={"verdict": NO_DATA, "reason": reason, "dagster/row_count": 0, **(extra or {})},
    )
    yield dg.AssetCheckResult(
        check_name=SRM_CHECK,
        passed=True,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"status": NO_DATA, "reason": reason},
    )


def experiment_assets(spec: UseCaseSpec) -> list[dg.AssetsDefinition]:
    """``experiment_analysis`` for a use case with an ``experiment`` section, else nothing."""
    experiment = spec.experiment
    if experiment is None:
        return []
    timestamp = spec.events.timestamp
    if timestamp is None:
        raise ValueError(
            f"{spec.path}: experiment {experiment.name!r} needs events.timestamp to tell outcomes"
            " after a unit's first exposure from those before it"
        )
    key = dg.AssetKey(layout.experiment_analysis_key(spec.name))
    label = spec.labels[experiment.metric].column
    arms = [arm.name for arm in experiment.arms]
    weights = {arm.name: arm.weight for arm in experiment.arms}

    @dg.asset(
        key=key,
        ins={"raw_events": dg.AssetIn(key=dg.AssetKey(layout.raw_events_key(spec.name)))},
        deps=[dg.AssetKey(layout.serving_bundle_key(spec.name))],
        **asset_identity(spec, "monitoring"),
        kinds={"pandas", "sqlite", "scipy"},
        description=(
            f"A/B test {experiment.name!r} ({' vs '.join(arms)}) from the request log: per"
            f" {experiment.unit}, the {experiment.metric} rate ({label}) since first exposure,"
            " CUPED on the rate before it; sample-ratio check, Welch test with intervals and a"
            " verdict that waits for the planned sample."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                SRM_CHECK,
                asset=key,
                description="Units per arm match the planned split (chi-square, p >= 0.001).",
            )
        ],
    )
    def experiment_analysis(
        context: dg.AssetExecutionContext, raw_events: pd.DataFrame, home: HomeResource
    ):
        path = request_log_file(home, spec)
        requests = _read_log(path)
        if requests is None:
            yield from _no_data(f"no request log at {path} (or it is empty)")
            return
        units = experiment_units(
            requests,
            raw_events,
            arms=arms,
            unit_column=experiment.unit,
            label_column=label,
            timestamp_column=timestamp,
            outcome=OUTCOME,
        )
        if units.mixed_units:
            context.log.warning(
                f"{len(units.mixed_units)} unit(s) were logged in more than one arm (routing"
                f" bug?), left out: {units.mixed_units[:10]}"
            )
        analysable = units.analysable
        common = {
            "requests": len(requests),
            "request_log": str(path),
            "outcome": f"{experiment.metric} ({label}) rate per {experiment.unit} since exposure",
            **{f"exposed/{a}": n for a, n in units.units_per_arm(arms).items()},
            **_exclusions(units),
        }
        if analysable.empty:
            yield from _no_data("no exposed unit has an event since its exposure yet", common)
            return

        plan, baseline_source = plan_from_units(experiment, analysable)
        has_covariate = bool(analysable["covariate"].notna().any())
        analysis = analyze_experiment(
            analysable,
            weights,
            planned_n=plan.units if plan else None,
            alpha=experiment.alpha,
            metric="binary" if OUTCOME == "conversion" else "continuous",
            covariate_column="covariate" if has_covariate else None,
        )
        if plan is None:
            analysis = hold_verdicts(analysis)
        frame = analysis.to_frame()
        srm = analysis.srm
        yield dg.Output(
            frame,
            metadata={
                "verdict": _verdict(analysis.verdicts),
                **{f"verdict/{arm}": v for arm, v in analysis.verdicts.items()},
                "srm_p_value": srm.p_value,
                "srm_flagged": srm.flagged,
                **common,
                **{f"units/{a}": n for a, n in units.units_per_arm(arms, True).items()},
                **{f"planned_n/{a}": n for a, n in (plan.units if plan else {}).items()},
                "plan_baseline": baseline_source,
                **({"plan_baseline_mean": plan.baseline, "plan_mde": plan.mde} if plan else {}),
                "cuped_theta": float(analysis.theta) if analysis.theta is not None else "off",
                "variance_reduction": float(frame["variance_reduction"].max()),
                "comparison": _markdown(_intervals(frame)),
                "dagster/row_count": len(frame),
            },
        )
        yield dg.AssetCheckResult(
            check_name=SRM_CHECK,
            passed=not srm.flagged,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "p_value": srm.p_value,
                "statistic": srm.statistic,
                "split": _markdown(
                    pd.DataFrame(
                        {
                            "arm": list(srm.observed),
                            "units": list(srm.observed.values()),
                            "expected": np.round(list(srm.expected.values()), 1),
                            "weight": [weights[a] for a in srm.observed],
                        }
                    )
                ),
            },
        )

    return [experiment_analysis]
