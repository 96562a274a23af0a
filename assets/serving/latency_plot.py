"""The SLO check's latency histogram: a PNG for the UI and MLflow, and an inline preview.

The measured latencies (one per answered request, from ``wrk``'s histogram) on log-spaced bins,
since a service's tail sits an order of magnitude past its median; the p50/p95/p99 lines and the
SLO's p99 bound show at a glance how far the tail is from the bound.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from assets.models.plots import curve_preview  # noqa: E402

BINS = 40


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _bins(histogram: Sequence[tuple[float, int]], bound_ms: float) -> np.ndarray:
    values = [ms for ms, _ in histogram if ms > 0] or [bound_ms]
    low = max(min(min(values), bound_ms) / 1.5, 1e-3)
    high = max(max(values), bound_ms) * 1.5
    return np.geomspace(low, high, BINS + 1)


def latency_histogram(
    histogram: Sequence[tuple[float, int]],
    percentiles: dict[str, float],
    bound_ms: float,
    title: str,
) -> bytes:
    """A PNG of the latency distribution with ``percentiles`` (name -> ms) and the bound."""
    edges = _bins(histogram, bound_ms)
    figure, axes = plt.subplots(figsize=(7, 3.2))
    if histogram:
        values, counts = zip(*histogram, strict=True)
        axes.hist(values, bins=edges, weights=counts, color="#1f77b4", alpha=0.8)
    for (name, value), style in zip(percentiles.items(), (":", "--", "-"), strict=False):
        axes.axvline(value, color="#555", linestyle=style, label=f"{name} {value:.2f} ms")
    axes.axvline(bound_ms, color="#d62728", linewidth=2, label=f"SLO p99 {bound_ms:g} ms")
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("requests")
    axes.set_title(title)
    axes.legend(fontsize=8)
    return _png(figure)


def latency_preview(histogram: Sequence[tuple[float, int]], p99_ms: float, bound_ms: float) -> str:
    """Inline Markdown of the distribution: share of requests per log bin, and a caption."""
    edges = _bins(histogram, bound_ms)
    if histogram:
        values, counts = zip(*histogram, strict=True)
        shares, _ = np.histogram(values, bins=edges, weights=counts)
        shares = shares / max(shares.sum(), 1)
    else:
        shares = np.zeros(BINS)
    positions = np.arange(BINS, dtype=float)
    curve = list(zip(positions, shares, strict=True))
    caption = f"p99 {p99_ms:.2f} ms, SLO {bound_ms:g} ms\n{edges[0]:.2g}-{edges[-1]:.3g} ms (log)"
    top = float(shares.max()) or 1.0
    return curve_preview("latency", caption, [curve], (0, BINS - 1), (0.0, top))
