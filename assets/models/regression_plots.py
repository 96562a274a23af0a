"""A regressor's evaluation plots: predicted vs actual, residuals vs predicted, residual spread.

PNG files like :mod:`assets.models.plots` (which embeds them in the asset's metadata and logs them
to MLflow), plus the inline preview: the mean actual value per predicted-value decile for the
model and its baseline, a line on the diagonal for a well-fitted model and flat for the mean.
Scatter plots draw at most :data:`SCATTER_POINTS` test rows (a seeded sample), enough to see
the shape without megabytes of PNG.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from assets.models.plots import Plots, curve_preview  # noqa: E402

SCATTER_POINTS = 3000
DECILES = 10


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def binned_means(y: np.ndarray, prediction: np.ndarray, bins: int = DECILES) -> list[tuple]:
    """(mean prediction, mean actual) per quantile bin of the prediction; a constant prediction
    is a single point."""
    frame = pd.DataFrame({"p": np.asarray(prediction, float), "y": np.asarray(y, float)})
    ranks = frame["p"].rank(method="first")
    frame["bin"] = pd.qcut(ranks, min(bins, len(frame)), labels=False, duplicates="drop")
    if frame["p"].nunique() == 1:
        frame["bin"] = 0
    means = frame.groupby("bin")[["p", "y"]].mean()
    return list(zip(means["p"].tolist(), means["y"].tolist(), strict=True))


def regression_plots(
    y,
    prediction,
    baseline,
    baseline_name: str,
    interval: tuple[np.ndarray, np.ndarray] | None = None,
) -> Plots:
    """Predicted vs actual (with the interval's bounds when given), residuals vs predicted and
    the residual histograms of model and baseline; the preview is the decile curve of both."""
    y, prediction, baseline = (np.asarray(a, dtype=float) for a in (y, prediction, baseline))
    rng = np.random.default_rng(0)
    shown = np.sort(rng.permutation(len(y))[:SCATTER_POINTS])
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    low, high = float(min(y.min(), prediction.min())), float(max(y.max(), prediction.max()))
    axes[0].scatter(prediction[shown], y[shown], s=4, alpha=0.3, label="model")
    if interval is not None:
        order = shown[np.argsort(prediction[shown])]
        axes[0].plot(prediction[order], interval[0][order], ",", color="grey", label="interval")
        axes[0].plot(prediction[order], interval[1][order], ",", color="grey")
    axes[0].plot([low, high], [low, high], ":", color="black", label="y = prediction")
    axes[0].set(title="predicted vs actual (test)", xlabel="predicted", ylabel="actual")
    residual = y - prediction
    axes[1].scatter(prediction[shown], residual[shown], s=4, alpha=0.3)
    axes[1].axhline(0.0, color="black", linestyle=":")
    axes[1].set(title="residuals (test)", xlabel="predicted", ylabel="actual - predicted")
    spread = np.quantile(np.abs(np.concatenate([residual, y - baseline])), 0.99)
    edges = np.linspace(-spread, spread, 41)
    axes[2].hist(residual, bins=edges, alpha=0.6, label="model")
    axes[2].hist(y - baseline, bins=edges, alpha=0.6, label=baseline_name)
    axes[2].set(title="residual distribution (test)", xlabel="actual - predicted", ylabel="rows")
    for axis in (axes[0], axes[2]):
        axis.legend(loc="best", fontsize=8)
    curves = [binned_means(y, prediction), binned_means(y, baseline)]
    values = [v for curve in curves for point in curve for v in point]
    span = (float(min(values)), float(max(values)))
    preview = curve_preview(
        "mean actual by predicted decile",
        f"actual {span[0]:.3g}\u2013{span[1]:.3g} by predicted (test deciles)\n"
        f"blue: model, orange: {baseline_name}",
        curves,
        span,
        span,
    )
    return Plots({"evaluation.png": _png(figure)}, preview)
