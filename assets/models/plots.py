"""Evaluation plots as PNG bytes: ROC and precision-recall, calibration, ranking gain by cut-off.

Drawn with matplotlib's Agg backend (no display) from scikit-learn's curves; the model asset
embeds them in its metadata (the Dagster UI renders them) and logs them to the MLflow run.
"""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def classification_plots(y, model_p, baseline_p, baseline: str) -> dict[str, bytes]:
    """ROC, precision-recall and calibration of the model beside the baseline."""
    y = np.asarray(y)
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    for p, name in ((model_p, "model"), (baseline_p, baseline)):
        fpr, tpr, _ = roc_curve(y, p)
        axes[0].plot(fpr, tpr, label=name)
        precision, recall, _ = precision_recall_curve(y, p)
        axes[1].plot(recall, precision, label=name)
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    axes[1].set(title="precision-recall", xlabel="recall", ylabel="precision")
    observed, predicted = calibration_curve(y, model_p, n_bins=15, strategy="quantile")
    axes[2].plot(predicted, observed, "o-", label="model")
    top = max(float(np.max(predicted)), 1e-3)
    axes[2].plot([0, top], [0, top], ":", color="grey", label="perfect")
    axes[2].set(title="calibration (test)", xlabel="predicted", ylabel="observed")
    for axis in axes:
        axis.legend(loc="best", fontsize=8)
    return {"evaluation.png": _png(figure)}


def cutoff_plot(title: str, curves: dict[str, dict[int, float]], ylabel: str) -> dict[str, bytes]:
    """A metric by cut-off k for the model and its baseline (gain or recall curves)."""
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, points in curves.items():
        ks = sorted(points)
        axis.plot(ks, [points[k] for k in ks], "o-", label=name)
    axis.set(title=title, xlabel="k", ylabel=ylabel)
    axis.legend(loc="best", fontsize=8)
    return {"evaluation.png": _png(figure)}


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that shows ``png`` inline (a data URI), for Dagster metadata."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def plot_files(plots: dict[str, bytes]) -> dict[str, str]:
    """The plots as PNG files, by name without suffix, for MLflow to log as artifacts.

    A fresh temporary folder per call: MLflow copies the files into the run, so nothing here
    needs to outlive the call, and two runs logging plots of the same name cannot collide.
    """
    folder = Path(tempfile.mkdtemp(prefix="playbook-plots-"))
    files = {}
    for name, png in plots.items():
        path = folder / name
        path.write_bytes(png)
        files[Path(name).stem] = str(path)
    return files
