"""Evaluation plots as PNG bytes: ROC and precision-recall, calibration, ranking gain by cut-off.

Drawn with matplotlib's Agg backend (no display) from scikit-learn's curves; the model asset
embeds them in its metadata (the Dagster UI renders them) and logs them to the MLflow run.

Each set of plots also carries a preview: the main curve (precision-recall for a classifier, the
metric by cut-off for a ranker or retriever) as a tiny SVG in a Markdown image, short enough for
the Dagster UI to show inline. The UI shows a Markdown metadata value in place only below
``INLINE_MARKDOWN_LIMIT`` characters and hides longer ones behind "[Show Markdown]", which is
where any base64 PNG ends up; Dagster has no image metadata type (dagster-io/dagster#15468).
The SVG is URL-encoded rather than base64 (fewer characters), its coordinates are integers in a
small view box and its path uses the shortest syntax, so model and baseline both fit.
"""

from __future__ import annotations

import base64
import io
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

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


INLINE_MARKDOWN_LIMIT = 1000  # the Dagster UI (MetadataEntry.tsx) inlines Markdown below this
PREVIEW_POINTS = 30  # points per curve in a preview, at most (fewer if the limit needs it)
PREVIEW_BOX = (100, 50)  # the preview's view box: integer coordinates 0..100 by 0..50
PREVIEW_SIZE = (240, 120)  # its size on the page, in CSS pixels
PREVIEW_COLOURS = ("#1f77b4", "#ff7f0e")  # matplotlib's first two: the full plot's colours
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>#|])")


class Plots(dict[str, bytes]):
    """PNG files by name (``evaluation.png``) and ``preview``: Markdown of the main curve, short
    enough for the Dagster UI to show inline (None where there is no curve to draw).

    A dict, so that whatever stores or logs the plots by name is unchanged by the preview.
    """

    def __init__(self, files: dict[str, bytes], preview: str | None = None) -> None:
        super().__init__(files)
        self.preview = preview


def _escape(text: str) -> str:
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def _span(low: float, high: float) -> str:
    return f"{low:g}\u2013{high:g}"


def _path(points: Sequence[tuple[int, int]]) -> str:
    """SVG path data through integer points: ``M0,50L3,40,6,31``. Repeated points are dropped,
    and so is a point on the straight line between its neighbours (the same line drawn)."""
    kept: list[tuple[int, int]] = []
    for point in points:
        if kept and point == kept[-1]:
            continue
        if len(kept) >= 2:
            (ax, ay), (bx, by) = kept[-2], kept[-1]
            cross = (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax)
            same_way = (bx - ax) * (point[0] - bx) + (by - ay) * (point[1] - by) >= 0
            if cross == 0 and same_way:
                kept[-1] = point
                continue
        kept.append(point)
    if len(kept) == 1:
        kept.append(kept[0])  # a lone point still draws (a zero-length line)
    head, *rest = kept
    return f"M{head[0]},{head[1]}" + ("L" + ",".join(f"{x},{y}" for x, y in rest) if rest else "")


def preview_svg(
    curves: Sequence[Sequence[tuple[float, float]]],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
) -> str:
    """Curves (x, y pairs) as a small SVG: axes at the left and bottom, one colour per curve.

    Values are scaled from ``x_range`` by ``y_range`` to integers in ``PREVIEW_BOX`` (y upwards)
    and clipped to it; non-finite points are left out.
    """
    width, height = PREVIEW_BOX
    (x0, x1), (y0, y1) = x_range, y_range
    paths = []
    for curve, colour in zip(curves, PREVIEW_COLOURS, strict=False):
        points = []
        for x, y in curve:
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            px = round(float(np.clip((x - x0) / ((x1 - x0) or 1), 0, 1)) * width)
            py = round(float(np.clip((y1 - y) / ((y1 - y0) or 1), 0, 1)) * height)
            points.append((px, py))
        if points:
            paths.append(f"<path d='{_path(points)}' stroke='{colour}'/>")
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{PREVIEW_SIZE[0]}'"
        f" height='{PREVIEW_SIZE[1]}' viewBox='-2 -2 {width + 4} {height + 4}' fill='none'>"
        f"<path d='M0,0V{height}H{width}' stroke='#999'/>" + "".join(paths) + "</svg>"
    )


def preview_markdown(svg: str, alt: str, caption: str) -> str:
    """A Markdown image of ``svg`` (a URL-encoded data URI) with ``caption`` under it (its
    lines kept as lines: short ones wrap less in a narrow table cell)."""
    uri = "data:image/svg+xml," + quote(svg, safe="/:=',.-")
    return f"![{_escape(alt)}]({uri})\n\n" + "  \n".join(map(_escape, caption.splitlines()))


def curve_preview(
    alt: str,
    caption: str,
    curves: Sequence[Sequence[tuple[float, float]]],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
) -> str:
    """The preview Markdown of ``curves``, thinned until it fits the UI's inline limit."""
    points = PREVIEW_POINTS
    while True:
        thinned = [_thin(curve, points) for curve in curves]
        markdown = preview_markdown(preview_svg(thinned, x_range, y_range), alt, caption)
        if len(markdown) < INLINE_MARKDOWN_LIMIT or points <= 2:
            break
        points -= 4
    assert len(markdown) < INLINE_MARKDOWN_LIMIT, f"preview of {len(markdown)} characters"
    return markdown


def _thin(curve: Sequence[tuple[float, float]], points: int) -> list[tuple[float, float]]:
    """At most ``points`` of ``curve``, evenly spaced along it, its ends kept."""
    if len(curve) <= points:
        return list(curve)
    index = np.unique(np.linspace(0, len(curve) - 1, points).round().astype(int))
    return [curve[i] for i in index]


def pr_points(y, p, points: int = PREVIEW_POINTS) -> list[tuple[float, float]]:
    """The precision-recall curve at ``points`` evenly spaced recall levels above 0 (up to 1):
    at each level the best precision reached at that recall or more (the interpolated curve, as
    average precision is read), so the thinned curve keeps the full one's shape instead of its
    sampling noise. Recall 0 is left out: its precision is the top score's label, 0 or 1."""
    precision, recall, _ = precision_recall_curve(y, p)
    levels = np.linspace(0.0, 1.0, points + 1)[1:]
    best = [float(np.max(precision[recall >= r], initial=0.0)) for r in levels]
    return list(zip(levels.tolist(), best, strict=True))


def _legend(names: Sequence[str]) -> str:
    return ", ".join(f"{c}: {n}" for c, n in zip(("blue", "orange"), names, strict=False))


def _nice_top(value: float) -> float:
    """The axis top for values up to ``value``: the next tenth (1 at most above 0.9)."""
    return min(max(float(np.ceil(value * 10 - 1e-9)) / 10, 0.1), 1.0) if value <= 1 else value


def classification_plots(y, model_p, baseline_p, baseline: str) -> Plots:
    """ROC, precision-recall and calibration of the model beside the baseline; the preview is
    the precision-recall curve of both, its precision axis up to the next tenth above them."""
    y = np.asarray(y)
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    pr = []
    for p, name in ((model_p, "model"), (baseline_p, baseline)):
        fpr, tpr, _ = roc_curve(y, p)
        axes[0].plot(fpr, tpr, label=name)
        precision, recall, _ = precision_recall_curve(y, p)
        axes[1].plot(recall, precision, label=name)
        pr.append(pr_points(y, p))
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
    top = _nice_top(max((q for curve in pr for _, q in curve), default=1.0))
    preview = curve_preview(
        "precision-recall curve",
        f"precision {_span(0, top)} by recall 0\u20131 (test)\n{_legend(['model', baseline])}",
        pr,
        (0.0, 1.0),
        (0.0, top),
    )
    return Plots({"evaluation.png": _png(figure)}, preview)


def cutoff_plot(title: str, curves: dict[str, dict[int, float]], ylabel: str) -> Plots:
    """A metric by cut-off k for the model and its baseline (gain or recall curves); the preview
    draws the same curves (the first two)."""
    figure, axis = plt.subplots(figsize=(5, 3.5))
    lines = []
    for name, points in curves.items():
        ks = sorted(points)
        axis.plot(ks, [points[k] for k in ks], "o-", label=name)
        lines.append([(float(k), float(points[k])) for k in ks])
    axis.set(title=title, xlabel="k", ylabel=ylabel)
    axis.legend(loc="best", fontsize=8)
    png = _png(figure)
    ks = sorted({k for points in curves.values() for k in points})
    values = [v for line in lines for _, v in line if np.isfinite(v)]
    if not ks or not values:
        return Plots({"evaluation.png": png})
    top = _nice_top(max(max(values), 0.0))
    preview = curve_preview(
        title,
        f"{ylabel} {_span(0, top)} by k {_span(ks[0], ks[-1])} (test)\n{_legend(list(curves))}",
        lines,
        (float(ks[0]), float(ks[-1])),
        (0.0, top),
    )
    return Plots({"evaluation.png": png}, preview)


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
