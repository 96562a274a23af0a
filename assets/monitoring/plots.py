"""Drift plots: reference vs window share per bin of one feature, as PNG bytes for metadata."""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def bin_shares_plot(breakdown: pd.DataFrame, title: str) -> bytes:
    """Side-by-side bars of the reference and window share of each bin."""
    positions = np.arange(len(breakdown))
    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=90)
    axes.bar(positions - 0.2, breakdown["reference"], width=0.4, label="reference")
    axes.bar(positions + 0.2, breakdown["window"], width=0.4, label="window")
    axes.set_xticks(positions, breakdown["bin"].astype(str), rotation=45, ha="right", fontsize=7)
    axes.set_ylabel("share of rows")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
