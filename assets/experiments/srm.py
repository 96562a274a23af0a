"""Sample-ratio mismatch: do the units per arm match the planned split?

The first thing to trust or distrust in an A/B test, and a test of its own (of the assignment,
not the outcome): a broken split (bucketing bugs, bots, a crashing arm) biases every comparison,
so :func:`assets.experiments.analysis.analyze_experiment` lets a flag here override every
verdict. The threshold is the usual, deliberately strict ``p < 0.001``: the test is run on every
experiment, often repeatedly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats as scipy_stats

from assets.experiments.plan import check_weights

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """Units per arm against the planned split; ``flagged`` when ``p_value < threshold``."""

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    p_value: float
    flagged: bool


def srm_check(
    counts: Mapping[str, int], weights: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square goodness of fit of the units per arm to the planned weights.

    An arm with no units counts as 0 observed (a crashing arm is exactly what this catches).
    """
    shares = check_weights(weights)
    unknown = sorted(set(counts) - set(shares))
    if unknown:
        raise ValueError(
            f"units in arms the experiment does not have: {unknown} (arms: {list(shares)})"
        )
    observed = {arm: int(counts.get(arm, 0)) for arm in shares}
    total = sum(observed.values())
    if total == 0:
        raise ValueError("no units in any arm: nothing to check")
    scale = sum(shares.values())
    expected = {arm: total * share / scale for arm, share in shares.items()}
    result = scipy_stats.chisquare(list(observed.values()), list(expected.values()))
    p_value = float(result.pvalue)
    return SrmResult(observed, expected, float(result.statistic), p_value, p_value < threshold)
