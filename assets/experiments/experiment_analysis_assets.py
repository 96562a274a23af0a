"""Asset factory for ``<use case>/experiment_analysis``: the running A/B test judged from its log.

The services log every request with its unit and arm to ``<home>/serving/<use case>/
request_log.sqlite``; the outcomes are the ``experiment.metric`` label in ``raw_events``. The
asset builds one row per unit (:mod:`assets.experiments.units`: the unit's click-through rate
since its first exposure, and before it as the CUPED covariate), sizes the test from the
pre-period (:func:`assets.experiments.plan.plan_experiment`: the metric's mean and spread before
exposure, the control arm's when no unit has a pre-period) and analyses it
(:func:`assets.experiments.analysis.analyze_experiment`); the plan, the verdicts and the tables
are decided in :mod:`assets.experiments.readout`, this module only reads and writes. Its table has
one row per treatment arm; its metadata shows the verdict, the split check, planned against
actual units and the intervals. A missing or empty log is a "no data" result, not a failure. A
WARN check ``sample_ratio`` fails when the units per arm do not match the planned split.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.experiments.analysis import FRAME_COLUMNS
from assets.experiments.readout import (
    OUTCOME,
    exclusions,
    interval_table,
    read_out,
    split_table,
)
from assets.experiments.units import experiment_units
from assets.metadata import asset_identity, rounded_metadata
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from runtime import layout
from runtime.request_log import read_request_log

SRM_CHECK = "sample_ratio"
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


def _markdown(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "_(empty)_")


def _no_data(reason: str, extra: dict | None = None):
    """An empty comparison table with the reason, and a check with nothing to flag."""
    yield dg.Output(
        pd.DataFrame(columns=list(FRAME_COLUMNS)),
        metadata=rounded_metadata(
            {"verdict": NO_DATA, "reason": reason, "dagster/row_count": 0, **(extra or {})}
        ),
    )
    yield dg.AssetCheckResult(
        check_name=SRM_CHECK,
        passed=True,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded_metadata({"status": NO_DATA, "reason": reason}),
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
            **exclusions(units),
        }
        if analysable.empty:
            yield from _no_data("no exposed unit has an event since its exposure yet", common)
            return

        readout = read_out(experiment, analysable, weights, OUTCOME)
        srm = readout.analysis.srm
        yield dg.Output(
            readout.frame,
            metadata=rounded_metadata(
                {
                    "verdict": readout.verdict,
                    **{f"verdict/{arm}": v for arm, v in readout.analysis.verdicts.items()},
                    "srm_p_value": srm.p_value,
                    "srm_flagged": srm.flagged,
                    **common,
                    **{f"units/{a}": n for a, n in units.units_per_arm(arms, True).items()},
                    **{f"planned_n/{a}": n for a, n in readout.planned_units.items()},
                    "plan_baseline": readout.baseline_source,
                    **readout.plan_summary,
                    "cuped_theta": readout.cuped_theta,
                    "variance_reduction": readout.variance_reduction,
                    "comparison": _markdown(interval_table(readout.frame)),
                    "dagster/row_count": len(readout.frame),
                }
            ),
        )
        yield dg.AssetCheckResult(
            check_name=SRM_CHECK,
            passed=not srm.flagged,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=rounded_metadata(
                {
                    "p_value": srm.p_value,
                    "statistic": srm.statistic,
                    "split": _markdown(split_table(srm, weights)),
                }
            ),
        )

    return [experiment_analysis]
