"""Served feed items labelled by clicks within the session, pending until the session ends."""

from __future__ import annotations

import pandas as pd
import pytest

from assets.monitoring.performance import performance_table, version_summary
from assets.monitoring.session_clicks import join_session_clicks, logged_slates, session_target
from configs import CONFIG_DIR
from configs.schema import load_specs


@pytest.fixture(scope="module")
def feed():
    (spec,) = load_specs([CONFIG_DIR / "feed.yaml"])
    return spec


def _log(rows: list[tuple[str, str, str, list[tuple[int, float]]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "logged_at": pd.Timestamp(at).timestamp(),
                "endpoint": "recommend",
                "unit": user,
                "arm": "control",
                "request": {"user_id": int(user), "as_of": at},
                "model_versions": {"retrieval": "1", "ranking": version},
                "response": {"items": [{"item_id": i, "score": s} for i, s in items]},
            }
            for at, user, version, items in rows
        ]
    )


def test_targets_of_the_shipped_configs(feed) -> None:
    target = session_target(feed)
    assert (target.model, target.label, target.unit_key, target.item_key) == (
        "ranking",
        "clicked",
        "user_id",
        "item_id",
    )
    (fraud,) = load_specs([CONFIG_DIR / "fraud.yaml"])
    assert session_target(fraud) is None


def test_clicks_within_the_session_label_served_items(feed) -> None:
    target = session_target(feed)
    log = _log(
        [
            ("2025-01-05 10:00", "7", "1", [(1, 0.9), (2, 0.5), (3, 0.1)]),
            ("2025-01-05 11:00", "8", "2", [(1, 0.2), (4, 0.8)]),
            ("2025-01-06 09:00", "7", "2", [(5, 0.6)]),  # its session is not over at as_of
        ]
    )
    events = pd.DataFrame(
        {
            "user_id": [7, 7, 8, 8],
            "item_id": [1, 3, 4, 1],
            "event_time": pd.to_datetime(
                ["2025-01-05 10:10", "2025-01-05 11:30", "2025-01-05 11:05", "2025-01-05 10:00"]
            ),
            "clicked": [1, 1, 1, 1],
        }
    )
    predictions = logged_slates(log, target)
    assert len(predictions) == 6 and predictions["version"].tolist()[:3] == ["1"] * 3
    joined = join_session_clicks(predictions, events, target, pd.Timestamp("2025-01-06 09:10"))
    labels = dict(zip(joined.frame["key"], joined.frame["label"], strict=True))
    assert labels[("7", "1")] == 1  # clicked 10 minutes later
    assert labels[("7", "3")] == 0  # clicked, but after the session
    assert labels[("8", "4")] == 1 and labels[("8", "1")] == 0  # that click came before
    assert joined.count("pending") == 1
    summary = version_summary(joined).set_index("version")
    assert summary.loc["1", "auc"] == pytest.approx(1.0)  # the clicked item scored highest
    assert summary.loc["2", "labelled"] == 2
    assert performance_table(joined)["precision"].isna().all()  # no served decision
