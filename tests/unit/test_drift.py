"""Drift of a use case's data: watched columns, event PSI, shifts, the recent window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from assets.monitoring.drift import event_drift, model_drift, shifts, watched_event_columns
from assets.monitoring.drift_events import recent_window
from configs import CONFIG_DIR
from configs.schema import load_specs


@pytest.fixture(scope="module")
def fraud():
    (spec,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    return spec


def _events(
    n: int, seed: int, amount_scale: float = 1.0, start: str = "2025-01-01"
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.Timestamp(start) + pd.to_timedelta(rng.uniform(0, 3 * 86400, n), unit="s")
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "card_id": rng.integers(0, 100, n),
            "merchant_id": rng.integers(0, 50, n),
            "event_time": times,
            "amount": rng.lognormal(3, 1, n) * amount_scale,
            "mcc": rng.choice(["fuel", "grocery", "travel"], n),
            "device_id": rng.integers(0, 1000, n),
            "country": rng.choice(["US", "DE"], n),
            "hour": rng.integers(0, 24, n),
            "channel": rng.choice(["online", "pos"], n),
            "is_fraud": (rng.random(n) < 0.02).astype(int),
            "label_time": times + pd.Timedelta(days=7),
        }
    )


def test_watched_columns_leave_out_ids_times_and_labels(fraud) -> None:
    numeric, categorical = watched_event_columns(fraud)
    assert numeric == ["amount", "hour"]
    assert categorical == ["mcc", "country", "channel"]


def test_event_drift_alerts_on_scaled_amounts_only(fraud) -> None:
    reference = _events(5000, 0)
    same = event_drift(fraud, reference, _events(3000, 1)).table
    assert (same["status"] == "ok").all(), same
    drifted = event_drift(fraud, reference, _events(3000, 2, amount_scale=3.0)).table
    status = dict(zip(drifted["feature"], drifted["status"], strict=True))
    assert status["amount"] == "alert" and status["channel"] == "ok"


def test_small_windows_get_no_verdict(fraud) -> None:
    table = event_drift(fraud, _events(5000, 0), _events(200, 3, amount_scale=3.0)).table
    assert set(table["status"]) == {"insufficient"}


def test_model_drift_adds_the_score(fraud) -> None:
    reference, window = _events(4000, 0), _events(4000, 1, amount_scale=2.0)
    drift = model_drift(
        fraud, "scorer", reference, window, ["amount", "hour"], lambda f: np.log(f["amount"])
    )
    psi = dict(zip(drift.table["feature"], drift.table["psi"], strict=True))
    assert psi["score"] == pytest.approx(psi["amount"], rel=0.05) and psi["score"] > 0.25
    assert drift.breakdown("score")["window"].sum() == pytest.approx(1.0)


def test_shifts_count_delayed_labels_only_once_known(fraud) -> None:
    reference = _events(6000, 0, start="2025-01-01")
    window = _events(3000, 1, start="2025-01-20")  # labels arrive after the data ends
    table = shifts(fraud, reference, window).set_index("metric")
    assert table.loc["rows_per_day", "relative_change"] == pytest.approx(-0.5, abs=0.01)
    assert "label_rate:fraud" not in table.index  # no window label is known yet
    known = window.assign(label_time=window["event_time"])
    table = shifts(fraud, reference, known).set_index("metric")
    assert abs(table.loc["label_rate:fraud", "z"]) < 4


def test_recent_window_takes_whole_days_until_enough_rows() -> None:
    events = pd.DataFrame(
        {"t": pd.to_datetime(["2025-01-01"] * 5 + ["2025-01-02"] * 3 + ["2025-01-03"] * 2)}
    )
    assert len(recent_window(events, "t", 2)) == 2
    assert len(recent_window(events, "t", 4)) == 5
    assert len(recent_window(events, "t", 100)) == 10
