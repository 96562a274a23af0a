"""Offline metrics for classifiers and rankers, and the model-vs-baseline comparison table.

sklearn computes every metric it has (AUC, average precision, log loss, NDCG); the rest (ECE,
MRR, MAP, @k rates) are small vectorised pandas steps. Ranking metrics average over the groups
that contain at least one relevant item: a request with nothing relevant ranks nothing and would
only pull every model towards the same constant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, ndcg_score, roc_auc_score

ECE_BINS = 15
_EPS = 1e-15
# Metrics where smaller is better; every other metric here is better when larger.
LOWER_IS_BETTER = frozenset({"log_loss", "ece", "brier", "rmse", "mae", "mape"})
# Counts reported beside the metrics; never compared (see :func:`is_count`).
COUNTS = frozenset({"rows", "groups", "positive_rate", "units", "users", "fallback_users"})


# --------------------------------------------------------------------------- classification


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Row-weighted mean |observed rate - mean score| over equal-width probability bins."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    score_sum = np.bincount(index, weights=p, minlength=bins)
    label_sum = np.bincount(index, weights=y, minlength=bins)
    filled = counts > 0
    gap = np.abs(label_sum[filled] - score_sum[filled]) / counts[filled]
    return float((gap * counts[filled]).sum() / counts.sum())


def classification_metrics(y: np.ndarray | pd.Series, p: np.ndarray | pd.Series) -> dict:
    """auc, pr_auc (average precision), log_loss, ece (15 bins), plus rows and positive rate.

    AUC and PR-AUC are NaN when only one class is present (they are undefined, not 0 or 1).
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"need equally long, non-empty labels and scores ({len(y)} vs {len(p)})")
    both = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        "log_loss": float(log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1])),
        "ece": expected_calibration_error(y, np.clip(p, 0.0, 1.0)),
        "rows": len(y),
        "positive_rate": float(y.mean()),
    }


# --------------------------------------------------------------------------- ranking


def _mean_ndcg_at(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Mean per-group NDCG@k with sklearn, one call per group size.

    sklearn wants a rectangle of documents, so groups are bucketed by size and each bucket's mean
    is weighted by its group count; a group of one document is trivially in ideal order (sklearn
    refuses it), so it scores 1.
    """
    frame = pd.DataFrame({"g": groups, "y": labels, "s": scores})
    sizes = frame.groupby("g", sort=False)["y"].transform("size")
    total, n_total = 0.0, 0
    for size, bucket in frame.groupby(sizes):
        n_groups = len(bucket) // size
        n_total += n_groups
        if size == 1:
            total += n_groups
            continue
        bucket = bucket.sort_values("g", kind="stable")
        y = bucket["y"].to_numpy(dtype=float).reshape(n_groups, size)
        s = bucket["s"].to_numpy(dtype=float).reshape(n_groups, size)
        total += float(ndcg_score(y, s, k=k)) * n_groups
    return total / n_total if n_total else math.nan


def _ranked(frame: pd.DataFrame, group: str, label: str, score: str) -> pd.DataFrame:
    """Rows with their 0-based rank in the group; score ties are broken by a seeded shuffle, not
    by row order (which may follow the label and flatter a constant score)."""
    tie_break = np.random.default_rng(0).permutation(len(frame))
    ranked = pd.DataFrame(
        {
            "g": frame[group].to_numpy(),
            "rel": frame[label].to_numpy(dtype=float) > 0,
            "label": frame[label].to_numpy(dtype=float),
            "s": frame[score].to_numpy(dtype=float),
            "tie": tie_break,
        }
    )
    ranked = ranked.sort_values(["g", "s", "tie"], ascending=[True, False, True], kind="stable")
    ranked["rank"] = ranked.groupby("g", sort=False).cumcount()
    return ranked


def ranking_metrics(
    frame: pd.DataFrame, group: str, label: str, score: str, ks: Iterable[int] = (10,)
) -> dict:
    """ndcg@k (sklearn, graded gains), mrr, map, hit_rate@k, precision@k, recall@k.

    Averaged over groups with at least one relevant row (``label > 0``, which is also what MRR,
    MAP and the @k rates count as relevant for graded labels).
    """
    for col in (group, label, score):
        if col not in frame.columns:
            raise ValueError(f"column {col!r} is not in the frame")
    if frame[score].isna().any():
        raise ValueError(f"score {score!r} has missing values")
    ranked = _ranked(frame, group, label, score)
    relevant_groups = ranked.loc[ranked["rel"], "g"].unique()
    ranked = ranked[ranked["g"].isin(relevant_groups)]
    if ranked.empty:
        return {"groups": 0}
    per_group = ranked.groupby("g", sort=False)
    n_rel = per_group["rel"].sum()
    first = ranked[ranked["rel"]].groupby("g", sort=False)["rank"].min()
    hits_so_far = per_group["rel"].cumsum()
    precision_at_hit = (hits_so_far / (ranked["rank"] + 1)).where(ranked["rel"], 0.0)
    metrics: dict = {
        "groups": len(relevant_groups),
        "mrr": float((1.0 / (first + 1)).mean()),
        "map": float((precision_at_hit.groupby(ranked["g"]).sum() / n_rel).mean()),
    }
    for k in ks:
        top = ranked["rel"] & (ranked["rank"] < k)
        hits = top.groupby(ranked["g"]).sum()
        metrics[f"ndcg@{k}"] = _mean_ndcg_at(
            ranked["label"].to_numpy(), ranked["s"].to_numpy(), ranked["g"].to_numpy(), k
        )
        metrics[f"hit_rate@{k}"] = float((hits > 0).mean())
        metrics[f"precision@{k}"] = float((hits / k).mean())
        metrics[f"recall@{k}"] = float((hits / n_rel).mean())
    return metrics


# --------------------------------------------------------------------------- comparison


def base_metric(name: str) -> str:
    """A metric name without its part and cut-off: ``cold/ndcg@10`` is read as ``ndcg``."""
    return name.rsplit("/", 1)[-1].split("@")[0]


def is_count(name: str) -> bool:
    """Counts reported beside the metrics (``rows``, ``cold/units``, ``dropped/seen``...), which
    have no better direction and are not compared."""
    return name.startswith("dropped/") or base_metric(name) in COUNTS


def higher_is_better(metric: str) -> bool:
    """Direction of a metric name (``ndcg@10`` and ``cold/ndcg@10`` are read as ``ndcg``)."""
    return base_metric(metric) not in LOWER_IS_BETTER


def compare(
    metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    targets: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per metric both sides have: model, baseline, delta (model - baseline), better.

    ``better`` is True when the model is strictly better in the metric's own direction, or, for
    a metric in ``targets``, strictly closer to its target (an 80% interval's coverage is best at
    0.80, not at 1); counts such as ``rows``, ``groups`` and ``cold/units`` are not metrics and
    are left out.
    """
    rows = []
    targets = targets or {}
    for name in metrics:
        if is_count(name) or name not in baseline_metrics:
            continue
        model, base = float(metrics[name]), float(baseline_metrics[name])
        delta = model - base
        if name in targets:
            better = abs(model - targets[name]) < abs(base - targets[name])
        else:
            better = delta > 0 if higher_is_better(name) else delta < 0
        rows.append(
            {
                "metric": name,
                "model": model,
                "baseline": base,
                "delta": delta,
                "better": bool(better) and not math.isnan(delta),
            }
        )
    return pd.DataFrame(rows, columns=["metric", "model", "baseline", "delta", "better"])
