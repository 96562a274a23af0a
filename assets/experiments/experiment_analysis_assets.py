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

With ``experiment.guardrails``, every guardrail is tested per treatment arm and the arm decided
(ship / do not ship / keep running, :mod:`assets.experiments.guardrail_readout`), also before any
unit has a primary outcome (latency and errors show at once; labels may arrive days later).
The metadata has the decision, its reason, the guardrails' table and each one's evidence; an
ERROR check ``guardrails`` fails when a guardrail is shown worse than its margin: the signal to
stop the experiment, with the estimate, bounds, margin and p-values in its metadata.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.experiments.analysis import FRAME_COLUMNS
from assets.experiments.guardrail_readout import GuardrailReadout, read_guardrails
from assets.experiments.guardrail_report import guardrail_check, guardrail_metadata
from assets.experiments.readout import (
    OUTCOME,
    exclusions,
    interval_table,
    read_out,
    split_table,
)
from assets.experiments.units import experiment_units
from assets.log_rows import log_rows_check, log_rows_check_spec, log_rows_metadata
from assets.metadata import asset_identity, rounded_metadata
from assets.raw.event_log import log_files, read_events
from configs.schema.usecase import UseCaseSpec
from resources.home import HomeResource
from runtime import layout
from runtime.request_log import declared_types, load_request_log
from runtime.request_log_frame import RequestLogRows

SRM_CHECK = "sample_ratio"
GUARDRAIL_CHECK = "guardrails"
NO_DATA = "no_data"


def request_log_file(home: HomeResource, spec: UseCaseSpec) -> Path:
    """Where the use case's services write their request log (not created here)."""
    return Path(str(home.layout.request_log(spec.name)))


def _read_log(path: Path, spec: UseCaseSpec) -> RequestLogRows:
    """The request log's readable rows and the ones skipped with their reasons (no rows when no
    service has run): an unreadable row is counted and reported by the ``request_log_rows``
    check (:mod:`assets.log_rows`), never a failure of the analysis."""
    return load_request_log(path, declared_types(spec))


def _markdown(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "_(empty)_")


def _no_data(reason: str, extra: dict | None = None, guardrails: bool = False):
    """An empty comparison table with the reason, and checks with nothing to flag."""
    yield dg.Output(
        pd.DataFrame(columns=list(FRAME_COLUMNS)),
        metadata=rounded_metadata(
            {"verdict": NO_DATA, "reason": reason, "dagster/row_count": 0, **(extra or {})}
        ),
    )
    for name in (SRM_CHECK, GUARDRAIL_CHECK) if guardrails else (SRM_CHECK,):
        yield dg.AssetCheckResult(
            check_name=name,
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
    label_columns = {name: entry.column for name, entry in spec.labels.items()}
    # what the read-out and the label guardrails read of the events: nothing else is loaded
    event_columns = [experiment.unit, timestamp, label]
    event_columns += [label_columns[g.metric] for g in experiment.guardrails if g.kind == "label"]
    event_columns = list(dict.fromkeys(event_columns))
    unknown = [
        g.metric for g in experiment.guardrails if g.kind == "label" and g.metric not in spec.labels
    ]
    if unknown:
        raise ValueError(
            f"{spec.path}: experiment.guardrails: metric(s) {unknown} are neither latency_p<q>,"
            f" error_rate nor a label (labels: {sorted(spec.labels)})"
        )
    guarded = bool(experiment.guardrails)
    checks = [
        dg.AssetCheckSpec(
            SRM_CHECK,
            asset=key,
            description="Units per arm match the planned split (chi-square, p >= 0.001).",
        ),
        log_rows_check_spec(key),
    ]
    if guarded:
        shown = ", ".join(g.label for g in experiment.guardrails)
        checks.append(
            dg.AssetCheckSpec(
                GUARDRAIL_CHECK,
                asset=key,
                description=(
                    f"No guardrail ({shown}) is shown worse than its margin (always-valid"
                    " mSPRT, Holm over guardrails); a failure means: stop the experiment."
                ),
            )
        )

    @dg.asset(
        key=key,
        deps=[
            dg.AssetKey(layout.raw_events_key(spec.name)),  # read by file: a few columns
            dg.AssetKey(layout.serving_bundle_key(spec.name)),
        ],
        **asset_identity(spec, "monitoring"),
        kinds={"pandas", "sqlite", "scipy"},
        description=(
            f"A/B test {experiment.name!r} ({' vs '.join(arms)}) from the request log: per"
            f" {experiment.unit}, the {experiment.metric} rate ({label}) since first exposure,"
            " CUPED on the rate before it; sample-ratio check, Welch test with intervals and a"
            " verdict that waits for the planned sample"
            + (
                f"; guardrails ({', '.join(g.label for g in experiment.guardrails)}) and a"
                " ship / do-not-ship / keep-running decision."
                if guarded
                else "."
            )
        ),
        check_specs=checks,
    )
    def experiment_analysis(context: dg.AssetExecutionContext, home: HomeResource):
        path = request_log_file(home, spec)
        rows = _read_log(path, spec)
        yield log_rows_check(rows, context)
        requests = rows.frame if len(rows.frame) else None
        if requests is None:
            reason = f"no request log at {path} (or it is empty, or no row of it is readable)"
            yield from _no_data(reason, log_rows_metadata(rows), guarded)
            return
        raw_events = read_events(log_files(spec, home.layout), event_columns)
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
            **log_rows_metadata(rows),
            "outcome": f"{experiment.metric} ({label}) rate per {experiment.unit} since exposure",
            **{f"exposed/{a}": n for a, n in units.units_per_arm(arms).items()},
            **exclusions(units),
        }
        readout = None if analysable.empty else read_out(experiment, analysable, weights, OUTCOME)
        guards: GuardrailReadout | None = None
        if guarded and not units.table.empty:
            guards = read_guardrails(
                experiment,
                requests,
                raw_events,
                units,
                readout,
                label_columns=label_columns,
                timestamp_column=timestamp,
            )
            if guards.stop:
                context.log.error(f"experiment {experiment.name!r}: {guards.summary}")
        if readout is None:
            reason = "no exposed unit has an event since its exposure yet"
            extra = {**common, **(guardrail_metadata(guards) if guards else {})}
            yield from _no_data(reason, extra)
            if guarded:
                yield _guardrail_result(guards, reason)
            return

        srm = readout.analysis.srm
        yield dg.Output(
            readout.frame,
            metadata=rounded_metadata(
                {
                    **(guardrail_metadata(guards) if guards else {}),
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
        if guarded:
            yield _guardrail_result(guards, "no unit was exposed")

    return [experiment_analysis]


def _guardrail_result(guards: GuardrailReadout | None, reason: str) -> dg.AssetCheckResult:
    """The ``guardrails`` check: fails (ERROR) when a guardrail is shown worse than its margin."""
    if guards is None:
        return dg.AssetCheckResult(
            check_name=GUARDRAIL_CHECK,
            passed=True,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"status": NO_DATA, "reason": reason},
        )
    passed, metadata = guardrail_check(guards)
    return dg.AssetCheckResult(
        check_name=GUARDRAIL_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=rounded_metadata(metadata),
    )
