"""A regressor's plots (issue 16): PNG files for MLflow and the UI, and a preview short enough
for the Dagster UI to show inline."""

from __future__ import annotations

import numpy as np

from assets.models.plots import INLINE_MARKDOWN_LIMIT
from assets.models.regression_plots import binned_means, regression_plots


def test_plots_are_a_png_and_an_inline_preview() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(2000, 500, 5000)
    prediction = y + rng.normal(0, 200, 5000)
    baseline = np.full(5000, y.mean())
    bounds = (prediction - 250, prediction + 250)
    plots = regression_plots(y, prediction, baseline, "mean", bounds)
    assert list(plots) == ["evaluation.png"]
    assert plots["evaluation.png"].startswith(b"\x89PNG")
    assert plots.preview is not None and len(plots.preview) < INLINE_MARKDOWN_LIMIT
    assert "mean" in plots.preview


def test_decile_curve_follows_the_diagonal_for_a_perfect_model_and_is_a_point_for_a_constant() -> (
    None
):
    y = np.arange(100, dtype=float)
    perfect = binned_means(y, y)
    assert len(perfect) == 10
    assert all(abs(p - a) < 1e-9 for p, a in perfect)
    (point,) = binned_means(y, np.full(100, 7.0))
    assert point == (7.0, 49.5)
