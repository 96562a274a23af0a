"""The registry's promotion policy and its records, with no MLflow or Dagster.

:func:`promotion_gate` decides whether a challenger takes ``champion`` offline; with an ``slo``
section that pass is not enough: the version waits (``playbook.awaiting_slo``) until
:func:`slo_verdict` says the served version met the SLO under load. :class:`RollbackEvent` is
what a rollback records. The tag names below are how all three are written on model versions,
so the report, the UI and the rollback check read them back by the same names.
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.schema.slo import SLOSpec

GATE_TAG_PREFIX = "playbook.gate."
PREVIOUS_CHAMPION_TAG = "playbook.previous_champion"
ROLLED_BACK_TAG = "playbook.rolled_back"  # "true" on the version champion moved away from
RESTORED_TAG = "playbook.restored"  # "true" on the version champion moved back to
ROLLBACK_TAG_PREFIX = "playbook.rollback."  # reason, at, from, to (on both versions)
LAST_ROLLBACK_TAG = "playbook.last_rollback"  # on the registered model
# "true" on a version that passed the offline gate and waits for the SLO check to promote it
AWAITING_SLO_TAG = "playbook.awaiting_slo"
SLO_TAG_PREFIX = "playbook.slo."  # the SLO check's verdict and figures, on the versions it tested


@dataclass(frozen=True)
class RollbackEvent:
    """A rollback done by :meth:`resources.mlflow_resource.MLflowResource.rollback`."""

    name: str
    from_version: str
    to_version: str
    reason: str
    at: str  # ISO 8601, UTC
    run_id: str | None  # the MLflow run recording it, when an experiment was given


@dataclass(frozen=True)
class GateVerdict:
    """The promotion gate's decision.

    ``delta`` is the challenger's improvement over the champion in the metric's own direction
    (positive: better), ``None`` when there is no champion.
    """

    promote: bool
    reason: str
    delta: float | None
    challenger_metric: float | None = None
    champion_metric: float | None = None
    champion_version: str | None = None


def promotion_gate(
    challenger_metric: float,
    champion_metric: float | None,
    higher_is_better: bool,
    margin: float,
) -> GateVerdict:
    """Promote when there is no champion, or when the challenger is not worse by more than
    ``margin`` (absolute, in metric units).

    The margin absorbs evaluation noise: retraining on fresh data should replace a champion that
    is equally good, and only a real regression should block it.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if champion_metric is None:
        return GateVerdict(True, "no champion yet", None, challenger_metric, None)
    delta = challenger_metric - champion_metric
    if not higher_is_better:
        delta = -delta
    promote = delta >= -margin
    if delta >= 0:
        reason = (
            f"challenger {challenger_metric:.6g} is not worse than champion {champion_metric:.6g}"
        )
    elif promote:
        reason = (
            f"challenger {challenger_metric:.6g} is worse than champion {champion_metric:.6g} "
            f"by {-delta:.6g}, within margin {margin:.6g}"
        )
    else:
        reason = (
            f"challenger {challenger_metric:.6g} is worse than champion {champion_metric:.6g} "
            f"by {-delta:.6g}, beyond margin {margin:.6g}"
        )
    return GateVerdict(promote, reason, delta, challenger_metric, champion_metric)


@dataclass(frozen=True)
class SLOVerdict:
    """Whether a served candidate met its SLO; ``reasons`` name each bound and its figure."""

    holds: bool
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        """One line: what failed, or that every bound held."""
        return "; ".join(self.reasons)


def slo_verdict(
    slo: SLOSpec,
    p99_ms: float,
    qps: float,
    error_rate: float,
    answered: int,
    workers_started: int,
) -> SLOVerdict:
    """Judge measured figures against ``slo``: every bound must hold.

    A run that answered nothing, or served with fewer workers than the SLO states, proves
    nothing about the SLO and fails it (its latency figures would be of another service).
    """
    failed: list[str] = []
    held: list[str] = []
    if workers_started < slo.workers:
        failed.append(f"only {workers_started} of {slo.workers} workers started")
    if answered == 0:
        failed.append("no request was answered")
    checks = [
        (p99_ms <= slo.p99_ms, f"p99 {p99_ms:.2f} ms", f"{slo.p99_ms:g} ms", "<=", ">"),
        (
            error_rate <= slo.max_error_rate,
            f"error rate {error_rate:.4g}",
            f"{slo.max_error_rate:g}",
            "<=",
            ">",
        ),
    ]
    if slo.peak_qps is not None:
        checks.append((qps >= slo.peak_qps, f"{qps:.0f} req/s", f"{slo.peak_qps:g}", ">=", "<"))
    for ok, figure, bound, good, bad in checks:
        (held if ok else failed).append(f"{figure} {good if ok else bad} {bound}")
    if failed:
        return SLOVerdict(False, tuple(failed))
    return SLOVerdict(True, tuple(held))
