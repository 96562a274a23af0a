"""The auto-rollback rule: does the freshly promoted champion do worse on delayed labels?

Plain decision, no Dagster or MLflow: the performance asset's ``rollback`` check feeds it each
version's numbers over the predictions it served (:func:`assets.monitoring.performance.
version_summary`) and, on a yes, asks the registry to move ``champion`` back.

The rule: roll back when the champion's metric is below the previous champion's by more than
``margin`` (the model's ``promotion_margin``, in the metric's units, as the promotion gate uses
it), and only once both versions have at least ``min_labelled`` labelled predictions with at
least ``min_positives`` positives among them: the metric of a few dozen transactions with one
fraud is noise, and a rollback on noise would undo a good promotion. An undefined metric (one
class only) never triggers anything.

The comparison is between the predictions each version served, so when the two served at
different times it also compares two periods: a population that got harder can look like a
worse model. An experiment that serves both versions at once removes that doubt; the per-day
table beside the check shows which days each version served.

:func:`check_rollback` is the whole check without Dagster: it reads the champion and the version
it replaced from the registry, applies the rule and, on a yes, asks the registry to move
``champion`` back. The registry is anything with the three methods of :class:`RollbackRegistry`
(``MLflowResource`` in the pipeline, a small fake in the tests).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from assets.monitoring.performance import METRICS, summary_of
from configs.schema.usecase import UseCaseSpec
from runtime import layout
from runtime.promotion import PREVIOUS_CHAMPION_TAG, RollbackEvent

MIN_LABELLED = 200
MIN_POSITIVES = 5
DEFAULT_METRIC = "auc"


def rollback_metric(spec: UseCaseSpec) -> str:
    """The use case's primary metric when it is one tracked on delayed labels, else AUC.

    The rule needs a metric the performance table has per version; a primary metric it cannot
    compute on delayed labels (a ranking metric, say) falls back to AUC rather than to nothing.
    """
    primary = spec.metrics.primary if spec.metrics else None
    return primary if primary in METRICS else DEFAULT_METRIC


@dataclass(frozen=True)
class RollbackDecision:
    """Whether to move ``champion`` back to ``previous_version``, and why."""

    roll_back: bool
    reason: str
    metric: str
    champion_version: str | None
    previous_version: str | None
    champion_value: float | None = None
    previous_value: float | None = None
    margin: float = 0.0

    @property
    def delta(self) -> float | None:
        """Champion minus previous champion (negative: the champion does worse)."""
        if self.champion_value is None or self.previous_value is None:
            return None
        return self.champion_value - self.previous_value


def _enough(name: str, numbers: Mapping[str, Any], min_labelled: int, min_positives: int) -> str:
    """Why ``numbers`` are too few to judge, or an empty string."""
    labelled, positives = int(numbers.get("labelled", 0)), int(numbers.get("positives", 0))
    if labelled < min_labelled:
        return f"{name} has {labelled} labelled predictions, fewer than {min_labelled}"
    if positives < min_positives:
        return f"{name} has {positives} positive labels, fewer than {min_positives}"
    return ""


def rollback_decision(
    champion_version: str | None,
    champion: Mapping[str, Any] | None,
    previous_version: str | None,
    previous: Mapping[str, Any] | None,
    metric: str,
    margin: float,
    min_labelled: int = MIN_LABELLED,
    min_positives: int = MIN_POSITIVES,
    higher_is_better: bool = True,
) -> RollbackDecision:
    """Decide on the delayed-label numbers of the champion and the previous champion.

    ``champion`` and ``previous`` are mappings with ``labelled``, ``positives`` and ``metric``
    (None when undefined), or None when the version served nothing yet.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")

    def keep(reason: str, **values: Any) -> RollbackDecision:
        return RollbackDecision(
            False, reason, metric, champion_version, previous_version, margin=margin, **values
        )

    if champion_version is None:
        return keep("no champion")
    if previous_version is None or previous_version == champion_version:
        return keep(f"champion v{champion_version} has no previous champion recorded")
    for name, numbers in (
        (f"champion v{champion_version}", champion),
        (f"previous champion v{previous_version}", previous),
    ):
        if numbers is None:
            return keep(f"waiting for labels: {name} has no logged predictions")
        short = _enough(name, numbers, min_labelled, min_positives)
        if short:
            return keep(f"waiting for labels: {short}")
    now, before = champion[metric], previous[metric]  # type: ignore[index]
    values = {"champion_value": now, "previous_value": before}
    if now is None or before is None:
        return keep(f"{metric} is undefined for one of the versions (one class only)", **values)
    now, before = float(now), float(before)
    values = {"champion_value": now, "previous_value": before}
    worse = (before - now) if higher_is_better else (now - before)
    compared = (
        f"{metric} on delayed labels: champion v{champion_version} {now:.4g} "
        f"({champion['labelled']} labelled), previous champion v{previous_version} "  # type: ignore[index]
        f"{before:.4g} ({previous['labelled']} labelled)"  # type: ignore[index]
    )
    if worse > margin:
        return RollbackDecision(
            True,
            f"{compared}: worse by {worse:.4g}, beyond margin {margin:.4g}",
            metric,
            champion_version,
            previous_version,
            now,
            before,
            margin,
        )
    return keep(f"{compared}: within margin {margin:.4g}", **values)


class RollbackRegistry(Protocol):
    """What the check needs of the model registry (``MLflowResource`` has these methods)."""

    def version_by_alias(self, name: str, alias: str) -> str | None: ...

    def version_tags(self, name: str, version: str) -> Mapping[str, str]: ...

    def rollback(
        self, name: str, to_version: str, reason: str, experiment: str | None = None
    ) -> RollbackEvent: ...


@dataclass(frozen=True)
class RollbackOutcome:
    """What :func:`check_rollback` decided and, when it rolled back, the registry's record."""

    registered_model: str
    decision: RollbackDecision
    min_labelled: int
    min_positives: int
    event: RollbackEvent | None = None

    @property
    def rolled_back(self) -> bool:
        """Whether ``champion`` was moved back (the check fails then, as a warning)."""
        return self.event is not None

    def metadata(self) -> dict[str, str | float | int | bool]:
        """The check's metadata: the rule's inputs and reason, plus the event on a rollback.

        Kept here rather than in the asset so the keys the UI and the tests read are built,
        and testable, in one place; the order is the one the Dagster UI lists them in.
        """
        decision = self.decision
        details: dict[str, str | float | int | bool] = {
            "registered_model": self.registered_model,
            "metric": decision.metric,
            "margin": float(decision.margin),
            "min_labelled": self.min_labelled,
            "min_positives": self.min_positives,
            "champion_version": decision.champion_version or "none",
            "previous_champion": decision.previous_version or "none",
            "reason": decision.reason,
        }
        event = self.event
        if event is None:
            return {"rolled_back": False, **details}
        return {
            "rolled_back": True,
            "rolled_back_from": event.from_version,
            "rolled_back_to": event.to_version,
            "rolled_back_at": event.at,
            "mlflow_run_id": event.run_id or "",
            "champion_value": float(decision.champion_value),  # type: ignore[arg-type]
            "previous_value": float(decision.previous_value),  # type: ignore[arg-type]
            "champion_now": event.to_version,
            **details,
        }


def check_rollback(
    registry: RollbackRegistry,
    registered_model: str,
    summary: pd.DataFrame,
    metric: str,
    margin: float,
    experiment: str | None = None,
    min_labelled: int = MIN_LABELLED,
    min_positives: int = MIN_POSITIVES,
) -> RollbackOutcome:
    """Apply the rule to the registry's champion and the version it replaced; roll back on a yes.

    ``summary`` is :func:`assets.monitoring.performance.version_summary` of the served
    predictions. The previous champion is the one the promotion gate recorded on the champion
    (``playbook.previous_champion``): the registry, not the log, knows which version was
    replaced. On a rollback the registry also logs a ``rollback`` run in ``experiment``.
    """
    champion = registry.version_by_alias(registered_model, layout.CHAMPION)
    previous = (
        registry.version_tags(registered_model, champion).get(PREVIOUS_CHAMPION_TAG) or None
        if champion
        else None
    )
    decision = rollback_decision(
        champion,
        summary_of(summary, champion),
        previous,
        summary_of(summary, previous),
        metric,
        margin,
        min_labelled=min_labelled,
        min_positives=min_positives,
    )
    event = None
    if decision.roll_back:
        event = registry.rollback(
            registered_model,
            previous,  # type: ignore[arg-type]  # a yes always names the previous champion
            decision.reason,
            experiment=experiment,
        )
    return RollbackOutcome(registered_model, decision, min_labelled, min_positives, event)
