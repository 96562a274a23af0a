"""Monitoring plots as PNG bytes or Markdown for metadata: drift per bin, a metric per day.

Drawn with matplotlib's Agg backend (no display). The drift and performance assets only call
these and put the result in their metadata, so the drawing can be run and looked at without
Dagster.
"""

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from assets.models.plots import markdown_image  # noqa: E402
from assets.monitoring.drift import Drift  # noqa: E402

# Plots in one drift report: the worst features only, so the metadata stays small enough for the
# Dagster UI to render (each plot is an inline PNG).
MAX_PLOTS = 6


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


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
    return _png(figure)


def drift_plots(drifts: Sequence[Drift], limit: int = MAX_PLOTS) -> str:
    """Markdown with the bin shares of the features that warn or alert, worst PSI first.

    Per drift source in the given order, at most ``limit`` plots in all; a fixed sentence when
    no feature warns, so the report says so rather than showing an empty field.
    """
    images: list[str] = []
    for drift in drifts:
        worst = drift.table[drift.table["status"].isin(["warn", "alert"])]
        for row in worst.sort_values("psi", ascending=False).itertuples():
            if len(images) == limit:
                break
            title = f"{row.source} {row.feature}: PSI {row.psi:.3f} ({row.status})"
            images.append(
                markdown_image(bin_shares_plot(drift.breakdown(row.feature), title), title)
            )
    return "\n\n".join(images) or "No feature warns."


def metric_by_day_plot(table: pd.DataFrame, metric: str) -> bytes:
    """``metric`` per day of the prediction, one line per model version.

    ``table`` is :func:`assets.monitoring.performance.performance_table`; an undefined value
    (NA: one class only that day) leaves a gap in the line rather than a misleading zero.
    """
    figure, axes = plt.subplots(figsize=(7, 3.2), dpi=90)
    for version, rows in table.groupby("version", sort=False):
        values = rows[metric].astype("float64")  # undefined (NA) -> a gap in the line
        axes.plot(rows["day"], values, marker="o", label=f"v{version}")
    axes.set_ylabel(f"{metric} (delayed labels)")
    axes.set_xlabel("day of the prediction (UTC)")
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    return _png(figure)
