"""Monitoring plots drawn outside any asset: a metric per day, drift bins, MLflow plot files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assets.models.plots import plot_files
from assets.monitoring.drift import model_drift
from assets.monitoring.plots import drift_plots, metric_by_day_plot
from configs import CONFIG_DIR
from configs.schema import load_specs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fraud():
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    return spec


def _frame(n: int, seed: int, scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n) * scale,
            "hour": rng.integers(0, 24, n),
            "velocity": rng.normal(0, 1, n) * scale,
        }
    )


def test_metric_by_day_is_a_png_even_with_undefined_days() -> None:
    table = pd.DataFrame(
        {
            "version": ["1", "1", "2"],
            "day": pd.to_datetime(["2025-03-01", "2025-03-02", "2025-03-02"]),
            "auc": pd.array([0.8, pd.NA, 0.7], dtype="Float64"),  # NA: one class that day
        }
    )
    assert metric_by_day_plot(table, "auc").startswith(PNG)


def test_drift_plots_show_the_worst_features_up_to_the_limit(fraud) -> None:
    drifted = model_drift(
        fraud, "scorer", _frame(4000, 0), _frame(4000, 1, 3.0), ["amount", "velocity"], None
    )
    warned = drifted.table[drifted.table["status"].isin(["warn", "alert"])]
    assert len(warned) == 2

    markdown = drift_plots([drifted])
    assert markdown.count("data:image/png;base64,") == 2
    # worst PSI first: amount (scaled x3 on a log-normal) drifts more than velocity
    assert markdown.index("![model:scorer amount: PSI") < markdown.index(
        "![model:scorer velocity: PSI"
    )
    assert drift_plots([drifted, drifted], limit=3).count("data:image/png;base64,") == 3


def test_drift_plots_say_so_when_nothing_warns(fraud) -> None:
    calm = model_drift(fraud, "scorer", _frame(4000, 0), _frame(4000, 1), ["amount"], None)
    assert drift_plots([calm]) == "No feature warns."


def test_plot_files_write_each_png_under_its_stem() -> None:
    files = plot_files({"evaluation.png": PNG + b"a", "gain.png": PNG + b"b"})
    assert sorted(files) == ["evaluation", "gain"]
    assert Path(files["gain"]).name == "gain.png"
    assert Path(files["evaluation"]).read_bytes() == PNG + b"a"
