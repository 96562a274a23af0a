"""The registry's promotion policy and its records, with no MLflow or Dagster.

:func:`promotion_gate` decides whether a challenger takes ``champion``; :class:`RollbackEvent`
is what a rollback records. The tag names below are how both are written on model versions, so
the report, the UI and the rollback check read them back by the same names.
"""

from __future__ import annotations

from dataclasses import dataclass

GATE_TAG_PREFIX = "playbook.gate."
PREVIOUS_CHAMPION_TAG = "playbook.previous_champion"
ROLLED_BACK_TAG = "playbook.rolled_back"  # "true" on the version champion moved away from
RESTORED_TAG = "playbook.restored"  # "true" on the version champion moved back to
ROLLBACK_TAG_PREFIX = "playbook.rollback."  # reason, at, from, to (on both versions)
LAST_ROLLBACK_TAG = "playbook.last_rollback"  # on the registered model


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
