"""Approve / review / decline thresholds read off a calibrated score, chosen on validation data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from configs.schema.stages import DecisionBandsSpec
from runtime.models.decision_bands import DecisionBands

# --------------------------------------------------------------------------- decision bands


def _decline_threshold(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """Lowest score whose decline set (p >= score) has precision at least ``target``."""
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    last_of_value = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    precision = np.cumsum(y_sorted) / np.arange(1, len(y_sorted) + 1)
    ok = last_of_value & (precision >= target)
    return float(p_sorted[ok].min()) if ok.any() else math.inf


def _approve_threshold(y: np.ndarray, p: np.ndarray, max_share: float) -> float:
    """Highest score below which at most ``max_share`` of the positives fall."""
    positives = np.sort(p[y == 1])
    allowed = int(math.floor(max_share * len(positives) + 1e-9))
    return float(positives[allowed]) if allowed < len(positives) else math.inf


def _cost_thresholds(y: np.ndarray, p: np.ndarray, spec: DecisionBandsSpec) -> tuple[float, float]:
    """The (approve, decline) pair with the least total cost, searched exactly over cut points.

    Sorted ascending, approving the first ``i`` rows and declining from row ``j`` costs
    ``f(i) + g(j)`` with ``f(i) = c_fa * positives[:i] - c_r * i`` and
    ``g(j) = c_fd * negatives[j:] + c_r * j``; a running minimum of ``f`` gives the best ``i <= j``.
    """
    order = np.argsort(p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    n = len(p_sorted)
    cuts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1], True])  # 0..n, value edges
    cum_pos = np.r_[0, np.cumsum(y_sorted)][cuts]
    cum_neg = np.r_[0, np.cumsum(1 - y_sorted)][cuts]
    f = spec.cost_false_approve * cum_pos - spec.cost_review * cuts
    g = spec.cost_false_decline * (cum_neg[-1] - cum_neg) + spec.cost_review * cuts
    best_f_index = _running_argmin(f)
    j = int(np.argmin(f[best_f_index] + g))
    i = int(best_f_index[j])
    threshold = np.r_[p_sorted, math.inf]
    return float(threshold[cuts[i]] if cuts[i] < n else math.inf), float(threshold[cuts[j]])


def _running_argmin(values: np.ndarray) -> np.ndarray:
    """Index of the smallest value among ``values[: k + 1]`` for every ``k``."""
    running = np.minimum.accumulate(values)
    is_new_min = np.r_[True, running[1:] < running[:-1]]
    return np.maximum.accumulate(np.where(is_new_min, np.arange(len(values)), 0))


def band_summary(
    y: np.ndarray, p: np.ndarray, bands: DecisionBands, spec: DecisionBandsSpec
) -> dict[str, Any]:
    """Shares, decline precision, approved positives and cost per case of ``bands`` on (y, p)."""
    decision = bands.apply_bands(p)
    approve, decline = decision == "approve", decision == "decline"
    review = ~(approve | decline)
    n_pos = max(int(y.sum()), 1)
    cost = (
        spec.cost_false_approve * (approve & (y == 1)).sum()
        + spec.cost_false_decline * (decline & (y == 0)).sum()
        + spec.cost_review * review.sum()
    )
    return {
        "approve_share": float(approve.mean()),
        "review_share": float(review.mean()),
        "decline_share": float(decline.mean()),
        "decline_precision": float(y[decline].mean()) if decline.any() else math.nan,
        "positive_share_approved": float((approve & (y == 1)).sum() / n_pos),
        "cost_per_case": float(cost / len(y)),
    }


def decision_bands(
    y_valid: np.ndarray | pd.Series, p_valid: np.ndarray | pd.Series, spec: DecisionBandsSpec
) -> DecisionBands:
    """Thresholds read off calibrated validation scores (``precision`` or ``cost`` method).

    When the approve threshold would pass the decline threshold the review band is empty and the
    approve threshold is lowered to the decline one: declining wins, as a missed positive is the
    costlier mistake these bands exist to limit.
    """
    y = np.asarray(y_valid, dtype=int)
    p = np.asarray(p_valid, dtype=float)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"need equally long, non-empty labels and scores ({len(y)} vs {len(p)})")
    if y.sum() == 0:
        raise ValueError("decision bands need at least one positive validation row")
    if spec.method == "precision":
        decline = _decline_threshold(y, p, spec.decline_precision)
        approve = _approve_threshold(y, p, spec.approve_max_positive_share)
    else:
        approve, decline = _cost_thresholds(y, p, spec)
    approve = min(approve, decline)
    bands = DecisionBands(approve, decline, {})
    bands.summary = {"method": spec.method, "rows": len(y), **band_summary(y, p, bands, spec)}
    return bands
