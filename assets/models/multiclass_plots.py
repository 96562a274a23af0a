"""Evaluation plots of a multiclass classifier: confusion matrices and the review trade-off.

Two PNGs beside the model asset (and in its MLflow run): the test split's confusion matrix of the
model and of its baseline, row-normalised (each true class's rows add to 1, so a rare class is as
readable as the common one) with the counts written in, and the review curve: accuracy of the
automatic decisions against the share of cases sent to people, as the review threshold moves,
the trade-off ``review_below`` picks a point on. The preview (shown inline in the Dagster UI) is
that curve, model beside baseline.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import confusion_matrix

from assets.models.plots import Plots, curve_preview  # also puts matplotlib on its Agg backend

REVIEW_SHARES = np.linspace(0.0, 0.9, 19)  # the review curve's points: 0%..90% of cases reviewed


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def review_curve(y: np.ndarray, p: np.ndarray) -> list[tuple[float, float]]:
    """(share reviewed, accuracy of the rest) when the least confident cases go to review.

    Sending the ``s`` least confident share of cases to people is what a threshold on the top
    probability does, so each point is one possible ``review_below``.
    """
    y = np.asarray(y, dtype=int)
    p = np.atleast_2d(np.asarray(p, dtype=float))
    order = np.argsort(-p.max(axis=1), kind="stable")
    correct = (p.argmax(axis=1) == y)[order]
    points = []
    for share in REVIEW_SHARES:
        kept = max(int(round(len(y) * (1.0 - share))), 1)
        points.append((float(share), float(correct[:kept].mean())))
    return points


def _confusion(axis, y, p, classes: Sequence[str], title: str) -> None:
    counts = confusion_matrix(y, np.asarray(p).argmax(axis=1), labels=list(range(len(classes))))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    axis.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if rates[i, j] > 0.6 else "black"
            axis.text(j, i, f"{rates[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center",
                      fontsize=7, color=colour)  # fmt: skip
    ticks = list(range(len(classes)))
    axis.set_xticks(ticks, classes, rotation=45, ha="right")
    axis.set_yticks(ticks, classes)
    axis.set(title=title, xlabel="predicted", ylabel="true")


def multiclass_plots(
    y: np.ndarray,
    model_p: np.ndarray,
    baseline_p: np.ndarray,
    classes: Sequence[str],
    baseline: str,
) -> Plots:
    """Confusion matrices (model, baseline) and the review curve of both; the preview is the
    review curve."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    _confusion(axes[0], y, model_p, classes, "model (test, row-normalised)")
    _confusion(axes[1], y, baseline_p, classes, f"{baseline} (test, row-normalised)")
    confusion_png = _png(figure)
    curves = [review_curve(y, model_p), review_curve(y, baseline_p)]
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for curve, name in zip(curves, ("model", baseline), strict=True):
        axis.plot(*zip(*curve, strict=True), "o-", label=name, markersize=3)
    axis.set(
        title="review trade-off (test)",
        xlabel="share of cases sent to review",
        ylabel="accuracy of automatic decisions",
    )
    axis.legend(loc="best", fontsize=8)
    review_png = _png(figure)
    low = min(0.5, min(a for curve in curves for _, a in curve))
    low = float(np.floor(low * 10) / 10)
    preview = curve_preview(
        "review trade-off",
        f"accuracy of automatic decisions {low:g}\u20131 by share reviewed 0\u20130.9 (test)\n"
        f"blue: model, orange: {baseline}",
        curves,
        (0.0, 0.9),
        (low, 1.0),
    )
    return Plots({"confusion.png": confusion_png, "review_curve.png": review_png}, preview)
