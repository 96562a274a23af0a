"""The models' inline curve previews: Markdown short enough for the Dagster UI to show in place.

The UI inlines a Markdown metadata value only under 1,000 characters, so the preview of the main
curve (precision-recall, or the metric by cut-off) must stay under it for any realistic curve, be
a well-formed SVG (a browser draws nothing from a broken one) and draw inside its view box.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import numpy as np
import pytest

from assets.models.plots import (
    INLINE_MARKDOWN_LIMIT,
    PREVIEW_BOX,
    PREVIEW_SIZE,
    Plots,
    classification_plots,
    curve_preview,
    cutoff_plot,
    pr_points,
)

SVG = "{http://www.w3.org/2000/svg}"
IMAGE = re.compile(r"^!\[[^\]]*\]\(data:image/svg\+xml,([^)\s]+)\)\n\n")


def _svg(markdown: str) -> ET.Element:
    """The preview's SVG, parsed as the browser would (XML, from the URL-encoded data URI)."""
    match = IMAGE.match(markdown)
    assert match, markdown[:200]
    return ET.fromstring(unquote(match.group(1)))


def _points(svg: ET.Element) -> list[list[tuple[int, int]]]:
    """The integer points of each drawn curve (every path but the first, the axes)."""
    curves = []
    for path in svg.findall(f"{SVG}path")[1:]:
        d = path.get("d", "")
        assert re.fullmatch(r"M\d+,\d+(L\d+,\d+(,\d+,\d+)*)?", d), d
        numbers = [int(n) for n in re.findall(r"\d+", d)]
        curves.append(list(zip(numbers[::2], numbers[1::2], strict=True)))
    return curves


def _in_view_box(svg: ET.Element) -> None:
    x, y, width, height = (float(v) for v in svg.get("viewBox", "").split())
    curves = _points(svg)
    assert curves
    for curve in curves:
        for px, py in curve:
            assert 0 <= px <= PREVIEW_BOX[0] and 0 <= py <= PREVIEW_BOX[1]
            assert x <= px <= x + width and y <= py <= y + height


def _scores(n: int, rate: float, signal: float, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rate
    return y, 1 / (1 + np.exp(-(rng.normal(size=n) + signal * y - 3)))


@pytest.mark.parametrize(
    ("n", "rate", "signal", "seed"),
    [(20_000, 0.01, 2.5, 0), (5_000, 0.05, 1.5, 1), (2_000, 0.3, 0.8, 2), (300, 0.1, 4.0, 3)],
)
def test_classifier_preview_fits_inline_and_draws_inside_its_box(n, rate, signal, seed) -> None:
    y, model = _scores(n, rate, signal, seed)
    _, baseline = _scores(n, rate, 0.0, seed + 100)
    plots = classification_plots(y, model, baseline, "logistic_regression")
    assert isinstance(plots, Plots) and list(plots) == ["evaluation.png"]  # MLflow's files
    assert plots["evaluation.png"].startswith(b"\x89PNG")
    markdown = plots.preview
    assert markdown is not None and len(markdown) < INLINE_MARKDOWN_LIMIT, len(markdown)
    svg = _svg(markdown)
    assert svg.tag == f"{SVG}svg"
    assert (svg.get("width"), svg.get("height")) == tuple(str(v) for v in PREVIEW_SIZE)
    _in_view_box(svg)
    assert len(_points(svg)) == 2  # model and baseline
    assert "logistic\\_regression" in markdown  # escaped: no emphasis in the caption
    highest = min(py for curve in _points(svg) for _, py in curve)  # y grows downwards
    assert highest <= PREVIEW_BOX[1] // 2  # the precision axis ends near the curves' top


def test_pr_points_are_the_interpolated_curve() -> None:
    y, p = _scores(5_000, 0.05, 2.0, 4)
    points = pr_points(y, p, points=21)
    recall = [r for r, _ in points]
    precision = [q for _, q in points]
    assert recall[0] == pytest.approx(1 / 21) and recall[-1] == 1.0 and len(points) == 21
    assert all(a >= b for a, b in zip(precision, precision[1:], strict=False))  # never rises
    assert precision[-1] == pytest.approx(y.mean(), abs=0.02)  # all flagged: the base rate


@pytest.mark.parametrize(
    ("title", "curves", "ylabel"),
    [
        (
            "NDCG@k by purchased",
            {
                "model": {1: 0.21, 3: 0.28, 5: 0.31, 10: 0.35, 20: 0.4},
                "popularity": {1: 0.1, 3: 0.15, 5: 0.18, 10: 0.22, 20: 0.26},
            },
            "ndcg@k",
        ),
        (
            "recall@k over the whole catalog (future clicks)",
            {
                "two-tower": {5: 0.05, 10: 0.09, 20: 0.16, 50: 0.3, 100: 0.45},
                "popularity": {5: 0.03, 10: 0.05, 20: 0.08, 50: 0.17, 100: 0.29},
            },
            "recall@k",
        ),
        ("NDCG@k by revenue", {"model": {1: 0.0, 5: 0.0}, "random": {1: 0.0, 5: 0.0}}, "ndcg@k"),
    ],
)
def test_cutoff_preview_fits_inline_and_draws_inside_its_box(title, curves, ylabel) -> None:
    plots = cutoff_plot(title, curves, ylabel)
    assert list(plots) == ["evaluation.png"]
    markdown = plots.preview
    assert markdown is not None and len(markdown) < INLINE_MARKDOWN_LIMIT, len(markdown)
    svg = _svg(markdown)
    _in_view_box(svg)
    drawn = _points(svg)
    assert len(drawn) == 2
    assert drawn[0][0][0] == 0 and drawn[0][-1][0] == PREVIEW_BOX[0]  # smallest k to largest
    assert ylabel in markdown


def test_a_curve_with_nothing_to_draw_has_no_preview() -> None:
    plots = cutoff_plot("NDCG@k", {"model": {1: float("nan")}}, "ndcg@k")
    assert list(plots) == ["evaluation.png"] and plots.preview is None


def test_jagged_curves_are_thinned_until_they_fit() -> None:
    rng = np.random.default_rng(5)
    curves = [list(zip(np.linspace(0, 1, 500), rng.random(500), strict=True)) for _ in range(2)]
    markdown = curve_preview("noise", "a long caption " * 10, curves, (0.0, 1.0), (0.0, 1.0))
    assert len(markdown) < INLINE_MARKDOWN_LIMIT
    _in_view_box(_svg(markdown))


def test_values_outside_the_ranges_are_clipped_to_the_box() -> None:
    markdown = curve_preview("out", "", [[(-1.0, 2.0), (0.5, -3.0), (9.0, 0.5)]], (0, 1), (0, 1))
    assert _points(_svg(markdown)) == [[(0, 0), (50, 50), (100, 25)]]
